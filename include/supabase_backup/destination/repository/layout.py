"""The repository's keys and the bytes of its files (FORMAT.md, "version 3: the repository").

Writer and reader both build every key and parse every file here, so the two cannot drift apart.
All files are JSON except packs; every JSON file names its ``format`` and ``version``, and a reader
refuses a version it does not know.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from supabase_backup.config import age_recipient
from supabase_backup.errors import RepositoryDamaged, RepositoryInvalid

REPOSITORY_FOLDER = "repository/"
CONFIG_FORMAT = "supabase-backup-repository"
INDEX_FORMAT = "supabase-backup-repository-index"
SNAPSHOT_FORMAT = "supabase-backup-repository-snapshot"
PACK_HEADER_FORMAT = "supabase-backup-pack"
REPOSITORY_VERSION = 3
FILE_VERSION = 1

# A pack is closed once it holds this much; a blob never spans packs, so a pack is at most this
# plus one chunk. 16 MiB: few PUTs per GiB (64), yet a ranged GET of one small blob stays cheap.
PACK_TARGET_BYTES = 16 * 2**20
# Content is cut into blobs of this size (fixed-size chunks; content-defined chunking is later).
# 8 MiB: a 200 GiB dump is 25,600 blobs, never one object in memory.
CHUNK_BYTES = 8 * 2**20

BLOB_ID_SHA256 = "sha256"
BLOB_ID_HMAC = "hmac-sha256"
# HMAC(id key, this) in the config: a writer handed another key is refused before it names a blob.
ID_KEY_CHECK_MESSAGE = b"supabase-backup repository id key check"

# Pack trailer: the header's length as 4 bytes little-endian (restic's layout), then this magic,
# so a pack can be recognised and its header found from its last 12 bytes alone.
PACK_MAGIC = b"SBPACK03"
PACK_TRAILER = struct.Struct("<I8s")


def repository_prefix(prefix: str) -> str:
    return f"{prefix}{REPOSITORY_FOLDER}"


def config_key(prefix: str) -> str:
    return f"{repository_prefix(prefix)}config"


def pack_key(prefix: str, pack_id: str) -> str:
    return f"{repository_prefix(prefix)}data/{pack_id[:2]}/{pack_id}"


def index_key(prefix: str, index_id: str) -> str:
    return f"{repository_prefix(prefix)}index/{index_id}"


def snapshot_key(prefix: str, snapshot_id: str) -> str:
    return f"{repository_prefix(prefix)}snapshots/{snapshot_id}"


def folder(prefix: str, name: str) -> str:
    """``data/``, ``index/``, ``snapshots/`` (and later ``locks/``) under the repository."""
    return f"{repository_prefix(prefix)}{name}/"


def id_from_key(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def list_objects(client, bucket: str, key_prefix: str) -> Iterator[tuple[str, int]]:
    """(key, size) of every object under ``key_prefix``: ListObjectsV2, 1,000 a request."""
    token: str | None = None
    while True:
        arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": key_prefix}
        if token:
            arguments["ContinuationToken"] = token
        reply = client.list_objects_v2(**arguments)
        for item in reply.get("Contents", []):
            yield item["Key"], item["Size"]
        if not reply.get("IsTruncated"):
            return
        token = reply["NextContinuationToken"]


def get_bytes(client, bucket: str, key: str) -> bytes | None:
    """The object's bytes (small files only: config, index, snapshot header); None when absent."""
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if is_not_found(error):
            return None
        raise


