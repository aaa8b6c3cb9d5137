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
from typing import Any

import httpx
from airflow.sdk import ObjectStoragePath

from supabase_backup.api_client import ApiSettings, open_client, request_json
from supabase_backup.errors import ApiError, IncompleteExport
from supabase_backup.hashing import HashingWriter
from supabase_backup.staging import ensure_parent

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


def export_auth_users(
    settings: ApiSettings,
    target: ObjectStoragePath,
    *,
    per_page: int = 1000,
    max_passes: int = MAX_PASSES,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """Write every Auth user to ``target`` as a JSON array, one user object per line, in API order.

    Pages from 1 with an explicit ``per_page`` until a page holds fewer than ``per_page`` users. Only
    the set of ids seen is kept in memory, never the users. When the server sends ``X-Total-Count``,
    passes repeat (at most ``max_passes``) until one pass is consistent (the same total on every page,
    and that many distinct users seen); later passes write only users not yet written. If the users
    written are still fewer than the last reported total, raises IncompleteExport with the numbers.

    Returns ``{"users", "pages", "total_reported", "passes", "sha256", "bytes"}``: users written,
    requests made, the last X-Total-Count (None when absent), passes made, and the file's sha256/size.
    """
    if per_page < 1:
        raise ValueError("per_page must be at least 1")
    started = time.monotonic()
    last_logged = started
    written_ids: set[str] = set()
    pages = 0
    passes = 0
    total_reported: int | None = None

    ensure_parent(target)
    with open_client(settings, max_connections=2, transport=transport) as client, target.open("wb") as file:
        output = HashingWriter(file)
        output.write(b"[")
        while passes < max_passes:
            passes += 1
            ids_this_pass: set[str] = set()
            totals_this_pass: set[int] = set()
            page = 1
            while True:
                response = request_json(
                    client,
                    "GET",
                    USERS_ROUTE,
                    params={"page": page, "per_page": per_page},
                    what=f"Listing Auth users (page {page})",
                )
                pages += 1
                body = response.json()
                users = body.get("users") if isinstance(body, dict) else body
                if not isinstance(users, list):
                    raise ApiError("GET", USERS_ROUTE, response.status_code, "-", "the reply has no users list")
                reported = _total_count(response)
                if reported is not None:
                    total_reported = reported
                    totals_this_pass.add(reported)
                for user in users:
                    user_id = str(user["id"])
                    ids_this_pass.add(user_id)
                    if user_id in written_ids:
                        continue
                    # Separator first, so the array stays valid whichever user comes last.
                    separator = b"\n" if not written_ids else b",\n"
                    written_ids.add(user_id)
                    output.write(separator + json.dumps(user, ensure_ascii=False).encode("utf-8"))
                now = time.monotonic()
                if now - last_logged >= PROGRESS_LOG_SECONDS:
                    last_logged = now
                    log.info(
                        "Auth users: pass %d, page %d, %s users written of %s reported (%.0f users/s)",
                        passes,
                        page,
                        f"{len(written_ids):,}",
                        f"{total_reported:,}" if total_reported is not None else "an unknown number",
                        len(written_ids) / max(now - started, 1e-6),
                    )
                if len(users) < per_page:
                    break
                page += 1

            if total_reported is None:
                break  # no total to reconcile with: deduplication is all we can do
            consistent = len(totals_this_pass) == 1 and len(ids_this_pass) == total_reported
            if consistent:
                break
            log.warning(
                "Auth users changed while paging (pass %d saw %s distinct users, totals reported %s); %s",
                passes,
                f"{len(ids_this_pass):,}",
                sorted(totals_this_pass),
                "paging again for users not yet written" if passes < max_passes else "no passes left",
            )

        if total_reported is not None and len(written_ids) < total_reported:
            raise IncompleteExport(
                f"the Auth API reports {total_reported} users but {passes} passes over {pages} pages found only "
                f"{len(written_ids)} distinct users; run the backup again when sign-ups are quieter"
            )
        output.write(b"\n]\n" if written_ids else b"]\n")

    summary = {
        "users": len(written_ids),
        "pages": pages,
        "total_reported": total_reported,
        "passes": passes,
        "sha256": output.sha256,
        "bytes": output.size,
    }
    log.info("Auth users exported in %.1f s: %s", time.monotonic() - started, summary)
    return summary
