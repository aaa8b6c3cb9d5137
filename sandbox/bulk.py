"""Synthetic bulk buckets: a million objects without a million files.

A bulk bucket's ``storage.objects`` rows are inserted by one set-based statement (generate_series),
with metadata (size, mimetype, eTag, cacheControl, lastModified) but no blob file. The API server
makes each object's bytes when it is downloaded, from (seed, key) alone, so anyone can compute what a
download must return without asking the server: ``object_bytes`` / ``object_sha256`` /
``iter_objects`` below.

- Key of object number n (0-based): ``bulk/<n // 1000, 3 digits>/<n, 6 digits>.bin``, e.g.
  ``bulk/000/000123.bin``: 1,000 objects a folder, so a delimited listing has folders too.
- Bytes: ``shake_256(f"{seed}/{key}").digest(size)``, high-entropy, the same on every GET.
- eTag: ``"<md5 of f'{seed}/{key}'>"`` (quoted hex). It is an opaque tag like an S3 multipart
  eTag, NOT the md5 of the bytes: Postgres cannot compute the bytes, and the backup never treats an
  eTag as a content hash.
- The set of bulk buckets and their (objects, size, seed) is ``STATE/bulk.json``; the server
  re-reads it when it changes.

A row of a bulk bucket without a blob file is generated. An upload (upsert) into a bulk bucket
writes a blob file, which then wins over the generator; a deleted row answers NoSuchKey like any
other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

from .common import SandboxError, connect, storage_ts
from .seed import add_buckets

BULK_FILE = "bulk.json"
DEFAULT_BUCKET = "bulk"
DEFAULT_SIZE = 1024
DEFAULT_SEED = 0
MAX_SIZE = 16 * 1024 * 1024  # made in one piece in memory on every GET: keep objects small
BULK_MIMETYPE = "application/octet-stream"
BULK_CACHE_CONTROL = "max-age=3600"
BULK_TIME = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
OBJECTS_PER_FOLDER = 1000


def object_key(number: int) -> str:
    """The key of bulk object ``number`` (0-based). Must match the SQL in ``insert_sql``."""
    return f"bulk/{number // OBJECTS_PER_FOLDER:03d}/{number:06d}.bin"


def object_bytes(seed: int, key: str, size: int) -> bytes:
    return hashlib.shake_256(f"{seed}/{key}".encode()).digest(size) if size else b""


def object_sha256(seed: int, key: str, size: int) -> str:
    return hashlib.sha256(object_bytes(seed, key, size)).hexdigest()


def object_etag(seed: int, key: str) -> str:
    return '"' + hashlib.md5(f"{seed}/{key}".encode()).hexdigest() + '"'


def iter_objects(spec: dict) -> Iterator[tuple[str, int, str]]:
    """(key, size, sha256) of every object of a bulk bucket ``spec`` (as ``add_bulk_bucket`` returns
    it), in number order, computed here without the server."""
    seed, size = spec["seed"], spec["size"]
    for number in range(spec["objects"]):
        key = object_key(number)
        yield key, size, object_sha256(seed, key, size)


# Keys, metadata and timestamps must agree with object_key / object_etag / storage_metadata.
INSERT_SQL = """
INSERT INTO storage.objects (bucket_id, name, metadata, version, created_at, updated_at, last_accessed_at)
SELECT %(bucket)s::text, k.name,
       jsonb_build_object('eTag', '"' || md5(%(seed)s::text || '/' || k.name) || '"',
                          'size', %(size)s::bigint, 'mimetype', %(mimetype)s::text,
                          'cacheControl', %(cache_control)s::text, 'lastModified', %(last_modified)s::text,
                          'contentLength', %(size)s::bigint, 'httpStatusCode', 200),
       md5(%(seed)s::text || '#' || k.name), %(at)s::timestamptz, %(at)s::timestamptz, %(at)s::timestamptz
FROM generate_series(0, %(objects)s::bigint - 1) AS g,
     LATERAL (SELECT 'bulk/' || lpad((g / 1000)::text, greatest(3, length((g / 1000)::text)), '0')
                     || '/' || lpad(g::text, greatest(6, length(g::text)), '0') || '.bin' AS name) AS k
"""


def _bulk_path(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir) / BULK_FILE


def load_specs(state_dir: str | os.PathLike) -> dict[str, dict]:
    """{bucket: {"bucket", "objects", "size", "seed"}} of the bulk buckets of a state dir."""
    path = _bulk_path(state_dir)
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def _save_specs(state_dir: str | os.PathLike, specs: dict[str, dict]) -> None:
    path = _bulk_path(state_dir)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(specs, indent=2) + "\n")
    os.replace(tmp, path)


def add_bulk_bucket(s: dict, bucket: str = DEFAULT_BUCKET, objects: int = 1000, size: int = DEFAULT_SIZE,
                    seed: int = DEFAULT_SEED, log=lambda message: None) -> dict:
    """Create (or re-create) the bulk bucket ``bucket`` with ``objects`` generated objects of ``size``
    bytes. Idempotent: a bucket already holding this spec is left alone; a different spec replaces
    the bucket's rows. Returns the spec ``{"bucket", "objects", "size", "seed"}``."""
    if objects < 0 or not 0 <= size <= MAX_SIZE:
        raise SandboxError(f"bulk bucket: objects must be >= 0 and size 0..{MAX_SIZE} bytes")
    spec = {"bucket": bucket, "objects": int(objects), "size": int(size), "seed": int(seed)}
    specs = load_specs(s["state_dir"])
    with connect(s, autocommit=False) as conn:
        present = conn.execute("SELECT count(*) FROM storage.objects WHERE bucket_id = %s", (bucket,)).fetchone()[0]
        if specs.get(bucket) == spec and present == objects:
            return spec
        log(f"bulk bucket {bucket!r}: {objects:,} objects of {size:,} bytes (seed {seed})")
        add_buckets(conn, [{"id": bucket}])
        if present:
            conn.execute("DELETE FROM storage.objects WHERE bucket_id = %s", (bucket,))
        conn.execute(INSERT_SQL, {"bucket": bucket, "objects": objects, "size": size, "seed": str(seed),
                                  "mimetype": BULK_MIMETYPE, "cache_control": BULK_CACHE_CONTROL,
                                  "last_modified": storage_ts(BULK_TIME), "at": BULK_TIME})
        conn.commit()
    with connect(s, autocommit=True) as conn:
        # The listing's plan depends on the row estimate: a million fresh rows need new statistics.
        conn.execute("ANALYZE storage.objects")
    specs[bucket] = spec
    _save_specs(s["state_dir"], specs)
    return spec


def remove_bulk_bucket(s: dict, bucket: str) -> None:
    """Delete a bulk bucket's rows and the bucket itself."""
    with connect(s, autocommit=True) as conn:
        conn.execute("DELETE FROM storage.objects WHERE bucket_id = %s", (bucket,))
        conn.execute("DELETE FROM storage.buckets WHERE id = %s", (bucket,))
    specs = load_specs(s["state_dir"])
    if specs.pop(bucket, None) is not None:
        _save_specs(s["state_dir"], specs)


class BulkSpecs:
    """The server's view of STATE/bulk.json, re-read when the file changes (one stat per call)."""

    def __init__(self, state_dir: str) -> None:
        self.path = _bulk_path(state_dir)
        self.stamp: tuple | None = None
        self.specs: dict[str, dict] = {}

    def get(self, bucket: str) -> dict | None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp != self.stamp:
            self.specs = json.loads(self.path.read_text()) if stamp else {}
            self.stamp = stamp
        return self.specs.get(bucket)
