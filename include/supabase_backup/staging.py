"""Where a run keeps its exports until the archive is built.

Export tasks may run on different workers, so the staging root is a universal_pathlib path: a local
folder by default (``file:///tmp/supabase-backup-staging``), or an object-store URL such as
``s3://bucket/staging`` for Celery or Kubernetes executors. In the DAG the root is an Airflow
``StagingPath`` (a UPath that takes its credentials from an Airflow connection), made by
``supabase_backup.airflow``; this module only uses the path interface both share. Every run gets its own folder, removed by
the DAG's teardown whatever the outcome.

Layout of one run's folder (the contract between the exporters, reconcile and the archive builder)::

    db/backup.sql                         the pg_dump output, byte for byte
    inventory/storage_objects.jsonl       storage.objects as of the database snapshot, one JSON per line
    auth/users.json                       the Auth users, a JSON array
    storage/buckets.json                  the buckets being exported, as the Storage API lists them
    storage/<bucket-folder>/index.jsonl   one JSON line per exported object (storage.export_bucket)
    storage/<bucket-folder>/missing.jsonl listed objects that were gone when downloaded
    storage/<bucket-folder>/reconciled.jsonl, deleted.jsonl   written by reconcile; the archive's input
    storage/<bucket-folder>/objects/<n>   the object's bytes; <n> is a sequence number, never the name
    storage/<bucket-folder>/shards/<k>/   one shard of a big bucket (shards.py): its own index.jsonl,
                                          missing.jsonl, unreadable.jsonl, summary.json and objects/,
                                          so a retried shard starts over without touching another;
                                          reconcile merges them into the bucket's reconciled.jsonl
    storage/<bucket-folder>/fetched/      a sharded bucket's objects fetched by reconcile (index, objects)

Objects are staged under sequence numbers rather than their names: a key may be ``a`` and ``a/b`` at
once, differ from another only by case, or contain ``..``; none of that can reach a file system here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

# A staging path is a universal_pathlib UPath (the command line, the tests) or an Airflow
# ObjectStoragePath (the DAG): the same path interface, but no common base class, and the library
# may not import Airflow even for types. Any says so honestly instead of naming one of the two.
StagingPath = Any


SHARDS_FOLDER = "shards"


def run_folder_name(run_id: str) -> str:
    """A folder name for a DAG run id (ids contain ':' and '+'), unique per run id."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def bucket_folder_name(bucket_id: str) -> str:
    """A folder name for a bucket id that is safe on any file system and unique per id."""
    folder = quote(bucket_id, safe="")
    return "%2E" if folder == "." else "%2E%2E" if folder == ".." else folder


@dataclass(frozen=True)
class BucketStaging:
    bucket_id: str
    folder: StagingPath

    @property
    def index_path(self) -> StagingPath:
        return self.folder / "index.jsonl"

    @property
    def objects_folder(self) -> StagingPath:
        return self.folder / "objects"

    def object_path(self, sequence_number: int) -> StagingPath:
        return self.objects_folder / f"{sequence_number:08d}"

    def shard(self, number: int) -> BucketStaging:
        """Shard ``number`` (from 1) of this bucket: its own folder inside the bucket's."""
        return BucketStaging(self.bucket_id, self.folder / SHARDS_FOLDER / f"{number:04d}")


def shard_folder(number: int) -> str:
    """A shard's folder relative to its bucket's folder, e.g. ``shards/0002``."""
    return f"{SHARDS_FOLDER}/{number:04d}"


@dataclass(frozen=True)
class StagingArea:
    run_folder: StagingPath

    @classmethod
    def for_run(cls, root: str | StagingPath, run_id: str) -> StagingArea:
        """The run's folder under ``root`` (a path object, or a URL opened with universal_pathlib)."""
        if isinstance(root, str):
            from upath import UPath

            root = UPath(root.rstrip("/"))
        return cls(root / run_folder_name(run_id))

    @classmethod
    def at(cls, run_folder: str) -> StagingArea:
        """A staging area at an exact folder URL (tests and tools)."""
        from upath import UPath

        return cls(UPath(run_folder))

    @property
    def uri(self) -> str:
        return str(self.run_folder)

    @property
    def database_dump(self) -> StagingPath:
        return self.run_folder / "db" / "backup.sql"

    @property
    def database_roles(self) -> StagingPath:
        return self.run_folder / "db" / "roles.sql"

    @property
    def storage_inventory(self) -> StagingPath:
        return self.run_folder / "inventory" / "storage_objects.jsonl"

    @property
    def auth_users(self) -> StagingPath:
        return self.run_folder / "auth" / "users.json"

    @property
    def bucket_list(self) -> StagingPath:
        return self.run_folder / "storage" / "buckets.json"

    @property
    def archive(self) -> StagingPath:
        return self.run_folder / "archive" / "backup.zip"

    def bucket(self, bucket_id: str) -> BucketStaging:
        return BucketStaging(bucket_id, self.run_folder / "storage" / bucket_folder_name(bucket_id))

    def create(self) -> None:
        self.run_folder.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        if self.run_folder.exists():
            self.run_folder.rmdir(recursive=True)


def ensure_parent(path: StagingPath) -> StagingPath:
    """Create the folder a file will be written into (a no-op on object stores)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def read_json_lines(path) -> Iterator[dict]:
    if not path.exists():
        return
    with path.open("r", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)
