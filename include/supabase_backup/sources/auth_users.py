"""Auth users: every user from the Auth admin API, written as one JSON array without holding them all.

``GET /auth/v1/admin/users?page=N&per_page=P`` pages by offset over users sorted ``created_at desc``,
so a sign-up while we page shifts every later page by one (a user comes twice) and a deletion shifts
it back (a user is skipped). Users are therefore deduplicated by id, and the count is reconciled with
the ``X-Total-Count`` header: a pass whose pages all reported the same total and which saw exactly
that many users is complete; otherwise another pass adds the users not yet written (bounded).

The file holds the users exactly as the API returned them. Password hashes are not among them; they
live in the database dump (``auth.users``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from supabase_backup.archive.hashing import HashingWriter
from supabase_backup.errors import ApiError, ConfigurationError, IncompleteExport
from supabase_backup.sources.api_client import ApiSettings, open_client, request_json
from supabase_backup.staging import StagingPath, ensure_parent

log = logging.getLogger(__name__)

USERS_ROUTE = "/auth/v1/admin/users"
MAX_PASSES = 3
PROGRESS_LOG_SECONDS = 5.0


def _total_count(response: httpx.Response) -> int | None:
    value = response.headers.get("x-total-count")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@dataclass
class _UsersFile:
    """The JSON array being written: one user per line, each id once, hashed as it is written."""

    output: HashingWriter
    written_ids: set[str] = field(default_factory=set)

    def open_array(self) -> None:
        self.output.write(b"[")

    def add(self, user: dict[str, Any]) -> None:
        user_id = str(user["id"])
        if user_id in self.written_ids:
            return
        # Separator first, so the array stays valid whichever user comes last.
        separator = b"\n" if not self.written_ids else b",\n"
        self.written_ids.add(user_id)
        self.output.write(separator + json.dumps(user, ensure_ascii=False).encode("utf-8"))

    def close_array(self) -> None:
        self.output.write(b"\n]\n" if self.written_ids else b"]\n")


@dataclass
class _Pass:
    """What one pass over the pages saw, to tell whether the listing held still."""

    number: int
    ids: set[str] = field(default_factory=set)
    totals: set[int] = field(default_factory=set)

    def consistent_with(self, total_reported: int) -> bool:
        return len(self.totals) == 1 and len(self.ids) == total_reported


@dataclass
class _Page:
    users: list[dict[str, Any]]
    total_reported: int | None


def _read_pages(client: httpx.Client, per_page: int) -> Iterator[_Page]:
    """Pages 1, 2, … with an explicit ``per_page``, until a page holds fewer than ``per_page`` users."""
    page = 1
    while True:
        response = request_json(
            client,
            "GET",
            USERS_ROUTE,
            params={"page": page, "per_page": per_page},
            what=f"Listing Auth users (page {page})",
        )
        body = response.json()
        users = body.get("users") if isinstance(body, dict) else body
        if not isinstance(users, list):
            raise ApiError(
                "GET",
                USERS_ROUTE,
                response.status_code,
                response.status_code,
                None,
                "the reply has no users list",
            )
        yield _Page(users, _total_count(response))
        if len(users) < per_page:
            return
        page += 1


class _ProgressLog:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last_logged = self.started

    def maybe_log(self, pass_number: int, pages: int, written: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last_logged < PROGRESS_LOG_SECONDS:
            return
        self.last_logged = now
        log.info(
            "Auth users: pass %d, %d pages, %s users written of %s reported (%.0f users/s)",
            pass_number,
            pages,
            f"{written:,}",
            f"{total:,}" if total is not None else "an unknown number",
            written / max(now - self.started, 1e-6),
        )


def export_auth_users(
    settings: ApiSettings,
    target: StagingPath,
    *,
    per_page: int = 1000,
    max_passes: int = MAX_PASSES,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """Write every Auth user to ``target`` as a JSON array, one user object per line, in API order.

    Only the set of ids seen is kept in memory, never the users. When the server sends
    ``X-Total-Count``, passes repeat (at most ``max_passes``) until one pass is consistent (the same
    total on every page, and that many distinct users seen); later passes write only users not yet
    written. If the users written are still fewer than the last reported total, raises
    IncompleteExport with the numbers.

    Returns ``{"users", "pages", "total_reported", "passes", "sha256", "bytes"}``: users written,
    requests made, the last X-Total-Count (None when absent), passes made, and the file's sha256/size.
    """
    if per_page < 1:
        raise ConfigurationError(f"per_page must be at least 1, not {per_page}")
    progress = _ProgressLog()
    pages = 0
    total_reported: int | None = None
    passes: list[_Pass] = []
    ensure_parent(target)
    with (
        open_client(settings, max_connections=2, transport=transport) as client,
        target.open("wb") as file,
    ):
        users_file = _UsersFile(HashingWriter(file))
        users_file.open_array()
        while len(passes) < max_passes:
            this_pass = _Pass(len(passes) + 1)
            passes.append(this_pass)
            for page in _read_pages(client, per_page):
                pages += 1
                if page.total_reported is not None:
                    total_reported = page.total_reported
                    this_pass.totals.add(page.total_reported)
                for user in page.users:
                    this_pass.ids.add(str(user["id"]))
                    users_file.add(user)
                progress.maybe_log(
                    this_pass.number, pages, len(users_file.written_ids), total_reported
                )
            if total_reported is None or this_pass.consistent_with(total_reported):
                break  # without a total, deduplication is all we can do
            log.warning(
                "Auth users changed while paging (pass %d saw %s distinct users, totals reported %s); %s",
                this_pass.number,
                f"{len(this_pass.ids):,}",
                sorted(this_pass.totals),
                "paging again for users not yet written"
                if len(passes) < max_passes
                else "no passes left",
            )
        written = len(users_file.written_ids)
        if total_reported is not None and written < total_reported:
            raise IncompleteExport(
                f"the Auth API reports {total_reported} users but {len(passes)} passes over {pages} "
                f"pages found only {written} distinct users; run the backup again when sign-ups "
                "are quieter"
            )
        users_file.close_array()

    summary = {
        "users": written,
        "pages": pages,
        "total_reported": total_reported,
        "passes": len(passes),
        "sha256": users_file.output.sha256,
        "bytes": users_file.output.size,
    }
    log.info("Auth users exported in %.1f s: %s", time.monotonic() - progress.started, summary)
    return summary
