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
- in the inventory, not downloadable, still in the database → unreadable: listed with its reason,
                                                             and the run ends ``incomplete``
- downloads that failed after their retries (``unreadable.jsonl``) and are still not exported after
  the second try here                                      → unreadable likewise

Each object's metadata (content type, cache control, etag) is the stored one: the snapshot's
``storage.objects.metadata``, else the listing row's, never the download's headers (the real server
serves stored ``text/html`` as ``text/plain``). Each object also gets its archive member name here
(``archive.object_member_name``), because whether a name must step aside for a folder of the same
name (FORMAT.md, "Object member names") depends on the other names of the bucket.

The comparison runs in a temporary SQLite file so 100k objects do not grow memory. The result is
``reconciled.jsonl`` (one line per object that goes into the archive, each key once),
``deleted.jsonl`` and ``unreadable_final.jsonl`` beside each bucket's index: the archive builder
reads only those. A bucket exported in shards (``shards.py``) is reconciled as one bucket: the
shards' indexes are read together, so member names, metadata and counts come out exactly as for
a bucket exported by one task.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from pathlib import Path

from supabase_backup.archive.members import FOLDER_FILE_SUFFIX, object_member_name
from supabase_backup.sources.storage_download import UNREADABLE_FILE_NAME
from supabase_backup.staging import (
    BucketStaging,
    StagingArea,
    read_json_lines,
    shard_folder,
)

log = logging.getLogger(__name__)

UNREADABLE_FINAL_FILE_NAME = "unreadable_final.jsonl"
FETCHED_FOLDER = "fetched"  # what this step fetches for a bucket exported in shards
MAX_UNREADABLE_EXAMPLES = 3  # in the task's result and the history row; the manifest lists them all
IN_SNAPSHOT = "in_snapshot"
CREATED_AFTER_SNAPSHOT = "created_after_snapshot"
CHANGED_AFTER_SNAPSHOT = "changed_after_snapshot"
DELETED_AFTER_SNAPSHOT = "deleted_after_snapshot"
NOT_SERVED_REASON = (
    "the Storage API answers NoSuchKey, but storage.objects still holds it: the "
    "object's bytes are missing from the storage backend"
)

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


def inventory_for_bucket(staging: StagingArea, bucket_id: str) -> Iterator[dict]:
    # The inventory is sorted by bucket, so a bucket's rows are contiguous; reading the whole file
    # per bucket is linear and keeps nothing in memory.
    for row in read_json_lines(staging.storage_inventory):
        if row["bucket"] == bucket_id:
            yield row


def _open_scratch_database(folder: str) -> sqlite3.Connection:
    database = sqlite3.connect(str(Path(folder) / "reconcile.sqlite"))
    database.executescript(
        """
        CREATE TABLE inventory (key TEXT PRIMARY KEY, size INTEGER, etag TEXT,
                                content_type TEXT, cache_control TEXT, stored_etag TEXT);
        CREATE TABLE exported (key TEXT PRIMARY KEY, member TEXT NOT NULL, record TEXT NOT NULL);
        CREATE INDEX exported_member ON exported (member);
        CREATE TABLE unreadable (key TEXT PRIMARY KEY, reason TEXT NOT NULL);
        """
    )
    return database


def export_folders(bucket: BucketStaging, shards: int) -> list[tuple[BucketStaging, str]]:
    """Where a bucket's export is staged, each with the prefix that makes its index's ``file``
    relative to the bucket's folder. A whole bucket: its own folder, where this step's fetches are
    added too. A bucket exported in ``shards`` shards: every shard's folder in range order, then
    ``fetched/`` for this step's fetches (never the bucket's own index, which an earlier attempt
    that exported the bucket whole may have left)."""
    if shards <= 1:
        return [(bucket, "")]
    folders = [
        (bucket.shard(number), f"{shard_folder(number)}/") for number in range(1, shards + 1)
    ]
    return [
        *folders,
        (BucketStaging(bucket.bucket_id, bucket.folder / FETCHED_FOLDER), f"{FETCHED_FOLDER}/"),
    ]


def _indexed(folder: BucketStaging, prefix: str) -> Iterator[dict]:
    for record in read_json_lines(folder.index_path):
        if prefix:
            record["file"] = prefix + record["file"]
        yield record


def _load(
    database: sqlite3.Connection,
    staging: StagingArea,
    bucket: BucketStaging,
    have_inventory: bool,
    folders: list[tuple[BucketStaging, str]],
) -> None:
    if have_inventory:
        database.executemany(
            "INSERT OR REPLACE INTO inventory VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    row["key"],
                    row["size"],
                    normalise_etag(row["etag"]),
                    row.get("content_type"),
                    row.get("cache_control"),
                    row["etag"],
                )
                for row in inventory_for_bucket(staging, bucket.bucket_id)
            ),
        )
    # A key listed twice (v1's merged folders can do that) is kept once: the last download wins.
    # Shards hold disjoint keys, so their order matters only against this step's own fetches,
    # which come last as they do in a whole bucket's index.
    for folder, prefix in folders:
        _add_exported(database, bucket.bucket_id, _indexed(folder, prefix))
    database.commit()


