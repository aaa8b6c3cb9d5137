"""Read the repository: list and read snapshots, stream a blob or an object back, check it all.

Every byte read back is checked on the way: a blob's bytes must hash to its id (with a keyed
repository, when the reader has the key) and have the indexed length, so a restore is byte-exact
or fails naming the pack. ``check`` is restic's: the structure (every blob a snapshot needs is in
the index, every indexed pack exists with its size), and with ``read_data`` the bytes of every
pack, or of a random share of them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from botocore.exceptions import ClientError

from supabase_backup.destination.repository import layout
from supabase_backup.errors import RepositoryDamaged, RepositoryInvalid, SnapshotNotFound

log = logging.getLogger(__name__)

READ_BYTES = 1024 * 1024
# Blobs up to SMALL_BLOB_BYTES are read through a window of WINDOW_BYTES of their pack (one GET
# for the many small blobs stored side by side); larger ones by a ranged GET of their own.
SMALL_BLOB_BYTES = 1024 * 1024
WINDOW_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    time: str
    run_id: str
    parent: str | None


@dataclass
class Snapshot:
    """A snapshot's header (run, time, parent, files, details, summary) and its object entries,
    read one at a time from S3 when iterated."""

    snapshot_id: str
    header: dict
    _entries: Iterator[dict]
    _body: object = None

    @property
    def files(self) -> dict[str, dict]:
        return self.header["files"]

    def objects(self) -> Iterator[dict]:
        return self._entries

    def close(self) -> None:
        """Give the connection back when the objects are not read (a listing of headers)."""
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    damaged_packs: list[str] = field(default_factory=list)
    affected_snapshots: list[str] = field(default_factory=list)
    snapshots: int = 0
    packs: int = 0
    packs_read: int = 0
    blobs_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _lines(body) -> Iterator[bytes]:
    """The lines of a streamed body, each with its newline."""
    rest = b""
    while data := body.read(READ_BYTES):
        rest += data
        *complete, rest = rest.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if rest:
        yield rest


class _BlobReader:
    """A blob's bytes from a ranged GET, checked against its id and length at the end."""

    def __init__(
        self, body, blob_id: str, location: layout.BlobLocation, id_key, damaged, check: bool
    ) -> None:
        self._body, self._blob_id, self._location = body, blob_id, location
        self._hasher = layout.BlobHasher(id_key)
        self._damaged, self._check = damaged, check
        self._size = 0
        self._done = False

    def read(self, size: int = -1) -> bytes:
        data = self._body.read(size if size is not None and size >= 0 else None)
        self._hasher.update(data)
        self._size += len(data)
        if (not data or size is None or size < 0) and not self._done:
            self._done = True
            if self._size != self._location.length or (
                self._check and self._hasher.hexdigest() != self._blob_id
            ):
                raise self._damaged(
                    f"blob {self._blob_id} in pack {self._location.pack_id} does not match its "
                    f"id ({self._size} of {self._location.length} bytes read)"
                )
        return data

    def close(self) -> None:
        self._body.close()


class _ContentReader:
    """A file or object as the concatenation of its blobs, each opened as it is reached."""

    def __init__(self, reader: RepositoryReader, blobs: list[str]) -> None:
        self._reader, self._blobs = reader, list(blobs)
        self._current: _BlobReader | None = None

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_BYTES), b""))
        while True:
            if self._current is None:
                if not self._blobs:
                    return b""
                self._current = self._reader.open_blob(self._blobs.pop(0))
            data = self._current.read(size)
            if data:
                return data
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()


