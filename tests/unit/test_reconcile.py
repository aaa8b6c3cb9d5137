import hashlib
import json

import pytest

from supabase_backup import reconcile
from supabase_backup.errors import InventoryMismatch
from supabase_backup.staging import StagingArea


def write_lines(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as output:
        for row in rows:
            output.write(json.dumps(row) + "\n")


def record(key, data, etag):
    return {"key": key, "file": f"objects/{key}", "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "etag": etag}


@pytest.fixture
def staging(tmp_path):
    return StagingArea.at(f"file://{tmp_path}/run")


def test_every_state_is_told_apart(staging):
    write_lines(staging.storage_inventory, [
        {"bucket": "b", "key": "same", "size": 1, "etag": '"e1"'},
        {"bucket": "b", "key": "changed", "size": 1, "etag": '"old"'},
        {"bucket": "b", "key": "Missed/x", "size": 2, "etag": '"e3"'},
        {"bucket": "b", "key": "gone", "size": 3, "etag": '"e4"'},
        {"bucket": "other", "key": "ignored", "size": 3, "etag": '"e5"'},
    ])
    bucket = staging.bucket("b")
    write_lines(bucket.index_path, [
        record("same", b"a", "e1"),          # etag quoting differs: still the same object
        record("changed", b"bb", '"new"'),
        record("new", b"c", '"e6"'),
        record("same", b"a", "e1"),          # listed twice (v1 merged folders): kept once
    ])
    fetched_keys = []

    def fetch_missing(bucket_staging, keys):
        fetched_keys.extend(keys)
        return [record("Missed/x", b"xy", '"e3"')], ["gone"]

    summary = reconcile.reconcile_bucket(
        staging, "b", have_inventory=True, fetch_missing=fetch_missing,
        keys_still_present=lambda bucket_id, keys: set(),
    )
    assert fetched_keys == ["Missed/x", "gone"]
    assert summary == {"bucket": "b", "objects": 4, "bytes": 6, "fetched_after_listing": 1,
                       "created_after_snapshot": 1, "changed_after_snapshot": 1,
                       "deleted_after_snapshot": 1}
    rows = [json.loads(line) for line in (bucket.folder / "reconciled.jsonl").read_text().splitlines()]
    assert {row["key"]: row["consistency"] for row in rows} == {
        "Missed/x": "in_snapshot", "changed": "changed_after_snapshot",
        "new": "created_after_snapshot", "same": "in_snapshot"}
    deleted = [json.loads(line) for line in (bucket.folder / "deleted.jsonl").read_text().splitlines()]
    assert deleted == [{"key": "gone", "size": 3, "etag": "e4"}]


def test_an_object_that_exists_but_cannot_be_downloaded_fails_the_run(staging):
    write_lines(staging.storage_inventory, [{"bucket": "b", "key": "stuck", "size": 1, "etag": "e"}])
    write_lines(staging.bucket("b").index_path, [])
    with pytest.raises(InventoryMismatch, match="stuck"):
        reconcile.reconcile_bucket(
            staging, "b", have_inventory=True,
            fetch_missing=lambda bucket_staging, keys: ([], keys),
            keys_still_present=lambda bucket_id, keys: set(keys),
        )


def test_without_an_inventory_everything_exported_is_kept(staging):
    write_lines(staging.bucket("b").index_path, [record("k", b"1", "e")])
    summary = reconcile.reconcile_bucket(
        staging, "b", have_inventory=False,
        fetch_missing=lambda *args: pytest.fail("nothing to fetch"),
        keys_still_present=lambda *args: pytest.fail("nothing to check"),
    )
    assert summary["objects"] == 1 and summary["created_after_snapshot"] == 0