def _add_exported(database: sqlite3.Connection, bucket_id: str, records: Iterable[dict]) -> None:
    database.executemany(
        "INSERT OR REPLACE INTO exported VALUES (?, ?, ?)",
        (
            (record["key"], object_member_name(bucket_id, record["key"]), json.dumps(record))
            for record in records
        ),
    )


def _fetch_unexported(
    database: sqlite3.Connection,
    bucket: BucketStaging,
    *,
    fetch_missing: FetchMissing,
    keys_still_present: KeysStillPresent,
    batch_size: int,
    prefix: str = "",
) -> tuple[int, list[dict]]:
    """Download what the inventory holds but the export lacks; returns (fetched, deleted rows).

    A key that cannot be downloaded is deleted after the snapshot if the database no longer has it;
    if the database still has it, the Storage API is failing to serve it and the run fails.
    """
    unexported = database.execute(
        "SELECT key, size, etag FROM inventory WHERE key NOT IN (SELECT key FROM exported) "
        "ORDER BY key"
    ).fetchall()
    fetched = 0
    deleted_rows: list[dict] = []
    for start in range(0, len(unexported), batch_size):
        batch = unexported[start : start + batch_size]
        keys = [key for key, _, _ in batch]
        log.info(
            "Bucket %s: fetching %d objects the listing missed (%d of %d)",
            bucket.bucket_id,
            len(keys),
            start + len(keys),
            len(unexported),
        )
        records, missing_keys = fetch_missing(bucket, keys)
        _add_exported(
            database,
            bucket.bucket_id,
            ({**record, "file": prefix + record["file"]} for record in records),
        )
        fetched += len(records)
        if not missing_keys:
            continue
        still_present = keys_still_present(bucket.bucket_id, missing_keys)
        database.executemany(
            "INSERT OR REPLACE INTO unreadable VALUES (?, ?)",
            ((key, NOT_SERVED_REASON) for key in still_present),
        )
        by_key = {key: (size, etag) for key, size, etag in batch}
        deleted_rows.extend(
            {"key": key, "size": by_key[key][0], "etag": by_key[key][1]}
            for key in missing_keys
            if key not in still_present
        )
    database.commit()
    return fetched, deleted_rows


def _consistency(
    record: dict,
    have_inventory: bool,
    in_inventory: bool,
    snapshot_size: int | None,
    snapshot_etag: str | None,
) -> str:
    if not have_inventory:
        return IN_SNAPSHOT
    if not in_inventory:
        return CREATED_AFTER_SNAPSHOT
    etag = normalise_etag(record.get("etag"))
    if snapshot_size != record["size"] or (
        snapshot_etag is not None and etag not in (None, snapshot_etag)
    ):
        return CHANGED_AFTER_SNAPSHOT
    return IN_SNAPSHOT


def _stored_metadata(record: dict, snapshot_row: list, prefer_snapshot: bool) -> dict:
    """The object's metadata as stored: the snapshot's row for an object the snapshot knew as it
    is; the listing row (newer than the snapshot) for one created or changed since, or the
    snapshot's when the listing said nothing. Never the download's headers, except an etag nothing
    else gave."""
    listed = {
        "content_type": record.get("listed_content_type"),
        "cache_control": record.get("listed_cache_control"),
        "etag": record.get("listed_etag"),
    }
    snapshot = None
    if any(value is not None for value in snapshot_row):
        snapshot = dict(zip(("content_type", "cache_control", "etag"), snapshot_row))
    if snapshot and (prefer_snapshot or not any(listed.values())):
        return snapshot
    return {**listed, "etag": listed["etag"] or record.get("etag")}


def _write_reconciled(
    database: sqlite3.Connection, bucket: BucketStaging, have_inventory: bool
) -> dict:
    """reconciled.jsonl, in key order, each object with its consistency state; returns counts."""
    counts = {
        IN_SNAPSHOT: 0,
        CREATED_AFTER_SNAPSHOT: 0,
        CHANGED_AFTER_SNAPSHOT: 0,
        "objects": 0,
        "bytes": 0,
    }
    # A member that is also the folder of another member (keys "x" and "x/y"; or "a/" and "a//b",
    # whose encoded names are "a%2F" and "a%2F/b") steps aside into that folder (FORMAT.md).
    # Names in the folder sort between "<name>/" and "<name>0" ('0' follows '/').
    rows = database.execute(
        "SELECT e.record, e.member, EXISTS (SELECT 1 FROM exported f WHERE f.member >= e.member "
        "|| '/' AND f.member < e.member || '0'), i.key IS NOT NULL, i.size, i.etag, "
        "i.content_type, i.cache_control, i.stored_etag FROM exported e "
        "LEFT JOIN inventory i ON i.key = e.key "
        "ORDER BY e.key"
    )
    with bucket.folder.joinpath("reconciled.jsonl").open("w", encoding="utf-8") as output:
        for (
            record_json,
            member,
            is_folder,
            in_inventory,
            snapshot_size,
            snapshot_etag,
            *stored,
        ) in rows:
            record = json.loads(record_json)
            state = _consistency(
                record, have_inventory, bool(in_inventory), snapshot_size, snapshot_etag
            )
            record["consistency"] = state
            record["member"] = member + FOLDER_FILE_SUFFIX if is_folder else member
            record.update(_stored_metadata(record, stored, prefer_snapshot=state == IN_SNAPSHOT))
            counts[state] += 1
            counts["objects"] += 1
            counts["bytes"] += record["size"]
            output.write(json.dumps(record, ensure_ascii=False) + "\n")
    return counts