def is_not_found(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def encode_json(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def content_id(data: bytes) -> str:
    """The storage id of a pack, index or snapshot file: the sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# config


@dataclass(frozen=True)
class RepositoryConfig:
    repository_id: str
    created_at: str
    blob_id: str
    chunk_bytes: int
    pack_target_bytes: int
    id_key_check: str | None = None
    id_key_age: str | None = None  # the id key, age-encrypted to the recipients, base64
    recipients: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        return encode_json(
            {
                "format": CONFIG_FORMAT,
                "version": REPOSITORY_VERSION,
                "id": self.repository_id,
                "created_at": self.created_at,
                "blob_id": self.blob_id,
                "chunk_bytes": self.chunk_bytes,
                "pack_target_bytes": self.pack_target_bytes,
                "id_key": None
                if self.blob_id == BLOB_ID_SHA256
                else {
                    "check": self.id_key_check,
                    "age": self.id_key_age,
                    "recipients": list(self.recipients),
                },
            }
        )

    @classmethod
    def parse(cls, data: bytes, bucket: str, prefix: str) -> RepositoryConfig:
        document = _parse_versioned(
            data, CONFIG_FORMAT, REPOSITORY_VERSION, bucket, prefix, "config"
        )
        id_key = document.get("id_key") or {}
        if document["blob_id"] not in (BLOB_ID_SHA256, BLOB_ID_HMAC):
            raise RepositoryInvalid(
                bucket, prefix, f"the config names blob ids {document['blob_id']!r}, unknown here"
            )
        return cls(
            repository_id=document["id"],
            created_at=document["created_at"],
            blob_id=document["blob_id"],
            chunk_bytes=int(document["chunk_bytes"]),
            pack_target_bytes=int(document["pack_target_bytes"]),
            id_key_check=id_key.get("check"),
            id_key_age=id_key.get("age"),
            recipients=tuple(id_key.get("recipients") or ()),
        )


def id_key_check(id_key: bytes) -> str:
    return hmac.new(id_key, ID_KEY_CHECK_MESSAGE, hashlib.sha256).hexdigest()


def encrypt_id_key(id_key: bytes, recipients: tuple[str, ...]) -> str:
    """The id key encrypted to the age recipients (base64), so whoever holds an identity can
    recover it; the workers are handed the key itself."""
    import pyrage  # a Rust extension: loaded only when a keyed repository is created

    ciphertext = pyrage.encrypt(id_key, [age_recipient(item) for item in recipients])
    return base64.b64encode(ciphertext).decode()


def _parse_versioned(
    data: bytes, expected_format: str, version: int, bucket: str, prefix: str, what: str
) -> dict:
    try:
        document = json.loads(data)
    except ValueError:
        raise RepositoryDamaged(bucket, prefix, f"the {what} is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != expected_format:
        raise RepositoryInvalid(bucket, prefix, f"the {what} is not a {expected_format} file")
    if document.get("version") != version:
        raise RepositoryInvalid(
            bucket,
            prefix,
            f"the {what} has version {document.get('version')!r}; this tool reads version "
            f"{version}: upgrade supabase-backup",
        )
    return document


# ---------------------------------------------------------------------------------------------
# blob ids


class BlobHasher:
    """The id of a blob from its plaintext, fed as it streams: sha256, or HMAC-SHA256 with the
    repository's id key (then a blob's name says nothing about its bytes to someone without it)."""

    def __init__(self, id_key: bytes | None) -> None:
        self._hash = (
            hmac.new(id_key, digestmod=hashlib.sha256) if id_key is not None else hashlib.sha256()
        )

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def blob_id_of(data: bytes, id_key: bytes | None) -> str:
    hasher = BlobHasher(id_key)
    hasher.update(data)
    return hasher.hexdigest()


# ---------------------------------------------------------------------------------------------
# packs and the index


class BlobLocation(NamedTuple):
    """Where a blob's bytes are: ``length`` bytes at ``offset`` of pack ``pack_id``; ``raw_length``
    is the plaintext's length (equal to ``length`` until compression or encryption is added)."""

    pack_id: str
    offset: int
    length: int
    raw_length: int


def pack_header(blobs: list[dict]) -> bytes:
    """The header and trailer appended to a pack's blobs: JSON listing each blob, then its length
    and the magic. ``blobs``: ``{"id", "offset", "length", "raw_length"}`` in pack order."""
    header = encode_json({"format": PACK_HEADER_FORMAT, "version": FILE_VERSION, "blobs": blobs})
    return header + PACK_TRAILER.pack(len(header), PACK_MAGIC)


def parse_pack_trailer(trailer: bytes, bucket: str, prefix: str, pack_id: str) -> int:
    """The header's length from a pack's last PACK_TRAILER.size bytes."""
    if len(trailer) != PACK_TRAILER.size:
        raise RepositoryDamaged(bucket, prefix, f"pack {pack_id} is too short to have a header")
    length, magic = PACK_TRAILER.unpack(trailer)
    if magic != PACK_MAGIC:
        raise RepositoryDamaged(bucket, prefix, f"pack {pack_id} does not end with {PACK_MAGIC!r}")
    return length


def parse_pack_header(header: bytes, bucket: str, prefix: str, pack_id: str) -> list[dict]:
    document = _parse_versioned(
        header, PACK_HEADER_FORMAT, FILE_VERSION, bucket, prefix, f"header of pack {pack_id}"
    )
    return document["blobs"]


def index_file(packs: list[dict]) -> bytes:
    """``packs``: ``{"id", "size", "blobs": [...]}``; the blobs as in the pack's header."""
    return encode_json({"format": INDEX_FORMAT, "version": FILE_VERSION, "packs": packs})


def parse_index_file(data: bytes, bucket: str, prefix: str, index_id: str) -> list[dict]:
    return _parse_versioned(data, INDEX_FORMAT, FILE_VERSION, bucket, prefix, f"index {index_id}")[
        "packs"
    ]


# ---------------------------------------------------------------------------------------------
# snapshots: the header on the first line, then one object entry per line, so a snapshot of a
# million objects is written and read one entry at a time, and is still one JSON document.

SNAPSHOT_OBJECTS_LINE = b'"objects": [\n'
SNAPSHOT_END_LINE = b"]}\n"


def snapshot_head(header: dict) -> bytes:
    body = json.dumps(
        {"format": SNAPSHOT_FORMAT, "version": FILE_VERSION, **header},
        sort_keys=True,
        separators=(",", ":"),
    )
    return body[:-1].encode() + b",\n" + SNAPSHOT_OBJECTS_LINE


def snapshot_entry_line(entry: dict, first: bool) -> bytes:
    return (b"" if first else b",") + encode_json(entry) + b"\n"


def parse_snapshot_head(line: bytes, bucket: str, prefix: str, snapshot_id: str) -> dict:
    if not line.endswith(b",\n"):
        raise RepositoryDamaged(bucket, prefix, f"snapshot {snapshot_id} has no header line")
    return _parse_versioned(
        line[:-2] + b"}", SNAPSHOT_FORMAT, FILE_VERSION, bucket, prefix, f"snapshot {snapshot_id}"
    )


def parse_snapshot_entries(
    lines: Iterator[bytes], bucket: str, prefix: str, snapshot_id: str
) -> Iterator[dict]:
    """The object entries, from the lines after the header; the snapshot must end whole."""
    if next(lines, None) != SNAPSHOT_OBJECTS_LINE:
        raise RepositoryDamaged(bucket, prefix, f"snapshot {snapshot_id} lacks its objects line")
    for line in lines:
        if line == SNAPSHOT_END_LINE:
            return
        yield json.loads(line.lstrip(b","))
    raise RepositoryDamaged(bucket, prefix, f"snapshot {snapshot_id} is cut short")


# ---------------------------------------------------------------------------------------------
# reading the index and pack headers (writer and reader alike)


def load_index(client, bucket: str, prefix: str) -> dict[str, dict]:
    """Every pack the index files list: pack id -> ``{"id", "size", "blobs"}``. Index files may
    overlap (two runs that stored the same pack); the union is the index."""
    packs: dict[str, dict] = {}
    for key, _size in list_objects(client, bucket, folder(prefix, "index")):
        index_id = id_from_key(key)
        data = get_bytes(client, bucket, key)
        if data is None:  # deleted since the listing (a later prune); what it listed is gone too
            continue
        if content_id(data) != index_id:
            raise RepositoryDamaged(bucket, prefix, f"index {index_id} does not match its name")
        for pack in parse_index_file(data, bucket, prefix, index_id):
            packs[pack["id"]] = pack
    return packs


def stored_packs(client, bucket: str, prefix: str) -> dict[str, int]:
    """pack id -> size of every pack under ``data/``."""
    return {
        id_from_key(key): size for key, size in list_objects(client, bucket, folder(prefix, "data"))
    }


def read_pack_header(client, bucket: str, prefix: str, pack_id: str, size: int) -> list[dict]:
    """A pack's blobs from its own header (two ranged GETs), for a pack no index lists: the
    packs of a run killed before it wrote its index, or a lost index being rebuilt."""
    key = pack_key(prefix, pack_id)
    if size < PACK_TRAILER.size:
        raise RepositoryDamaged(bucket, prefix, f"pack {pack_id} is too short to have a header")
    trailer = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={size - PACK_TRAILER.size}-")
    length = parse_pack_trailer(trailer["Body"].read(), bucket, prefix, pack_id)
    start = size - PACK_TRAILER.size - length
    if start < 0:
        raise RepositoryDamaged(bucket, prefix, f"pack {pack_id} has a header longer than itself")
    reply = client.get_object(
        Bucket=bucket, Key=key, Range=f"bytes={start}-{size - PACK_TRAILER.size - 1}"
    )
    return parse_pack_header(reply["Body"].read(), bucket, prefix, pack_id)
