"""Add content to the repository and write one snapshot, last.

The order of writes is restic's, and it is what keeps the repository correct whatever stops a run:

1. blobs go into packs, each pack spooled to a local temporary file and uploaded whole (one PUT;
   multipart only for a pack larger than MULTIPART_THRESHOLD_BYTES, which only a blob stored
   alone makes);
2. then index files listing those packs;
3. then the snapshot, with ``If-None-Match: *``.

A run killed before 3 leaves packs (and maybe index files) that no snapshot references: nothing
points at a missing blob. The next writer finds those packs (listed under ``data/`` but in no
index), reads their headers and reuses their blobs, so a resumed run uploads nothing twice.

Memory is bounded by what is in flight, not by the content: bytes stream through the spool file
in READ_BYTES pieces, a pack is uploaded from disk, object entries are spooled to disk. What grows
with the repository is the set of known blob ids (about 260 bytes a blob, measured: 260 MB for
a million blobs, which a later slice must shrink, e.g. binary ids or a local SQLite index).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import tenacity
from botocore.exceptions import BotoCoreError, ClientError

from supabase_backup.destination.repository import layout
from supabase_backup.destination.repository.layout import BlobLocation

# s3.py owns what counts as a transient S3 failure and as a refused conditional write.
from supabase_backup.destination.s3 import (
    _is_precondition_failed,
    _is_transient,
    encryption_arguments,
)
from supabase_backup.errors import ConfigurationError, RepositoryInvalid, SnapshotKeyTaken
from supabase_backup.units import format_bytes

log = logging.getLogger(__name__)

READ_BYTES = 1024 * 1024
# A pack above this goes up as a multipart upload of MULTIPART_PART_BYTES parts, read from the
# spool file one at a time; below it, one PUT streamed from the file.
MULTIPART_THRESHOLD_BYTES = 64 * 2**20
MULTIPART_PART_BYTES = 16 * 2**20
# An index file is written every this many new blobs, so neither the pending index nor one
# index file grows with the run (restic keeps its index files below 8 MiB; this is about 7 MiB).
INDEX_MAX_BLOBS = 50_000
UPLOAD_ATTEMPTS = 4
UPLOAD_RETRY_INITIAL_SECONDS = 0.5
UPLOAD_RETRY_MAX_SECONDS = 8.0


@dataclass(frozen=True)
class Content:
    """What a piece of content became: its size, the sha256 of all its bytes, its blob ids."""

    size: int
    sha256: str
    blobs: tuple[str, ...]

    def as_entry(self) -> dict:
        return {"size": self.size, "sha256": self.sha256, "blobs": list(self.blobs)}


@dataclass
class WriterCounts:
    objects_downloaded: int = 0
    objects_reused: int = 0
    bytes_read: int = 0  # content bytes streamed through the writer
    blobs_added: int = 0
    bytes_added: int = 0  # blob bytes new to the repository
    blobs_deduplicated: int = 0
    bytes_deduplicated: int = 0
    packs_written: int = 0
    pack_bytes_written: int = 0
    packs_adopted: int = 0  # packs of an earlier, unfinished run, reused
    index_files_written: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SnapshotWritten:
    snapshot_id: str
    key: str
    size: int
    counts: dict = field(default_factory=dict)


def _retrying(what: str) -> tenacity.Retrying:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s failed (attempt %d of %d), retrying: %s: %s",
            what, state.attempt_number, UPLOAD_ATTEMPTS, type(error).__name__, error,
        )  # fmt: skip

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(
            lambda error: isinstance(error, Exception) and _is_transient(error)
        ),
        wait=tenacity.wait_exponential_jitter(
            multiplier=UPLOAD_RETRY_INITIAL_SECONDS, max=UPLOAD_RETRY_MAX_SECONDS
        ),
        stop=tenacity.stop_after_attempt(UPLOAD_ATTEMPTS),
        before_sleep=before_sleep,
        reraise=True,
    )


class _PackSpool:
    """The pack being filled: a temporary file and the header entries of the blobs in it."""

    def __init__(self, spool_dir: str | None) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile(prefix="supabase-backup-pack-", dir=spool_dir)
        self.blobs: list[dict] = []

    @property
    def size(self) -> int:
        return self.file.seek(0, os.SEEK_END)  # also where the next blob is written

    def close(self) -> None:
        self.file.close()


class RepositoryWriter:
    """One run's writer. ``open`` it (it creates the repository on first use), add content with
    ``add_object``/``reuse_object``/``add_file``, then ``finish`` (packs, index, snapshot);
    ``close`` discards the spool files whatever happened."""

    def __init__(
        self,
        client,
        bucket: str,
        prefix: str,
        config: layout.RepositoryConfig,
        *,
        id_key: bytes | None,
        known: dict[str, BlobLocation],
        adopted_packs: list[dict],
        spool_dir: str | None,
        put_extra: dict,
    ) -> None:
        self.client, self.bucket, self.prefix, self.config = client, bucket, prefix, config
        self._id_key = id_key
        self._known = known
        self._spool_dir = spool_dir
        self._put_extra = put_extra
        self._pack = _PackSpool(spool_dir)
        self._in_pack: set[str] = set()
        self._unindexed: list[dict] = list(adopted_packs)
        self._unindexed_blobs = sum(len(pack["blobs"]) for pack in adopted_packs)
        self._entries = tempfile.TemporaryFile(prefix="supabase-backup-entries-", dir=spool_dir)
        self._entry_count = 0
        self._files: dict[str, dict] = {}
        self.counts = WriterCounts(packs_adopted=len(adopted_packs))
        self._finished = False

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        client,
        bucket: str,
        prefix: str,
        *,
        id_key: bytes | None = None,
        recipients: tuple[str, ...] = (),
        spool_dir: str | None = None,
        chunk_bytes: int = layout.CHUNK_BYTES,
        pack_target_bytes: int = layout.PACK_TARGET_BYTES,
        server_side_encryption: str = "AES256",
        kms_key_id: str | None = None,
    ) -> RepositoryWriter:
        """Open the repository under ``prefix`` (creating its config on first use; chunk and pack
        sizes then come from the config, not the arguments), learn which blobs it holds, and
        adopt the packs of an unfinished earlier run."""
        config = _open_config(
            client,
            bucket,
            prefix,
            id_key=id_key,
            recipients=recipients,
            chunk_bytes=chunk_bytes,
            pack_target_bytes=pack_target_bytes,
        )
        indexed = layout.load_index(client, bucket, prefix)
        stored = layout.stored_packs(client, bucket, prefix)
        # Only blobs in packs that are stored count as held: a pack the index lists but S3 lacks
        # (or holds at another size) is damage that check reports, and this run stores those
        # blobs again rather than pointing a new snapshot at them.
        known: dict[str, BlobLocation] = {}
        for pack in indexed.values():
            if stored.get(pack["id"]) != pack["size"]:
                log.warning(
                    "Pack %s is in the index but not stored whole; its blobs are stored again",
                    pack["id"],
                )
                continue
            for blob in pack["blobs"]:
                known.setdefault(
                    blob["id"],
                    BlobLocation(pack["id"], blob["offset"], blob["length"], blob["raw_length"]),
                )
        adopted = []
        for pack_id, size in stored.items():
            if pack_id in indexed:
                continue
            blobs = layout.read_pack_header(client, bucket, prefix, pack_id, size)
            adopted.append({"id": pack_id, "size": size, "blobs": blobs})
            for blob in blobs:
                known.setdefault(
                    blob["id"],
                    BlobLocation(pack_id, blob["offset"], blob["length"], blob["raw_length"]),
                )
        log.info(
            "Repository s3://%s/%s: %d blobs known in %d packs; %d pack(s) of an unfinished run "
            "adopted",
            bucket, layout.repository_prefix(prefix), len(known), len(indexed) + len(adopted),
            len(adopted),
        )  # fmt: skip
        return cls(
            client,
            bucket,
            prefix,
            config,
            id_key=id_key,
            known=known,
            adopted_packs=adopted,
            spool_dir=spool_dir,
            put_extra=encryption_arguments(server_side_encryption, kms_key_id),
        )

    # -- what the repository holds ----------------------------------------------------------

    def holds(self, blob_id: str) -> bool:
        return blob_id in self._known or blob_id in self._in_pack

    # -- adding content ---------------------------------------------------------------------

    def add_content(self, source: IO[bytes]) -> Content:
        """Stream ``source`` into blobs of the config's chunk size; identical bytes (a blob the
        repository or this run already holds) are kept once."""
        whole = hashlib.sha256()
        blobs: list[str] = []
        size = 0
        while True:
            added = self._add_chunk(source, whole)
            if added is None:
                break
            blob_id, length = added
            blobs.append(blob_id)
            size += length
            if length < self.config.chunk_bytes:
                break
        self.counts.bytes_read += size
        return Content(size, whole.hexdigest(), tuple(blobs))

    def add_object(self, entry: dict, source: IO[bytes]) -> dict:
        """Store a Storage object read from ``source``; ``entry`` is its metadata (bucket, key,
        version, id, etag, updated_at, content_type, cache_control, user_metadata). Returns the
        entry as the snapshot lists it."""
        content = self.add_content(source)
        self.counts.objects_downloaded += 1
        return self._add_entry({**entry, **content.as_entry()})

    def reuse_object(self, entry: dict, parent_entry: dict) -> dict | None:
        """List an object with its parent snapshot's blobs, without reading it; None when the
        repository no longer holds one of them (then download it instead)."""
        if not all(self.holds(blob_id) for blob_id in parent_entry["blobs"]):
            return None
        self.counts.objects_reused += 1
        return self._add_entry(
            {
                **entry,
                "size": parent_entry["size"],
                "sha256": parent_entry["sha256"],
                "blobs": list(parent_entry["blobs"]),
            }
        )

    def add_file(self, name: str, source: IO[bytes]) -> dict:
        """The database dump, ``db/roles.sql``, ``auth/users.json``: stored by member name."""
        if name in self._files:
            raise ConfigurationError(f"the snapshot already holds {name}")
        self._files[name] = self.add_content(source).as_entry()
        return self._files[name]

    def _add_entry(self, entry: dict) -> dict:
        self._entries.write(layout.snapshot_entry_line(entry, first=self._entry_count == 0))
        self._entry_count += 1
        return entry

    def _add_chunk(self, source: IO[bytes], whole) -> tuple[str, int] | None:
        pack = self._pack
        start = pack.size
        hasher = layout.BlobHasher(self._id_key)
        length = 0
        chunk_bytes = self.config.chunk_bytes
        while length < chunk_bytes:
            data = source.read(min(READ_BYTES, chunk_bytes - length))
            if not data:
                break
            hasher.update(data)
            whole.update(data)
            pack.file.write(data)
            length += len(data)
            if start and length > self.config.pack_target_bytes:
                # A blob larger than a pack is stored alone: the blobs before it go up now.
                pack, start = self._split_pack(start), 0
        if length == 0:
            return None
        blob_id = hasher.hexdigest()
        if self.holds(blob_id):
            pack.file.seek(start)
            pack.file.truncate()
            self.counts.blobs_deduplicated += 1
            self.counts.bytes_deduplicated += length
        else:
            pack.blobs.append(
                {"id": blob_id, "offset": start, "length": length, "raw_length": length}
            )
            self._in_pack.add(blob_id)
            self.counts.blobs_added += 1
            self.counts.bytes_added += length
            if pack.size >= self.config.pack_target_bytes:
                self._flush_pack()
        return blob_id, length

    def _split_pack(self, start: int) -> _PackSpool:
        """Move the bytes from ``start`` on (a blob still being written) into a new pack, and
        upload the pack before it."""
        earlier = self._pack
        later = _PackSpool(self._spool_dir)
        earlier.file.seek(start)
        while data := earlier.file.read(READ_BYTES):
            later.file.write(data)
        earlier.file.seek(start)
        earlier.file.truncate()
        self._flush_pack()
        self._pack.close()
        self._pack = later
        return later

    # -- writing packs, index, snapshot -----------------------------------------------------

    def _flush_pack(self) -> None:
        pack = self._pack
        if not pack.blobs:
            return
        pack.file.write(layout.pack_header(pack.blobs))
        size = pack.size
        pack.file.seek(0)
        digest = hashlib.sha256()
        while data := pack.file.read(READ_BYTES):
            digest.update(data)
        pack_id = digest.hexdigest()
        key = layout.pack_key(self.prefix, pack_id)
        for attempt in _retrying(f"Uploading pack {pack_id[:12]}"):
            with attempt:
                self._upload_pack(pack.file, key, size)
        for blob in pack.blobs:
            self._known[blob["id"]] = BlobLocation(
                pack_id, blob["offset"], blob["length"], blob["raw_length"]
            )
        self._unindexed.append({"id": pack_id, "size": size, "blobs": pack.blobs})
        self._unindexed_blobs += len(pack.blobs)
        self.counts.packs_written += 1
        self.counts.pack_bytes_written += size
        log.info(
            "Pack %s: %d blob(s), %s (%d packs, %s added this run)",
            pack_id[:12], len(pack.blobs), format_bytes(size), self.counts.packs_written,
            format_bytes(self.counts.bytes_added),
        )  # fmt: skip
        self._in_pack.clear()
        pack.file.seek(0)
        pack.file.truncate()
        pack.blobs = []
        if self._unindexed_blobs >= INDEX_MAX_BLOBS:
            self._write_index()

    def _upload_pack(self, file: IO[bytes], key: str, size: int) -> None:
        # Packs are named by their content: writing one again writes the same bytes, so no
        # conditional write is needed (and a retried PUT is harmless).
        file.seek(0)
        if size <= MULTIPART_THRESHOLD_BYTES:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=_Window(file, 0, size), **self._put_extra
            )
            return
        upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, **self._put_extra
        )["UploadId"]
        try:
            parts = []
            for number, offset in enumerate(range(0, size, MULTIPART_PART_BYTES), start=1):
                file.seek(offset)
                body = file.read(min(MULTIPART_PART_BYTES, size - offset))
                reply = self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
                parts.append({"PartNumber": number, "ETag": reply["ETag"]})
                del body
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except (BotoCoreError, ClientError):
                log.warning(
                    "Could not abort multipart upload %s of s3://%s/%s", upload_id, self.bucket, key
                )
            raise

    def _write_index(self) -> None:
        if not self._unindexed:
            return
        data = layout.index_file(self._unindexed)
        index_id = layout.content_id(data)
        key = layout.index_key(self.prefix, index_id)
        for attempt in _retrying(f"Writing index {index_id[:12]}"):
            with attempt:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **self._put_extra)
        self.counts.index_files_written += 1
        self._unindexed = []
        self._unindexed_blobs = 0

    def flush(self) -> None:
        """Steps 1 and 2 of the order of writes: the last pack, then the index of every pack not
        yet in one. ``finish`` calls it; a test calls it alone to stop before the snapshot."""
        self._flush_pack()
        self._write_index()

    def finish(
        self,
        *,
        run_id: str,
        parent: str | None = None,
        time: datetime | None = None,
        details: dict | None = None,
    ) -> SnapshotWritten:
        """Write the snapshot, last, and only if its key is free."""
        if self._finished:
            raise ConfigurationError("this repository writer already wrote its snapshot")
        self.flush()
        header: dict[str, Any] = {
            "run_id": run_id,
            "time": (time or datetime.now(UTC)).isoformat(),
            "parent": parent,
            "repository": self.config.repository_id,
            "files": self._files,
            "details": details or {},
            "summary": {**self.counts.as_dict(), "objects": self._entry_count},
        }
        with tempfile.TemporaryFile(
            prefix="supabase-backup-snapshot-", dir=self._spool_dir
        ) as spool:
            spool.write(layout.snapshot_head(header))
            self._entries.seek(0)
            while data := self._entries.read(READ_BYTES):
                spool.write(data)
            spool.write(layout.SNAPSHOT_END_LINE)
            size = spool.tell()
            spool.seek(0)
            digest = hashlib.sha256()
            while data := spool.read(READ_BYTES):
                digest.update(data)
            snapshot_id = digest.hexdigest()
            key = layout.snapshot_key(self.prefix, snapshot_id)
            for attempt in _retrying(f"Writing snapshot {snapshot_id[:12]}"):
                with attempt:
                    self._put_snapshot(spool, key, size, snapshot_id)
        self._finished = True
        log.info(
            "Snapshot %s written: %d objects (%d reused, %d read), %s added in %d pack(s)",
            snapshot_id[:12], self._entry_count, self.counts.objects_reused,
            self.counts.objects_downloaded, format_bytes(self.counts.bytes_added),
            self.counts.packs_written,
        )  # fmt: skip
        return SnapshotWritten(snapshot_id, key, size, self.counts.as_dict())

    def _put_snapshot(self, spool: IO[bytes], key: str, size: int, snapshot_id: str) -> None:
        spool.seek(0)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=_Window(spool, 0, size),
                IfNoneMatch="*",
                ContentType="application/json",
                **self._put_extra,
            )
        except ClientError as error:
            if not _is_precondition_failed(error):
                raise
            # The key is the sha256 of the bytes: the same bytes there means a retried PUT whose
            # first attempt landed; anything else was not written by this tool.
            existing = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            digest = hashlib.sha256()
            while data := existing.read(READ_BYTES):
                digest.update(data)
            if digest.hexdigest() != snapshot_id:
                raise SnapshotKeyTaken(self.bucket, key) from None

    def close(self) -> None:
        self._pack.close()
        self._entries.close()

    def __enter__(self) -> RepositoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Window:
    """A read-only view of ``length`` bytes of ``file`` from ``start``: botocore streams a PUT body
    from it (and rewinds it for a retry) without the pack ever being in memory."""

    def __init__(self, file: IO[bytes], start: int, length: int) -> None:
        self._file, self._start, self._length = file, start, length
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        remaining = self._length - self._position
        if size is None or size < 0 or size > remaining:
            size = remaining
        self._file.seek(self._start + self._position)
        data = self._file.read(size)
        self._position += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self._position = offset
        elif whence == os.SEEK_CUR:
            self._position += offset
        else:
            self._position = self._length + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def __len__(self) -> int:
        return self._length


def _open_config(
    client,
    bucket: str,
    prefix: str,
    *,
    id_key: bytes | None,
    recipients: tuple[str, ...],
    chunk_bytes: int,
    pack_target_bytes: int,
) -> layout.RepositoryConfig:
    key = layout.config_key(prefix)
    data = layout.get_bytes(client, bucket, key)
    if data is None:
        if recipients and id_key is None:
            raise ConfigurationError(
                "a repository for age recipients names its blobs with a keyed hash: hand the "
                "writer the repository id key (32 random bytes kept as a secret)"
            )
        config = layout.RepositoryConfig(
            repository_id=uuid.uuid4().hex,
            created_at=datetime.now(UTC).isoformat(),
            blob_id=layout.BLOB_ID_HMAC if id_key is not None else layout.BLOB_ID_SHA256,
            chunk_bytes=chunk_bytes,
            pack_target_bytes=pack_target_bytes,
            id_key_check=layout.id_key_check(id_key) if id_key is not None else None,
            id_key_age=layout.encrypt_id_key(id_key, recipients)
            if id_key is not None and recipients
            else None,
            recipients=recipients,
        )
        try:
            # Conditional: two first runs at once agree on one config (the loser reads it).
            client.put_object(Bucket=bucket, Key=key, Body=config.to_json(), IfNoneMatch="*")
            log.info("Created the repository s3://%s/%s", bucket, layout.repository_prefix(prefix))
        except ClientError as error:
            if not _is_precondition_failed(error):
                raise
        data = layout.get_bytes(client, bucket, key)
        if data is None:
            raise RepositoryInvalid(
                bucket, prefix, "its config vanished right after it was written"
            )
    config = layout.RepositoryConfig.parse(data, bucket, prefix)
    if config.blob_id == layout.BLOB_ID_HMAC:
        if id_key is None:
            raise RepositoryInvalid(
                bucket, prefix, "its blob ids are keyed (hmac-sha256) and no id key was given"
            )
        if not secrets.compare_digest(layout.id_key_check(id_key), config.id_key_check or ""):
            raise RepositoryInvalid(
                bucket, prefix, "the id key given is not this repository's (its check differs)"
            )
    elif id_key is not None:
        raise RepositoryInvalid(
            bucket,
            prefix,
            "it names blobs by plain sha256 and an id key was given: it was created without "
            "one; use another prefix for a keyed repository",
        )
    return config
