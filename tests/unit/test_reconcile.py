import hashlib
import json

import pytest

from supabase_backup.sources import reconcile
from supabase_backup.errors import InventoryMismatch
from supabase_backup.staging import StagingArea, read_json_lines


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
                       "deleted_after_snapshot": 1, "unreadable": 0, "unreadable_examples": []}
    rows = [json.loads(line) for line in (bucket.folder / "reconciled.jsonl").read_text().splitlines()]
    assert {row["key"]: row["consistency"] for row in rows} == {
        "Missed/x": "in_snapshot", "changed": "changed_after_snapshot",
        "new": "created_after_snapshot", "same": "in_snapshot"}
    deleted = [json.loads(line) for line in (bucket.folder / "deleted.jsonl").read_text().splitlines()]
    assert deleted == [{"key": "gone", "size": 3, "etag": "e4"}]


def test_objects_the_api_cannot_serve_are_listed_unreadable_not_fatal(staging):
    """In the database but NoSuchKey from the API, or failing every download: listed once each with
    a reason; an object that failed in the export but came on the second try is not."""
    write_lines(staging.storage_inventory, [
        {"bucket": "b", "key": "stuck", "size": 1, "etag": "e"},
        {"bucket": "b", "key": "flaky", "size": 1, "etag": "f"},
        {"bucket": "b", "key": "broken", "size": 1, "etag": "g"},
    ])
    bucket = staging.bucket("b")
    write_lines(bucket.index_path, [])
    write_lines(bucket.folder / "unreadable.jsonl", [
        {"key": "flaky", "reason": "ApiTransientError: 503"},
        {"key": "broken", "reason": "ApiTransientError: 500 first"},
    ])

    def fetch_missing(bucket_staging, keys):
        with (bucket_staging.folder / "unreadable.jsonl").open("a") as output:
            output.write(json.dumps({"key": "broken", "reason": "ApiTransientError: 500 again"}) + "\n")
        return [record("flaky", b"1", "f")], ["stuck"]

    summary = reconcile.reconcile_bucket(
        staging, "b", have_inventory=True, fetch_missing=fetch_missing,
        keys_still_present=lambda bucket_id, keys: set(keys),
    )
    assert (summary["objects"], summary["unreadable"], summary["deleted_after_snapshot"]) == (1, 2, 0)
    unreadable = {row["key"]: row["reason"] for row in
                  read_json_lines(bucket.folder / "unreadable_final.jsonl")}
    assert unreadable == {"broken": "ApiTransientError: 500 again",
                          "stuck": reconcile.NOT_SERVED_REASON}


def test_without_an_inventory_everything_exported_is_kept(staging):
    write_lines(staging.bucket("b").index_path, [record("k", b"1", "e")])
    summary = reconcile.reconcile_bucket(
        staging, "b", have_inventory=False,
        fetch_missing=lambda *args: pytest.fail("nothing to fetch"),
        keys_still_present=lambda *args: pytest.fail("nothing to check"),
    )
    assert summary["objects"] == 1 and summary["created_after_snapshot"] == 0


def test_metadata_is_the_stored_one_never_the_download_headers(staging):
    """The real server serves stored text/html as text/plain: the download's header must not
    reach the manifest. In the snapshot as it is → the snapshot's metadata; created or changed
    since → the listing row's."""
    write_lines(staging.storage_inventory, [
        {"bucket": "b", "key": "page.html", "size": 1, "etag": '"e1"', "content_type": "text/html",
         "cache_control": "max-age=60"},
        {"bucket": "b", "key": "changed.css", "size": 1, "etag": '"old"',
         "content_type": "text/css", "cache_control": "no-cache"},
    ])
    bucket = staging.bucket("b")
    served = {"content_type": "text/plain", "cache_control": "max-age=0"}
    write_lines(bucket.index_path, [
        {**record("page.html", b"a", '"e1"'), **served},
        {**record("changed.css", b"bb", '"new"'), **served, "listed_content_type": "text/css",
         "listed_cache_control": "max-age=5", "listed_etag": '"new"'},
        {**record("fresh.html", b"c", '"e6"'), **served, "listed_content_type": "text/html",
         "listed_cache_control": None},
    ])
    reconcile.reconcile_bucket(staging, "b", have_inventory=True,
                               fetch_missing=lambda bucket, keys: ([], []),
                               keys_still_present=lambda bucket_id, keys: set())
    rows = {row["key"]: row for row in read_json_lines(bucket.folder / "reconciled.jsonl")}
    assert (rows["page.html"]["content_type"], rows["page.html"]["cache_control"],
            rows["page.html"]["etag"]) == ("text/html", "max-age=60", '"e1"')
    assert (rows["changed.css"]["content_type"], rows["changed.css"]["cache_control"]) == (
        "text/css", "max-age=5")
    assert rows["fresh.html"]["content_type"] == "text/html"


