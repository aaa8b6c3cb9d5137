"""Restore an archive: open it (local or S3), refuse unsafe member names, verify it, plan, then hand
the database to ``restore_database`` and the objects to ``restore_storage``.

The order is the safety argument: every member name is checked first (the central directory only,
nothing else read), then the whole archive is verified against its manifest, and only then does
anything touch a target. A dry run stops after the plan.
"""

from __future__ import annotations

import io
import re
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from supabase_backup.archive import (
    DATABASE_MEMBER,
    FOLDER_FILE_SUFFIX,
    MANIFEST_MEMBER,
    object_member_name,
)
from supabase_backup.errors import ManifestInvalid, UnsafeMemberPath
from supabase_backup.manifest import read_manifest
from supabase_backup.units import format_bytes

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


def member_path_problem(name: str) -> str | None:
    """Why a member name could land outside the folder (or target) it is restored into, or None.

    Archives written by supabase-backup never have any of these (FORMAT.md, "Object member names").
    """
    if "\x00" in name:
        return "contains a NUL character"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE_LETTER.match(name):
        return "starts with a drive letter"
    segments = name.split("/")
    if ".." in segments:
        return "has a '..' segment"
    if "." in segments:
        return "has a '.' segment"
    if "" in segments:
        return "has an empty segment (a leading, trailing or doubled '/')"
    return None


def check_member_names(archive: zipfile.ZipFile) -> int:
    """Raise UnsafeMemberPath for the first unsafe name in the zip's central directory; returns how
    many names were checked. ``orig_filename`` is the name as stored: zipfile cuts names at a NUL."""
    infos = archive.infolist()
    for info in infos:
        problem = member_path_problem(info.orig_filename)
        if problem:
            raise UnsafeMemberPath(info.orig_filename, problem)
    return len(infos)


@contextmanager
def open_archive(location: str) -> Iterator[tuple[io.BufferedIOBase, str]]:
    """(seekable binary file, label) of a local zip or s3://bucket/key (read by ranged GETs)."""
    if location.startswith("s3://"):
        from supabase_backup import destination

        bucket, key = destination.parse_s3_url(location)
        archive_file, _ = destination.open_s3_archive(
            destination.s3_client_from_environment(), bucket, key)
    else:
        try:
            archive_file = open(location, "rb")
        except FileNotFoundError:
            from supabase_backup.errors import ArchiveNotFound

            raise ArchiveNotFound(location, "no such file") from None
    with archive_file:
        yield archive_file, location


def read_header_and_members(archive: zipfile.ZipFile) -> tuple[dict, Iterator[dict]]:
    """The manifest's header and a stream of its members (one JSON line at a time)."""
    raw = archive.open(MANIFEST_MEMBER)
    return read_manifest(io.TextIOWrapper(raw, encoding="utf-8"))


def iter_objects(archive: zipfile.ZipFile) -> Iterator[dict]:
    """Every storage member of the manifest: ``{"path", "size", "sha256", "object": {...}}``.

    The member name must be exactly what the recorded bucket and key encode to, so the key uploaded
    is the key whose bytes the member holds."""
    _, members = read_header_and_members(archive)
    for member in members:
        entry = member.get("object")
        if entry is None:
            continue
        expected = object_member_name(entry["bucket"], entry["key"])
        if member["path"] not in (expected, expected + FOLDER_FILE_SUFFIX):  # format 2, rule 4
            raise ManifestInvalid(
                f"member {member['path']!r} records bucket {entry['bucket']!r} and key "
                f"{entry['key']!r}, which encode to {expected!r}")
        yield member


@dataclass
class BucketPlan:
    bucket: str
    settings: dict
    objects: int = 0
    bytes: int = 0


@dataclass
class RestorePlan:
    """What a restore would do, from the manifest alone."""

    run_id: str | None
    created_at: str | None
    database_bytes: int | None = None
    tables: list[dict] = field(default_factory=list)
    buckets: dict[str, BucketPlan] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        return sum(bucket.objects for bucket in self.buckets.values())

    @property
    def object_bytes(self) -> int:
        return sum(bucket.bytes for bucket in self.buckets.values())

    def describe(self, only: str | None, database: str | None, storage: str | None) -> str:
        lines = [f"Archive of run {self.run_id or '?'} (created {self.created_at or '?'})."]
        if only in (None, "db"):
            if self.database_bytes is None:
                lines.append("Database: not in this archive.")
            else:
                estimated = sum(max(int(t.get("row_estimate") or 0), 0) for t in self.tables)
                lines.append(
                    f"Database: would stream {DATABASE_MEMBER} ({format_bytes(self.database_bytes)}) "
                    f"into psql --single-transaction{f' on {database}' if database else ''}: "
                    f"{len(self.tables)} tables, "
                    f"about {estimated:,} rows (estimates at dump time).")
                for table in self.tables:
                    lines.append(f"  {table['schema']}.{table['table']}: "
                                 f"~{max(int(table.get('row_estimate') or 0), 0):,} rows")
        if only in (None, "storage"):
            if not self.buckets:
                lines.append("Storage: not in this archive.")
            else:
                lines.append(f"Storage: would upload up to {self.objects:,} objects "
                             f"({format_bytes(self.object_bytes)}) in {len(self.buckets)} buckets "
                             f"{f'to {storage} ' if storage else ''}(objects already there with "
                             f"the same bytes are skipped):")
                for bucket in self.buckets.values():
                    settings = bucket.settings
                    lines.append(
                        f"  {bucket.bucket}: {bucket.objects:,} objects, {format_bytes(bucket.bytes)} "
                        f"(public={settings.get('public', False)}, "
                        f"file_size_limit={settings.get('file_size_limit')}, "
                        f"allowed_mime_types={settings.get('allowed_mime_types')})")
        lines.append("Dry run: nothing was changed.")
        return "\n".join(lines)


def plan_restore(archive: zipfile.ZipFile) -> RestorePlan:
    header, _ = read_header_and_members(archive)
    run = header.get("run") or {}
    plan = RestorePlan(run_id=run.get("run_id"), created_at=header.get("created_at"))
    database = header.get("database")
    if database and database.get("included", True):
        try:
            plan.database_bytes = archive.getinfo(database.get("member", DATABASE_MEMBER)).file_size
        except KeyError:
            plan.database_bytes = None
        plan.tables = list(database.get("tables") or [])
    for bucket in (header.get("storage") or {}).get("buckets") or []:
        plan.buckets[bucket["bucket"]] = BucketPlan(bucket["bucket"], bucket.get("settings") or {})
    for member in iter_objects(archive):
        bucket_id = member["object"]["bucket"]
        bucket = plan.buckets.setdefault(bucket_id, BucketPlan(bucket_id, {}))
        bucket.objects += 1
        bucket.bytes += member["size"]
    return plan
