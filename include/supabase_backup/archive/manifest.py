"""``manifest.json``: what an archive holds, and the size and sha256 of every member.

The manifest is ordinary JSON (FORMAT.md shows it), laid out so it can also be read one member at a
time: every key but ``members`` comes first, then ``"members": [`` on a line of its own, one member
object per line, and ``]}`` on the last line. A backup of a million objects is then verified
without loading a million dicts.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO

from supabase_backup import __version__
from supabase_backup.errors import ManifestInvalid

FORMAT_NAME = "supabase-backup"
FORMAT_VERSION = 2  # what this tool writes (FORMAT.md, "Changes")
READABLE_FORMAT_VERSIONS = (1, 2)
MEMBERS_OPENING = '"members": ['
MEMBERS_CLOSING = "]}"


PASSWORD_HASHES_NOTE = (
    "not in this file: the Auth admin API never returns them. They are in db/backup.sql, table "
    "auth.users, column encrypted_password."
)


def storage_section(
    bucket_summaries: list[dict],
    totals: dict,
    snapshot: str | None,
    deleted: list[dict],
    unreadable: list[dict],
) -> dict:
    """The manifest's ``storage`` section: each bucket's export summary and settings, the totals,
    how the export lines up with the database snapshot (``deleted`` lists objects in the snapshot
    that were gone when fetched), and the objects that could not be read, each with its reason (an
    archive with any is ``incomplete``)."""
    return {
        "buckets": bucket_summaries,
        "objects": totals.get("objects", 0),
        "bytes": totals.get("bytes", 0),
        "unreadable": unreadable,
        "consistency": {
            "snapshot": snapshot,
            "created_after_snapshot": totals.get("created_after_snapshot", 0),
            "changed_after_snapshot": totals.get("changed_after_snapshot", 0),
            "deleted_after_snapshot": totals.get("deleted_after_snapshot", 0),
            "deleted": deleted,
        },
    }


def build_header(
    *,
    plan: dict,
    created_at: datetime,
    project: dict,
    tool_versions: dict,
    database: dict | None,
    auth: dict | None,
    storage: dict | None,
) -> dict:
    """Every key of manifest.json but ``members`` (FORMAT.md shows them all).

    ``plan`` is the run plan (``RunPlan.to_dict()``); its run facts become ``run`` and the rest is
    recorded under ``plan`` so a reader knows what the run was asked to back up. ``database``,
    ``auth`` and ``storage`` are the sections of the parts included, None for parts left out.
    """
    run_keys = ("run_id", "trigger", "triggered_by", "logical_date", "started_at", "attempt")
    database_section = None
    if database:
        database_section = {
            name: value
            for name, value in database.items()
            if name not in ("pg_dump", "inventory_by_bucket")
        }  # worker-local facts
    auth_section = None
    if auth:
        auth_section = {**auth, "password_hashes": PASSWORD_HASHES_NOTE}
    return {
        "created_at": created_at.isoformat(),
        "project": project,
        "run": {
            "dag_id": plan.get("dag_id", "supabase_backup"),
            **{name: plan.get(name) for name in run_keys},
        },
        "plan": {name: value for name, value in plan.items() if name not in run_keys},
        "tools": {
            "supabase_backup": __version__,
            "python": platform.python_version(),
            **tool_versions,
            "pg_dump": (database or {}).get("client_version"),
        },
        "database": database_section,
        "auth": auth_section,
        "storage": storage,
    }


def write_manifest(output: IO[str], header: dict, members: Iterable[dict]) -> int:
    """Write the header keys, then the members one per line; returns the member count."""
    if "members" in header:
        raise ManifestInvalid("the header must not hold members: they are streamed separately")
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **header}
    header_text = json.dumps(header, ensure_ascii=False, indent=1, sort_keys=False)
    output.write(header_text[:-1].rstrip() + ",\n" + MEMBERS_OPENING + "\n")
    count = 0
    for member in members:
        output.write(("," if count else "") + json.dumps(member, ensure_ascii=False) + "\n")
        count += 1
    output.write(MEMBERS_CLOSING + "\n")
    return count


def read_manifest_header(lines: Iterable[str]) -> tuple[dict, Iterator[str]]:
    """Parse the header (everything but members) and return an iterator over the rest."""
    iterator = iter(lines)
    header_lines = []
    for line in iterator:
        if line.rstrip("\r\n") == MEMBERS_OPENING:
            break
        header_lines.append(line)
    else:
        raise ManifestInvalid("manifest.json has no members list")
    text = "".join(header_lines).rstrip()
    if not text.endswith(","):
        raise ManifestInvalid("manifest.json header is not followed by members")
    header = json.loads(text[:-1] + "}")
    if header.get("format") != FORMAT_NAME:
        raise ManifestInvalid(f"not a {FORMAT_NAME} manifest (format={header.get('format')!r})")
    if header.get("format_version") not in READABLE_FORMAT_VERSIONS:
        raise ManifestInvalid(
            f"manifest format_version {header.get('format_version')!r} is not supported "
            f"(this tool reads {', '.join(map(str, READABLE_FORMAT_VERSIONS))})"
        )
    return header, iterator


def iter_manifest_members(rest: Iterator[str]) -> Iterator[dict]:
    for line in rest:
        stripped = line.strip()
        if stripped == MEMBERS_CLOSING:
            return
        if stripped.startswith(","):
            stripped = stripped[1:]
        if stripped:
            yield json.loads(stripped)
    raise ManifestInvalid("manifest.json ends before its members list closes")


def read_manifest(lines: Iterable[str]) -> tuple[dict, Iterator[dict]]:
    header, rest = read_manifest_header(lines)
    return header, iter_manifest_members(rest)
