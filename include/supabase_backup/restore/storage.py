"""Restore Storage objects from an archive into a Storage API, streamed and resumable.

For every bucket the manifest records, a missing bucket is created with its recorded settings
(public, file_size_limit, allowed_mime_types). Then every object member, in manifest order:

- absent on the target: uploaded (``POST /storage/v1/object/{bucket}/{key}``), the body streamed from
  the zip with its Content-Length, with the recorded content type and cache control;
- present with the same size: downloaded and hashed; the same sha256 means it is skipped, so a
  restore that was interrupted is simply run again;
- present with different bytes: a conflict, refused unless ``overwrite`` (then ``x-upsert: true``).

A key the target refuses (Storage refuses names that older projects could hold, such as non-ASCII
or ``%``) is recorded with the server's reason and the restore goes on; the list ends the restore
with RestoreIncomplete, so nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import httpx

from supabase_backup.errors import (
    ApiError,
    ApiNotFound,
    ApiTransientError,
    RestoreIncomplete,
)
from supabase_backup.restore.archive import RestoreArchive, iter_objects
from supabase_backup.sources.api_client import (
    ApiSettings,
    call_with_retries,
    open_client,
    raise_for_error,
    request_json,
)
from supabase_backup.sources.storage_listing import encode_path_segment, object_route
from supabase_backup.units import format_bytes

log = logging.getLogger(__name__)

UPLOAD_CHUNK = 1024 * 1024
BUCKET_SETTINGS = ("public", "file_size_limit", "allowed_mime_types")

UPLOADED, SKIPPED, OVERWRITTEN, CONFLICT, REFUSED = (
    "uploaded",
    "skipped",
    "overwritten",
    "conflict",
    "refused",
)


class Progress:
    """Objects and bytes done of the total, per bucket, on stderr: one line at most every
    ``interval`` seconds and one when a bucket is done (plain lines, no terminal tricks)."""

    def __init__(
        self,
        totals: dict[str, tuple[int, int]],
        stream: IO[str] | None = None,
        interval: float = 2.0,
    ) -> None:
        self.totals = totals
        self.done = {bucket: [0, 0] for bucket in totals}
        self.stream = stream or sys.stderr
        self.interval = interval
        self._last = time.monotonic()

    def object_done(self, bucket: str, size: int, outcome: str) -> None:
        done = self.done.setdefault(bucket, [0, 0])
        done[0] += 1
        done[1] += size
        now = time.monotonic()
        total_objects, _ = self.totals.get(bucket, (0, 0))
        if done[0] == total_objects or now - self._last >= self.interval:
            self._last = now
            self.show(bucket)

    def show(self, bucket: str) -> None:
        objects, size = self.done.get(bucket, [0, 0])
        total_objects, total_bytes = self.totals.get(bucket, (0, 0))
        print(
            f"storage {bucket}: {objects:,}/{total_objects:,} objects, "
            f"{format_bytes(size)}/{format_bytes(total_bytes)}",
            file=self.stream,
            flush=True,
        )


@dataclass
class StorageRestoreResult:
    target: str
    buckets_created: list[str] = field(default_factory=list)
    bucket_differences: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (UPLOADED, SKIPPED, OVERWRITTEN, CONFLICT, REFUSED), 0
        )
    )
    bytes_uploaded: int = 0
    conflicts: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def describe(self) -> str:
        counts = self.counts
        lines = [
            f"Storage restored into {self.target}: {counts[UPLOADED]:,} objects uploaded "
            f"({format_bytes(self.bytes_uploaded)}), {counts[OVERWRITTEN]:,} overwritten, "
            f"{counts[SKIPPED]:,} already there with the same bytes (skipped), "
            f"{counts[CONFLICT]:,} conflicting, {counts[REFUSED]:,} refused by the target.",
            "Buckets created: " + (", ".join(self.buckets_created) or "none"),
        ]
        for difference in self.bucket_differences:
            lines.append(f"Bucket kept as it was: {difference}")
        return "\n".join(lines)

    def problems(self) -> str | None:
        parts = []
        if self.conflicts:
            parts.append(
                f"{len(self.conflicts)} object(s) already exist on the target with different "
                f"bytes (run again with --overwrite to replace them): " + "; ".join(self.conflicts)
            )
        if self.refused:
            parts.append(
                f"{len(self.refused)} object(s) were refused by the target: "
                + "; ".join(self.refused)
            )
        return " ".join(parts) or None


def ensure_buckets(client: httpx.Client, buckets: list[dict], result: StorageRestoreResult) -> None:
    for bucket in buckets:
        bucket_id = bucket["bucket"]
        settings = bucket.get("settings") or {}
        wanted = {name: settings.get(name) for name in BUCKET_SETTINGS}
        wanted["public"] = bool(wanted["public"])
        try:
            existing = request_json(
                client,
                "GET",
                f"/storage/v1/bucket/{encode_path_segment(bucket_id)}",
                what=f"Reading bucket {bucket_id!r}",
            ).json()
        except ApiNotFound:
            request_json(
                client,
                "POST",
                "/storage/v1/bucket",
                what=f"Creating bucket {bucket_id!r}",
                json={"id": bucket_id, "name": settings.get("name") or bucket_id, **wanted},
            )
            result.buckets_created.append(bucket_id)
            log.info("Created bucket %r with %s", bucket_id, wanted)
            continue
        different = {
            name: (existing.get(name), value)
            for name, value in wanted.items()
            if (existing.get(name) or None) != (value or None)
        }
        if different:
            result.bucket_differences.append(
                f"{bucket_id}: "
                + ", ".join(
                    f"{name} is {now!r}, the backup had {then!r}"
                    for name, (now, then) in different.items()
                )
            )


def _object_info(client: httpx.Client, bucket: str, key: str) -> dict | None:
    try:
        return request_json(
            client,
            "GET",
            object_route(bucket, key, route="object/info"),
            what=f"Reading {bucket}/{key}",
        ).json()
    except ApiNotFound:
        return None


def _remote_sha256(client: httpx.Client, bucket: str, key: str) -> str:
    def download() -> str:
        digest = hashlib.sha256()
        with client.stream("GET", object_route(bucket, key)) as response:
            raise_for_error(response)
            for chunk in response.iter_bytes(UPLOAD_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    return call_with_retries(f"Downloading {bucket}/{key} to compare", download)


def _upload(client: httpx.Client, archive: RestoreArchive, member: dict, upsert: bool) -> None:
    entry = member["object"]
    headers = {
        "content-type": entry.get("content_type") or "application/octet-stream",
        "content-length": str(member["size"]),
        "x-upsert": "true" if upsert else "false",
    }
    if entry.get("cache_control"):
        headers["cache-control"] = entry["cache_control"]

    def body() -> Iterator[bytes]:
        with archive.open(member["path"]) as source:
            while chunk := source.read(UPLOAD_CHUNK):
                yield chunk

    def send() -> None:
        # A fresh generator per attempt: a retried upload starts again from the member's first byte.
        response = client.post(
            object_route(entry["bucket"], entry["key"], route="object"),
            content=body(),
            headers=headers,
        )
        raise_for_error(response)

    call_with_retries(f"Uploading {entry['bucket']}/{entry['key']}", send)


def restore_object(
    client: httpx.Client,
    archive: RestoreArchive,
    member: dict,
    *,
    overwrite: bool,
    result: StorageRestoreResult,
) -> str:
    entry = member["object"]
    bucket, key = entry["bucket"], entry["key"]
    try:
        info = _object_info(client, bucket, key)
        if info is not None:
            same = (
                info.get("size") == member["size"]
                and _remote_sha256(client, bucket, key) == member["sha256"]
            )
            if same:
                return SKIPPED
            if not overwrite:
                result.conflicts.append(
                    f"{bucket}/{key!r} (target {info.get('size')} bytes, "
                    f"backup {member['size']} bytes)"
                )
                return CONFLICT
        _upload(client, archive, member, upsert=info is not None)
    except ApiTransientError:
        raise
    except ApiError as error:  # refused for this key (InvalidKey, InvalidMimeType, EntityTooLarge…)
        result.refused.append(f"{bucket}/{key!r}: {error.code or error.status}: {error.message}")
        return REFUSED
    result.bytes_uploaded += member["size"]
    return OVERWRITTEN if info is not None else UPLOADED


def restore_storage(
    archive: RestoreArchive,
    header: dict,
    settings: ApiSettings,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    client: httpx.Client | None = None,
) -> StorageRestoreResult:
    """Create the buckets and upload every object member; RestoreIncomplete lists what the target
    refused or what conflicted (after every other object was restored)."""
    result = StorageRestoreResult(settings.url)
    own_client = client is None
    client = client or open_client(settings, max_connections=4)
    try:
        ensure_buckets(client, (header.get("storage") or {}).get("buckets") or [], result)
        for member in iter_objects(archive):
            outcome = restore_object(client, archive, member, overwrite=overwrite, result=result)
            result.counts[outcome] += 1
            if progress is not None:
                progress.object_done(member["object"]["bucket"], member["size"], outcome)
    finally:
        if own_client:
            client.close()
    problems = result.problems()
    if problems:
        error = RestoreIncomplete(problems)
        error.result = result  # what was done, for callers that report it
        raise error
    return result
