"""The backup zip: member names, compression choice, and building it from staging.

Layout (FORMAT.md is the full description)::

    manifest.json
    db/backup.sql
    auth/users.json
    storage/<bucket>/<object key, encoded>

Object keys are data, not paths: ``a//b``, a leading or trailing ``/``, ``..`` segments and
backslashes are all legal in a database that old projects or direct SQL wrote to. A member name is
the key percent-encoded just enough that it is a safe relative path, and percent-decoding the part
after ``storage/<bucket>/`` always gives the key back exactly.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from supabase_backup.archive.hashing import HashingWriter, copy_hashing, copy_into
from supabase_backup.archive.manifest import write_manifest
from supabase_backup.archive.members import (
    AUTH_USERS_MEMBER,
    DATABASE_MEMBER,
    MANIFEST_MEMBER,
    ROLES_MEMBER,
)
from supabase_backup.archive.zip_stream import StreamingZipWriter
from supabase_backup.errors import StagingCorrupted
from supabase_backup.staging import ensure_parent, read_json_lines
from supabase_backup.units import format_bytes, format_rate

log = logging.getLogger(__name__)

COPY_CHUNK = 1024 * 1024


# Already-compressed formats are stored, not deflated again (no gain, a lot of CPU).
STORED_EXTENSIONS = frozenset(
    """jpg jpeg png gif webp avif heic heif jxl mp4 m4v mov webm mkv avi mp3 m4a aac ogg oga opus flac
    zip gz tgz bz2 xz zst 7z rar br lz4 woff woff2 docx xlsx pptx odt ods odp epub jar apk whl
    pdf""".split()
)
STORED_CONTENT_TYPES = ("image/", "video/", "audio/", "font/woff")
DEFLATED_CONTENT_TYPES = ("image/svg+xml", "image/bmp", "image/x-icon", "image/tiff")
SAMPLE_SIZE = 64 * 1024
# A member this large or larger gets ZIP64 local header and data descriptor (as zipfile's force_zip64).
ZIP64_LIMIT = (1 << 31) - 1


def should_store(name: str, content_type: str | None, sample: bytes) -> bool:
    """True when compressing would waste CPU: media types, archives, or incompressible bytes."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name.rsplit("/", 1)[-1] else ""
    content_type = (content_type or "").lower()
    if content_type.startswith(DEFLATED_CONTENT_TYPES):
        return False
    if extension in STORED_EXTENSIONS or content_type.startswith(STORED_CONTENT_TYPES):
        return True
    if len(sample) < 512:
        return False
    return len(zlib.compress(sample, 1)) > 0.97 * len(sample)


@dataclass(frozen=True)
class PlannedMember:
    """One member to write: its name, where its bytes are staged, and what they must hash to."""

    name: str
    source: Any  # an ObjectStoragePath (or pathlib.Path) to read from
    size: int
    sha256: str
    content_type: str | None = None


def _zip_date_time(moment: datetime) -> tuple:
    return (
        max(moment.year, 1980),
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
    )


def write_archive(
    output,
    members: Iterable[PlannedMember],
    created_at: datetime,
    *,
    spill_folder=None,
    compressor_factory=None,
) -> dict:
    """Write the zip to a binary file object (only ``write`` is used); every member's bytes are
    re-hashed as they are copied and must match the staged sha256 (a staging file that changed
    underneath fails the build).

    Memory does not grow with the member count: the central directory is spilled to a temporary
    file in ``spill_folder`` (zip_stream.StreamingZipWriter) until the end.
    """
    started = time.monotonic()
    count = stored = 0
    total = 0
    date_time = _zip_date_time(created_at)
    with StreamingZipWriter(
        output, spill_folder=spill_folder, compressor_factory=compressor_factory
    ) as archive:
        for member in members:
            with member.source.open("rb") as source:
                sample = source.read(SAMPLE_SIZE)
                store = should_store(member.name, member.content_type, sample)
                stored += store
                sink = archive.begin(
                    member.name,
                    date_time=date_time,
                    deflate=not store,
                    large=member.size >= ZIP64_LIMIT,
                )
                copied = HashingWriter(sink)
                copied.write(sample)
                copy_into(source, copied)
                archive.end(sink)
            if copied.size != member.size or copied.sha256 != member.sha256:
                raise StagingCorrupted(
                    member.name,
                    f"it changed after it was written: {copied.size} bytes, sha256 "
                    f"{copied.sha256} (expected {member.size}, {member.sha256}); run the backup again",
                )
            count += 1
            total += copied.size
            if count % 1000 == 0:
                log.info("Archive: %s members, %s so far", f"{count:,}", format_bytes(total))
    seconds = max(time.monotonic() - started, 1e-6)
    log.info(
        "Archive built: manifest.json and %s members it lists (%s stored uncompressed), %s of "
        "member content in %.1f s (%s)",
        f"{count - 1:,}",
        f"{stored:,}",
        format_bytes(total),
        seconds,
        format_rate(total, seconds),
    )
    return {"members": count, "stored_members": stored, "content_bytes": total}


