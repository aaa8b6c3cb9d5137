"""Restore an archive: open it (local or S3), refuse unsafe member names, verify it, plan, then hand
the database to ``restore_database`` and the objects to ``restore_storage``.

The order is the safety argument: every member name is checked first (the central directory only,
nothing else read), then the whole archive is verified against its manifest, and only then does
anything touch a target. A dry run stops after the plan.

Memory does not grow with the member count (issue 10): the archive is read with
``zip_stream.ZipReader``, its central directory indexed by name in a scratch SQLite database on
disk (``RestoreArchive``), and the manifest's members streamed one line at a time.
"""

from __future__ import annotations

import io
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from supabase_backup.archive.manifest import read_manifest
from supabase_backup.archive.members import (
    DATABASE_MEMBER,
    FOLDER_FILE_SUFFIX,
    MANIFEST_MEMBER,
    object_member_name,
)
from supabase_backup.archive.verify import load_central_directory, open_central_directory_index
from supabase_backup.archive.zip_stream import (
    MemberReader,
    ZipDamaged,
    ZipEntry,
    ZipReader,
)
from supabase_backup.errors import ManifestInvalid, UnsafeMemberPath, VerificationFailed
from supabase_backup.sources.table_figures import recorded_method
from supabase_backup.units import format_bytes

READ_BUFFER = 1024 * 1024


class RestoreArchive:
    """A zip opened for restore, from a seekable binary file (local, decrypted, or S3 by ranged
    reads), holding memory that does not grow with its member count.

    zipfile keeps a ZipInfo per member for the life of the archive. Here the central directory is
    read once, entry by entry (``zip_stream.ZipReader``), into a scratch SQLite database on disk
    (the system's temporary folder unless ``scratch_folder``): the same pass checks every name as
    stored, and ``open(name)`` is then one index probe. For the name check and plan of a
    million-object archive RSS grew by 37 MiB (SQLite's cache and sorter, the same at 250,000)
    against zipfile's 674 MiB (bench/results/stages-million-restore-latest.json).
    Raises VerificationFailed for bytes that are not a readable zip.
    """

    def __init__(self, file: IO[bytes], label: str, *, scratch_folder=None) -> None:
        self.label = label
        try:
            self._reader = ZipReader(file)
        except ZipDamaged as error:
            raise VerificationFailed(label, f"not a readable zip file ({error})") from None
        self._file = file
        self._scratch_folder = scratch_folder
        self._scratch: tempfile.TemporaryDirectory | None = None
        self._database: sqlite3.Connection | None = None
        # A member may be read from another thread (run_psql feeds psql from a writer thread):
        # every use of the index and every seek-and-read of the file holds this lock.
        self._lock = threading.RLock()
        self.names_checked = 0
        self.first_unsafe: tuple[str, str] | None = None  # (name, problem), first in stored order

    def __enter__(self) -> RestoreArchive:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._database is not None:
                self._database.close()
                self._database = None
            if self._scratch is not None:
                self._scratch.cleanup()
                self._scratch = None

    def read_central_directory(self) -> int:
        """Read the central directory into the index, checking every name, once (the first use of
        the archive does it); returns the member count."""
        self._index()
        return self.names_checked

    def _index(self) -> sqlite3.Connection:
        with self._lock:
            if self._database is None:
                self._database = self._build_index()
            return self._database

    def _build_index(self) -> sqlite3.Connection:
        self._scratch = tempfile.TemporaryDirectory(
            prefix="supabase-backup-restore-", dir=self._scratch_folder
        )
        database = open_central_directory_index(
            Path(self._scratch.name) / "members.sqlite", check_same_thread=False
        )
        try:
            count, self.first_unsafe = load_central_directory(database, self._reader)
            database.execute("CREATE INDEX stored_by_name ON stored (name)")
            database.commit()
        except ZipDamaged as error:
            database.close()
            raise VerificationFailed(self.label, f"not a readable zip file ({error})") from None
        except BaseException:
            database.close()
            raise
        self.names_checked = count
        return database

    def entry(self, name: str) -> ZipEntry | None:
        """The central directory entry of member ``name`` (the last stored, as zipfile's lookup
        would give; verify refuses an archive that holds a name twice), or None."""
        with self._lock:
            row = (
                self._index()
                .execute(
                    "SELECT name, method, flags, crc, compressed_size, size, header_offset FROM stored "
                    "WHERE name = ? ORDER BY rowid DESC LIMIT 1",
                    (name,),
                )
                .fetchone()
            )
        return ZipEntry(*row) if row else None

    def __contains__(self, name: str) -> bool:
        return self.entry(name) is not None

    def open(self, name: str) -> io.BufferedReader:
        """Member ``name``'s bytes, streamed and checked against its CRC-32 at the end; KeyError
        when the archive has no such member."""
        entry = self.entry(name)
        if entry is None:
            raise KeyError(f"there is no member named {name!r} in {self.label}")
        return io.BufferedReader(
            MemberReader(_SharedFileView(self._file, self._lock), entry), READ_BUFFER
        )