def test_a_name_that_is_also_a_folder_steps_into_it(staging):
    """Keys x and x/y, .. and ../z, a/ and a//b: every member name is a file, none a folder of
    another, and each decodes back to its key."""
    from supabase_backup.archive.members import key_of_member

    keys = ["x", "x/y", "..", "../z", "a/", "a//b", "plain.txt", "x!"]
    bucket = staging.bucket("b")
    write_lines(bucket.index_path, [record(key, key.encode(), None) for key in keys])
    reconcile.reconcile_bucket(staging, "b", have_inventory=False,
                               fetch_missing=lambda bucket, keys: ([], []),
                               keys_still_present=lambda bucket_id, keys: set())
    members = {row["key"]: row["member"]
               for row in read_json_lines(bucket.folder / "reconciled.jsonl")}
    assert members["x"] == "storage/b/x/%00" and members["x/y"] == "storage/b/x/y"
    assert members["x!"] == "storage/b/x!" and members["plain.txt"] == "storage/b/plain.txt"
    assert members[".."] == "storage/b/%2E%2E/%00"
    assert members["a/"] == "storage/b/a%2F/%00" and members["a//b"] == "storage/b/a%2F/b"
    names = sorted(members.values())
    assert not [name for name in names if any(other.startswith(name + "/") for other in names)]
    assert {key_of_member(member) for member in members.values()} == {("b", key) for key in keys}


def test_a_bucket_exported_in_shards_reconciles_as_if_exported_whole(tmp_path):
    """The shards' indexes are read as one bucket: the same members (a name that is the folder of
    a key in the next shard steps aside), metadata, states and counts as a one-task export; the
    files point into each shard's folder, and what reconcile fetches goes to ``fetched/``."""
    inventory = [{"bucket": "b", "key": key, "size": 1, "etag": f'"{key}"', "content_type": "t"}
                 for key in ("a", "m", "x", "x/y", "z")]
    exported = {key: record(key, b"1", f'"{key}"') for key in ("a", "m", "x", "x/y", "new")}
    results = {}
    for layout in ("whole", "sharded"):
        staging = StagingArea.at(f"file://{tmp_path}/{layout}")
        write_lines(staging.storage_inventory, inventory)
        bucket = staging.bucket("b")
        failed = [{"key": "z", "reason": "ApiTransientError: 503"}]
        if layout == "whole":
            write_lines(bucket.index_path, exported.values())
            write_lines(bucket.folder / "unreadable.jsonl", failed)
        else:
            # An earlier attempt that exported the bucket whole left an index: never read.
            write_lines(bucket.index_path, [record("stale", b"old", '"s"')])
            for number, keys in ((1, ["a", "m", "new", "x"]), (2, ["x/y"])):  # cut at "x/y"
                write_lines(bucket.shard(number).index_path, [exported[key] for key in keys])
            write_lines(bucket.shard(2).folder / "unreadable.jsonl", failed)

        def fetch_missing(bucket_staging, keys, layout=layout):
            assert keys == ["z"]
            assert bucket_staging.folder.name == ("fetched" if layout == "sharded" else "b")
            return [], ["z"]

        summary = reconcile.reconcile_bucket(
            staging, "b", have_inventory=True, fetch_missing=fetch_missing,
            keys_still_present=lambda bucket_id, keys: set(keys),
            shards=2 if layout == "sharded" else 1)
        rows = [json.loads(line)
                for line in (bucket.folder / "reconciled.jsonl").read_text().splitlines()]
        results[layout] = (summary, rows)
    whole_summary, whole_rows = results["whole"]
    sharded_summary, sharded_rows = results["sharded"]
    assert sharded_summary == whole_summary
    assert whole_summary["unreadable"] == 1 and whole_summary["created_after_snapshot"] == 1
    assert [row["file"] for row in sharded_rows] == [
        "shards/0001/objects/a", "shards/0001/objects/m", "shards/0001/objects/new",
        "shards/0001/objects/x", "shards/0002/objects/x/y"]
    without_files = [[{name: value for name, value in row.items() if name != "file"}
                      for row in rows] for rows in (whole_rows, sharded_rows)]
    assert without_files[0] == without_files[1]
    assert {row["key"]: row["member"] for row in sharded_rows}["x"] == "storage/b/x/%00"