def plan_members(staging, *, database: dict | None, auth: dict | None, bucket_ids: list[str]):
    """Yield (PlannedMember, manifest entry) for everything the archive holds, manifest excluded.

    Read from staging each time it is called, so the manifest and the zip can both be written from
    it without holding the object list in memory.
    """

    if database and database.get("included"):
        yield (
            PlannedMember(
                DATABASE_MEMBER,
                staging.database_dump,
                database["bytes"],
                database["sha256"],
                "application/sql",
            ),
            {"path": DATABASE_MEMBER, "size": database["bytes"], "sha256": database["sha256"]},
        )
        roles = database.get("roles") or {}
        if roles.get("included"):
            yield (
                PlannedMember(
                    ROLES_MEMBER,
                    staging.database_roles,
                    roles["bytes"],
                    roles["sha256"],
                    "application/sql",
                ),
                {"path": ROLES_MEMBER, "size": roles["bytes"], "sha256": roles["sha256"]},
            )
    if auth and auth.get("included", True):
        yield (
            PlannedMember(
                AUTH_USERS_MEMBER,
                staging.auth_users,
                auth["bytes"],
                auth["sha256"],
                "application/json",
            ),
            {"path": AUTH_USERS_MEMBER, "size": auth["bytes"], "sha256": auth["sha256"]},
        )
    for bucket_id in bucket_ids:
        bucket = staging.bucket(bucket_id)
        for record in read_json_lines(bucket.folder / "reconciled.jsonl"):
            name = record["member"]  # chosen by reconcile, which sees every name of the bucket
            yield (
                PlannedMember(
                    name,
                    bucket.folder / record["file"],
                    record["size"],
                    record["sha256"],
                    record.get("content_type"),
                ),
                {
                    "path": name,
                    "size": record["size"],
                    "sha256": record["sha256"],
                    "object": {
                        "bucket": bucket_id,
                        "key": record["key"],
                        "content_type": record.get("content_type"),
                        "cache_control": record.get("cache_control"),
                        "etag": record.get("etag"),
                        "last_modified": record.get("last_modified"),
                        "consistency": record.get("consistency"),
                    },
                },
            )


def write_manifest_file(staging, header: dict, *, database, auth, bucket_ids) -> dict:
    """Write manifest.json into staging from what is staged; returns where, its size, sha256 and
    member count (the manifest itself not counted)."""

    manifest_path = ensure_parent(staging.run_folder / "archive" / MANIFEST_MEMBER)
    with manifest_path.open("w", encoding="utf-8") as manifest_file:
        member_count = write_manifest(
            manifest_file,
            header,
            (
                entry
                for _, entry in plan_members(
                    staging, database=database, auth=auth, bucket_ids=bucket_ids
                )
            ),
        )
    with manifest_path.open("rb") as manifest_file:
        manifest_size, manifest_sha256 = copy_hashing(manifest_file)
    return {
        "manifest_path": str(manifest_path),
        "manifest_bytes": manifest_size,
        "manifest_sha256": manifest_sha256,
        "manifest_members": member_count,
    }


def write_zip(
    output,
    staging,
    manifest: dict,
    *,
    database,
    auth,
    bucket_ids,
    created_at,
    spill_folder=None,
    compressor_factory=None,
) -> dict:
    """Write the zip (manifest.json first, then every staged member) to ``output``, a file-like
    with ``write``: a local file or a multipart upload (destination.stream_archive)."""
    manifest_path = staging.run_folder / "archive" / MANIFEST_MEMBER

    def all_members() -> Iterator[PlannedMember]:
        yield PlannedMember(
            MANIFEST_MEMBER,
            manifest_path,
            manifest["manifest_bytes"],
            manifest["manifest_sha256"],
            "application/json",
        )
        for planned, _ in plan_members(
            staging, database=database, auth=auth, bucket_ids=bucket_ids
        ):
            yield planned

    written = write_archive(
        output,
        all_members(),
        created_at,
        spill_folder=spill_folder,
        compressor_factory=compressor_factory,
    )
    if written["members"] != manifest["manifest_members"] + 1:
        raise StagingCorrupted(
            "the archive",
            f"wrote {written['members']} members, the manifest lists "
            f"{manifest['manifest_members']} + 1; run the backup again",
        )
    return {**written, "manifest_sha256": manifest["manifest_sha256"]}


def build_archive(
    staging, header: dict, *, database, auth, bucket_ids, created_at, compressor_factory=None
) -> dict:
    """Write manifest.json and the zip into staging; returns the archive's size and sha256."""

    manifest = write_manifest_file(
        staging, header, database=database, auth=auth, bucket_ids=bucket_ids
    )
    archive_path = ensure_parent(staging.archive)
    with archive_path.open("wb") as raw_output:
        writer = HashingWriter(raw_output)
        written = write_zip(
            writer,
            staging,
            manifest,
            database=database,
            auth=auth,
            bucket_ids=bucket_ids,
            created_at=created_at,
            compressor_factory=compressor_factory,
        )
    return {
        "path": str(archive_path),
        "bytes": writer.size,
        "sha256": writer.sha256,
        **written,
    }