class RepositoryReader:
    def __init__(self, client, bucket: str, prefix: str, *, id_key: bytes | None = None) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        data = layout.get_bytes(client, bucket, layout.config_key(prefix))
        if data is None:
            raise RepositoryInvalid(
                bucket, prefix, f"no repository there ({layout.config_key(prefix)} does not exist)"
            )
        self.config = layout.RepositoryConfig.parse(data, bucket, prefix)
        # Blob ids of a keyed repository can be checked only with its key; without it, check
        # still hashes whole packs against their names, which finds the same damage.
        self._id_key = id_key
        self._check_blob_ids = self.config.blob_id == layout.BLOB_ID_SHA256 or id_key is not None
        self._packs: dict[str, dict] | None = None
        self._locations: dict[str, layout.BlobLocation] | None = None
        self._window: tuple[str, int, bytes] | None = None  # (pack id, offset, bytes)

    def _damaged(self, reason: str) -> RepositoryDamaged:
        return RepositoryDamaged(self.bucket, self.prefix, reason)

    # -- index ------------------------------------------------------------------------------

    def _load_index(self) -> dict[str, layout.BlobLocation]:
        if self._locations is None:
            self._packs = layout.load_index(self.client, self.bucket, self.prefix)
            self._locations = {}
            for pack in self._packs.values():
                for blob in pack["blobs"]:
                    self._locations.setdefault(
                        blob["id"],
                        layout.BlobLocation(
                            pack["id"], blob["offset"], blob["length"], blob["raw_length"]
                        ),
                    )
        return self._locations

    # -- snapshots --------------------------------------------------------------------------

    def snapshot_ids(self) -> list[str]:
        return [
            layout.id_from_key(key)
            for key, _ in layout.list_objects(
                self.client, self.bucket, layout.folder(self.prefix, "snapshots")
            )
        ]

    def snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot, oldest first (each costs one GET of its header line)."""
        found = []
        for snapshot_id in self.snapshot_ids():
            snapshot = self.read_snapshot(snapshot_id)
            header = snapshot.header
            snapshot.close()
            found.append(
                SnapshotInfo(snapshot_id, header["time"], header["run_id"], header.get("parent"))
            )
        return sorted(found, key=lambda item: item.time)

    def read_snapshot(self, snapshot_id: str) -> Snapshot:
        try:
            reply = self.client.get_object(
                Bucket=self.bucket, Key=layout.snapshot_key(self.prefix, snapshot_id)
            )
        except ClientError as error:
            if layout.is_not_found(error):
                raise SnapshotNotFound(self.bucket, self.prefix, snapshot_id) from None
            raise
        lines = _lines(_HashingBody(reply["Body"], snapshot_id, self._damaged))
        head = next(lines, b"")
        header = layout.parse_snapshot_head(head, self.bucket, self.prefix, snapshot_id)
        return Snapshot(snapshot_id, header, self._entries(lines, snapshot_id), reply["Body"])

    def _entries(self, lines: Iterator[bytes], snapshot_id: str) -> Iterator[dict]:
        yield from layout.parse_snapshot_entries(lines, self.bucket, self.prefix, snapshot_id)
        # Read to the end, so the body's hash is checked against the snapshot's name.
        for _ in lines:
            raise self._damaged(f"snapshot {snapshot_id} has bytes after its end")

    def blobs_of(self, snapshot_id: str) -> Iterator[str]:
        snapshot = self.read_snapshot(snapshot_id)
        for item in snapshot.files.values():
            yield from item["blobs"]
        for entry in snapshot.objects():
            yield from entry["blobs"]

    # -- bytes ------------------------------------------------------------------------------

    def open_blob(self, blob_id: str) -> _BlobReader:
        """A blob's bytes, streamed from a ranged GET of its pack and checked at the end. A small
        blob is served from a window of up to WINDOW_BYTES of its pack read once, so restoring a
        thousand small objects written together costs one GET, not a thousand."""
        location = self._load_index().get(blob_id)
        if location is None:
            raise self._damaged(f"blob {blob_id} is in no index")
        key = layout.pack_key(self.prefix, location.pack_id)
        if location.length > SMALL_BLOB_BYTES:
            last = location.offset + location.length - 1
            body = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={location.offset}-{last}"
            )["Body"]
        else:
            body = io.BytesIO(self._from_window(key, location))
        return _BlobReader(
            body, blob_id, location, self._id_key, self._damaged, self._check_blob_ids
        )

    def _from_window(self, key: str, location: layout.BlobLocation) -> bytes:
        window = self._window
        end = location.offset + location.length
        if not (
            window
            and window[0] == location.pack_id
            and window[1] <= location.offset
            and end <= window[1] + len(window[2])
        ):
            pack_size = (self._packs or {}).get(location.pack_id, {}).get("size", end)
            last = max(end, min(location.offset + WINDOW_BYTES, pack_size)) - 1
            data = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={location.offset}-{last}"
            )["Body"].read()
            window = self._window = (location.pack_id, location.offset, data)
        start = location.offset - window[1]
        return window[2][start : start + location.length]

    def open_content(self, blobs: list[str]) -> IO[bytes]:
        return _ContentReader(self, blobs)  # type: ignore[return-value]

    def restore_objects(self, snapshot_id: str) -> Iterator[tuple[dict, IO[bytes]]]:
        """Each object of the snapshot with a readable of its bytes (read it before the next)."""
        for entry in self.read_snapshot(snapshot_id).objects():
            content = self.open_content(entry["blobs"])
            try:
                yield entry, content
            finally:
                content.close()

    # -- check ------------------------------------------------------------------------------

    def check(self, read_data: bool | float = False, *, seed: int | None = None) -> CheckResult:
        """Structure always; with ``read_data`` True every pack's bytes, with a fraction (0.1 for
        10%) that share of the packs chosen at random (restic's --read-data-subset)."""
        result = CheckResult()
        locations = self._load_index()
        packs = self._packs or {}
        result.packs = len(packs)
        stored = layout.stored_packs(self.client, self.bucket, self.prefix)
        damaged: set[str] = set()
        for pack_id, pack in sorted(packs.items()):
            if pack_id not in stored:
                result.problems.append(f"pack {pack_id} is in the index but not stored")
                damaged.add(pack_id)
            elif stored[pack_id] != pack["size"]:
                result.problems.append(
                    f"pack {pack_id} has {stored[pack_id]} bytes; the index says {pack['size']}"
                )
                damaged.add(pack_id)
        chosen = self._packs_to_read(read_data, sorted(set(packs) - damaged), seed)
        for pack_id in chosen:
            problem = self._read_pack(packs[pack_id], result)
            if problem:
                result.problems.append(problem)
                damaged.add(pack_id)
        result.packs_read = len(chosen)
        # Where every copy of a blob is: a blob stored by two runs in two packs survives one.
        copies: dict[str, set[str]] = {}
        for pack in packs.values():
            for blob in pack["blobs"]:
                copies.setdefault(blob["id"], set()).add(pack["id"])
        affected = []
        for snapshot_id in sorted(self.snapshot_ids()):
            result.snapshots += 1
            missing = damaged_blobs = 0
            try:
                for blob_id in self.blobs_of(snapshot_id):
                    if blob_id not in locations:
                        missing += 1
                    elif copies[blob_id] <= damaged:
                        damaged_blobs += 1
            except RepositoryDamaged as error:  # the snapshot file itself
                result.problems.append(error.reason)
                affected.append(snapshot_id)
                continue
            if missing:
                result.problems.append(
                    f"snapshot {snapshot_id} needs {missing} blob(s) that no index lists"
                )
            if missing or damaged_blobs:
                affected.append(snapshot_id)
        result.damaged_packs = sorted(damaged)
        result.affected_snapshots = affected
        log.info(
            "Checked %d snapshot(s), %d pack(s) (%d read): %s",
            result.snapshots, result.packs, result.packs_read,
            "no problem" if result.ok else f"{len(result.problems)} problem(s), damaged packs "
            f"{', '.join(result.damaged_packs) or 'none'}, affected snapshots "
            f"{', '.join(affected) or 'none'}",
        )  # fmt: skip
        return result

    @staticmethod
    def _packs_to_read(read_data: bool | float, packs: list[str], seed: int | None) -> list[str]:
        if read_data is True:
            return packs
        if read_data is False or not packs:
            return []
        if not 0 < float(read_data) <= 1:
            raise ValueError("read_data is True, False or a fraction in (0, 1]")
        count = max(1, math.ceil(len(packs) * float(read_data)))
        return sorted(random.Random(seed).sample(packs, count))

    def _read_pack(self, pack: dict, result: CheckResult) -> str | None:
        """Read a whole pack once: its sha256 must be its id, each blob must hash to its id."""
        body = self.client.get_object(
            Bucket=self.bucket, Key=layout.pack_key(self.prefix, pack["id"])
        )["Body"]
        whole = hashlib.sha256()
        position = 0
        bad_blobs = []
        for blob in sorted(pack["blobs"], key=lambda item: item["offset"]):
            while position < blob["offset"]:  # a gap is not written, but read past it anyway
                data = body.read(min(READ_BYTES, blob["offset"] - position))
                if not data:
                    break
                whole.update(data)
                position += len(data)
            hasher = layout.BlobHasher(self._id_key)
            remaining = blob["length"]
            while remaining:
                data = body.read(min(READ_BYTES, remaining))
                if not data:
                    break
                hasher.update(data)
                whole.update(data)
                position += len(data)
                remaining -= len(data)
            result.blobs_read += 1
            if self._check_blob_ids and (remaining or hasher.hexdigest() != blob["id"]):
                bad_blobs.append(blob["id"])
        while data := body.read(READ_BYTES):
            whole.update(data)
        if bad_blobs:
            return (
                f"pack {pack['id']} is damaged: {len(bad_blobs)} blob(s) do not match their id "
                f"({', '.join(blob_id[:12] for blob_id in bad_blobs[:5])})"
            )
        if whole.hexdigest() != pack["id"]:
            return f"pack {pack['id']} is damaged: its bytes do not hash to its name"
        return None


class _HashingBody:
    """A snapshot's body, checked against its name (its sha256) once read to the end."""

    def __init__(self, body, snapshot_id: str, damaged) -> None:
        self._body, self._snapshot_id, self._damaged = body, snapshot_id, damaged
        self._digest = hashlib.sha256()

    def read(self, size: int) -> bytes:
        data = self._body.read(size)
        self._digest.update(data)
        if not data and self._digest.hexdigest() != self._snapshot_id:
            raise self._damaged(f"snapshot {self._snapshot_id} does not match its name")
        return data
