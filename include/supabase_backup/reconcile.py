"""Make the storage export agree with the database snapshot.

The bucket exports list objects through the Storage API while the database task reads
``storage.objects`` inside the dump's snapshot (the exact, case-sensitive inventory). Here the two
meet, per bucket:

- in the inventory and exported, same size and etag        → ``in_snapshot``
- in the inventory and exported, size or etag differ       → ``changed_after_snapshot``
- exported but not in the inventory                        → ``created_after_snapshot``
- in the inventory but not exported (the listing missed it,
  e.g. v1's case-insensitive paths)                        → fetched now; if it is gone from the
                                                             database too → ``deleted_after_snapshot``
- in the inventory, not downloadable, still in the database → the run fails

The comparison runs in a temporary SQLite file so 100k objects do not grow memory. The result is
``reconciled.jsonl`` (one line per object that goes into the archive, each key once) and
``deleted.jsonl`` beside each bucket's index: the archive builder reads only those.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from supabase_backup.errors import InventoryMismatch
from supabase_backup.staging import BucketStaging, StagingArea

log = logging.getLogger(__name__)

IN_SNAPSHOT = "in_snapshot"
CREATED_AFTER_SNAPSHOT = "created_after_snapshot"
CHANGED_AFTER_SNAPSHOT = "changed_after_snapshot"
DELETED_AFTER_SNAPSHOT = "deleted_after_snapshot"

# fetch_missing(bucket_staging, keys) -> (records, missing_keys): downloads keys into staging.
FetchMissing = Callable[[BucketStaging, list[str]], tuple[list[dict], list[str]]]
# keys_still_present(bucket_id, keys) -> the subset still in storage.objects now.
KeysStillPresent = Callable[[str, list[str]], set[str]]


def normalise_etag(etag: str | None) -> str | None:
    if etag is None:
        return None
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"').lower()


def read_json_lines(path) -> Iterator[dict]:
    if not path.exists():
        return
    with path.open("r", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def inventory_for_bucket(staging: StagingArea, bucket_id: str) -> Iterator[dict]:
    # The inventory is sorted by bucket, so a bucket's rows are contiguous; reading the whole file
    # per bucket is linear and keeps nothing in memory.
    for row in read_json_lines(staging.storage_inventory):
        if row["bucket"] == bucket_id:
            yield row


def reconcile_bucket(
    staging: StagingArea,
    bucket_id: str,
    *,
    have_inventory: bool,
    fetch_missing: FetchMissing,
    keys_still_present: KeysStillPresent,
    batch_size: int = 500,
) -> dict:
    """Reconcile one bucket; writes reconciled.jsonl and deleted.jsonl; returns its counts."""
    bucket = staging.bucket(bucket_id)
    with tempfile.TemporaryDirectory(prefix="supabase-backup-reconcile-") as scratch:
        database = sqlite3.connect(str(Path(scratch) / "reconcile.sqlite"))
        database.executescript(
            """
            CREATE TABLE inventory (key TEXT PRIMARY KEY, size INTEGER, etag TEXT);
            CREATE TABLE exported (key TEXT PRIMARY KEY, record TEXT NOT NULL);
            """
        )
        if have_inventory:
            database.executemany(
                "INSERT OR REPLACE INTO inventory VALUES (?, ?, ?)",
                ((row["key"], row["size"], normalise_etag(row["etag"]))
                 for row in inventory_for_bucket(staging, bucket_id)),
            )
        # A key listed twice (v1's merged folders can do that) is kept once: the last download wins.
        database.executemany(
            "INSERT OR REPLACE INTO exported VALUES (?, ?)",
            ((record["key"], json.dumps(record)) for record in read_json_lines(bucket.index_path)),
        )
        database.commit()

        fetched = deleted = 0
        deleted_rows: list[dict] = []
        if have_inventory:
            unexported = [
                (key, size, etag)
                for key, size, etag in database.execute(
                    "SELECT key, size, etag FROM inventory "
                    "WHERE key NOT IN (SELECT key FROM exported) ORDER BY key"
                )
            ]
            for start in range(0, len(unexported), batch_size):
                batch = unexported[start:start + batch_size]
                keys = [key for key, _, _ in batch]
                log.info(
                    "Bucket %s: fetching %d objects the listing missed (%d of %d)",
                    bucket_id, len(keys), start + len(keys), len(unexported),
                )
                records, missing_keys = fetch_missing(bucket, keys)
                database.executemany(
                    "INSERT OR REPLACE INTO exported VALUES (?, ?)",
                    ((record["key"], json.dumps(record)) for record in records),
                )
                fetched += len(records)
                if missing_keys:
                    still_present = keys_still_present(bucket_id, missing_keys)
                    if still_present:
                        raise InventoryMismatch(
                            f"bucket {bucket_id!r}: {len(still_present)} object(s) are in the "
                            f"database but the Storage API cannot serve them (first: "
                            f"{sorted(still_present)[0]!r}); check the storage backend"
                        )
                    by_key = {key: (size, etag) for key, size, etag in batch}
                    for key in missing_keys:
                        size, etag = by_key[key]
                        deleted_rows.append({"key": key, "size": size, "etag": etag})
                    deleted += len(missing_keys)
            database.commit()

        counts = {IN_SNAPSHOT: 0, CREATED_AFTER_SNAPSHOT: 0, CHANGED_AFTER_SNAPSHOT: 0}
        objects = total_bytes = 0
        with bucket.folder.joinpath("reconciled.jsonl").open("w", encoding="utf-8") as output:
            rows = database.execute(
                "SELECT e.record, i.key IS NOT NULL, i.size, i.etag FROM exported e "
                "LEFT JOIN inventory i ON i.key = e.key ORDER BY e.key"
            )
            for record_json, in_inventory, snapshot_size, snapshot_etag in rows:
                record = json.loads(record_json)
                if not have_inventory:
                    state = IN_SNAPSHOT
                elif not in_inventory:
                    state = CREATED_AFTER_SNAPSHOT
                elif snapshot_size != record["size"] or (
                    snapshot_etag is not None
                    and normalise_etag(record.get("etag")) not in (None, snapshot_etag)
                ):
                    state = CHANGED_AFTER_SNAPSHOT
                else:
                    state = IN_SNAPSHOT
                counts[state] += 1
                record["consistency"] = state
                objects += 1
                total_bytes += record["size"]
                output.write(json.dumps(record, ensure_ascii=False) + "\n")
        with bucket.folder.joinpath("deleted.jsonl").open("w", encoding="utf-8") as output:
            for row in deleted_rows:
                output.write(json.dumps(row, ensure_ascii=False) + "\n")
        database.close()

    summary = {
        "bucket": bucket_id,
        "objects": objects,
        "bytes": total_bytes,
        "fetched_after_listing": fetched,
        "created_after_snapshot": counts[CREATED_AFTER_SNAPSHOT],
        "changed_after_snapshot": counts[CHANGED_AFTER_SNAPSHOT],
        "deleted_after_snapshot": deleted,
    }
    log.info("Bucket %s reconciled: %s", bucket_id, summary)
    return summary


def reconcile_buckets(
    staging: StagingArea,
    bucket_ids: Iterable[str],
    *,
    have_inventory: bool,
    fetch_missing: FetchMissing,
    keys_still_present: KeysStillPresent,
) -> dict:
    buckets = [
        reconcile_bucket(
            staging, bucket_id, have_inventory=have_inventory,
            fetch_missing=fetch_missing, keys_still_present=keys_still_present,
        )
        for bucket_id in bucket_ids
    ]
    return {
        "buckets": buckets,
        "objects": sum(bucket["objects"] for bucket in buckets),
        "bytes": sum(bucket["bytes"] for bucket in buckets),
        "created_after_snapshot": sum(bucket["created_after_snapshot"] for bucket in buckets),
        "changed_after_snapshot": sum(bucket["changed_after_snapshot"] for bucket in buckets),
        "deleted_after_snapshot": sum(bucket["deleted_after_snapshot"] for bucket in buckets),
        "fetched_after_listing": sum(bucket["fetched_after_listing"] for bucket in buckets),
    }