def _write_deleted(bucket: BucketStaging, deleted_rows: list[dict]) -> None:
    with bucket.folder.joinpath("deleted.jsonl").open("w", encoding="utf-8") as output:
        for row in deleted_rows:
            output.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_unreadable(
    database: sqlite3.Connection, bucket: BucketStaging, folders: list[tuple[BucketStaging, str]]
) -> tuple[int, list[dict]]:
    """``unreadable_final.jsonl``: every object that failed its downloads (the export's, then this
    step's second try) and never made it into the export, each once with its last reason."""
    for folder, _ in folders:
        database.executemany(
            "INSERT OR REPLACE INTO unreadable VALUES (?, ?)",
            (
                (row["key"], row["reason"])
                for row in read_json_lines(folder.folder / UNREADABLE_FILE_NAME)
            ),
        )
    rows = database.execute(
        "SELECT key, reason FROM unreadable WHERE key NOT IN (SELECT key FROM exported) ORDER BY key"
    )
    count = 0
    examples: list[dict] = []
    with bucket.folder.joinpath(UNREADABLE_FINAL_FILE_NAME).open("w", encoding="utf-8") as output:
        for key, reason in rows:
            output.write(json.dumps({"key": key, "reason": reason}, ensure_ascii=False) + "\n")
            count += 1
            if len(examples) < MAX_UNREADABLE_EXAMPLES:
                examples.append({"bucket": bucket.bucket_id, "key": key, "reason": reason})
    return count, examples


def reconcile_bucket(
    staging: StagingArea,
    bucket_id: str,
    *,
    have_inventory: bool,
    fetch_missing: FetchMissing,
    keys_still_present: KeysStillPresent,
    batch_size: int = 500,
    shards: int = 1,
) -> dict:
    """Reconcile one bucket, exported whole or in ``shards`` shards (merged here into one bucket);
    writes reconciled.jsonl and deleted.jsonl; returns its counts."""
    bucket = staging.bucket(bucket_id)
    folders = export_folders(bucket, shards)
    fetch_into, fetch_prefix = folders[-1]
    with (
        tempfile.TemporaryDirectory(prefix="supabase-backup-reconcile-") as scratch,
        closing(_open_scratch_database(scratch)) as database,
    ):
        _load(database, staging, bucket, have_inventory, folders)
        fetched = 0
        deleted_rows: list[dict] = []
        if have_inventory:
            fetched, deleted_rows = _fetch_unexported(
                database,
                fetch_into,
                fetch_missing=fetch_missing,
                keys_still_present=keys_still_present,
                batch_size=batch_size,
                prefix=fetch_prefix,
            )
        counts = _write_reconciled(database, bucket, have_inventory)
        _write_deleted(bucket, deleted_rows)
        unreadable, unreadable_examples = _write_unreadable(database, bucket, folders)
    summary = {
        "bucket": bucket_id,
        "objects": counts["objects"],
        "bytes": counts["bytes"],
        "fetched_after_listing": fetched,
        "created_after_snapshot": counts[CREATED_AFTER_SNAPSHOT],
        "changed_after_snapshot": counts[CHANGED_AFTER_SNAPSHOT],
        "deleted_after_snapshot": len(deleted_rows),
        "unreadable": unreadable,
        "unreadable_examples": unreadable_examples,
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
    shards: dict[str, int] | None = None,
) -> dict:
    """Reconcile every bucket; ``shards`` says how many shards a bucket was exported in (absent:
    exported whole)."""
    buckets = [
        reconcile_bucket(
            staging,
            bucket_id,
            have_inventory=have_inventory,
            fetch_missing=fetch_missing,
            keys_still_present=keys_still_present,
            shards=(shards or {}).get(bucket_id, 1),
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
        "unreadable": sum(bucket["unreadable"] for bucket in buckets),
        "unreadable_examples": [
            example for bucket in buckets for example in bucket["unreadable_examples"]
        ][:MAX_UNREADABLE_EXAMPLES],
    }