class _SharedFileView:
    """One member reader's position in a file that other readers (and threads) use too: each read
    seeks and reads under the archive's lock, as zipfile's shared file does."""

    def __init__(self, file: IO[bytes], lock) -> None:
        self._file = file
        self._lock = lock
        self._position = 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET:
            raise ValueError("only absolute seeks")
        self._position = offset
        return offset

    def read(self, size: int) -> bytes:
        with self._lock:
            self._file.seek(self._position)
            data = self._file.read(size)
        self._position += len(data)
        return data


def check_member_names(archive: RestoreArchive) -> int:
    """Raise UnsafeMemberPath for the first unsafe name in the zip's central directory (as stored:
    a NUL is kept); returns how many names were checked."""
    count = archive.read_central_directory()
    if archive.first_unsafe:
        raise UnsafeMemberPath(*archive.first_unsafe)
    return count


def read_header_and_members(archive: RestoreArchive) -> tuple[dict, Iterator[dict]]:
    """The manifest's header and a stream of its members (one JSON line at a time)."""
    return read_manifest(io.TextIOWrapper(archive.open(MANIFEST_MEMBER), encoding="utf-8"))


def iter_objects(archive: RestoreArchive) -> Iterator[dict]:
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
                f"{entry['key']!r}, which encode to {expected!r}"
            )
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
    figures_method: str | None = None  # how the tables' checksums were computed (table_figures)
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
                    f"about {estimated:,} rows (estimates at dump time)."
                )
                for table in self.tables:
                    lines.append(
                        f"  {table['schema']}.{table['table']}: "
                        f"~{max(int(table.get('row_estimate') or 0), 0):,} rows"
                    )
        if only in (None, "storage"):
            if not self.buckets:
                lines.append("Storage: not in this archive.")
            else:
                lines.append(
                    f"Storage: would upload up to {self.objects:,} objects "
                    f"({format_bytes(self.object_bytes)}) in {len(self.buckets)} buckets "
                    f"{f'to {storage} ' if storage else ''}(objects already there with "
                    f"the same bytes are skipped):"
                )
                for bucket in self.buckets.values():
                    settings = bucket.settings
                    lines.append(
                        f"  {bucket.bucket}: {bucket.objects:,} objects, {format_bytes(bucket.bytes)} "
                        f"(public={settings.get('public', False)}, "
                        f"file_size_limit={settings.get('file_size_limit')}, "
                        f"allowed_mime_types={settings.get('allowed_mime_types')})"
                    )
        lines.append("Dry run: nothing was changed.")
        return "\n".join(lines)


def plan_restore(archive: RestoreArchive) -> RestorePlan:
    """Counts and sizes per bucket from the manifest, streamed: one BucketPlan per bucket, nothing
    per object."""
    header, _ = read_header_and_members(archive)
    run = header.get("run") or {}
    plan = RestorePlan(run_id=run.get("run_id"), created_at=header.get("created_at"))
    database = header.get("database")
    if database and database.get("included", True):
        entry = archive.entry(database.get("member", DATABASE_MEMBER))
        plan.database_bytes = entry.size if entry else None
        plan.tables = list(database.get("tables") or [])
        plan.figures_method = recorded_method(database)
    for bucket in (header.get("storage") or {}).get("buckets") or []:
        plan.buckets[bucket["bucket"]] = BucketPlan(bucket["bucket"], bucket.get("settings") or {})
    for member in iter_objects(archive):
        bucket_id = member["object"]["bucket"]
        bucket = plan.buckets.setdefault(bucket_id, BucketPlan(bucket_id, {}))
        bucket.objects += 1
        bucket.bytes += member["size"]
    return plan
