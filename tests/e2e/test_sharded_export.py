"""Big buckets in shards (issue 10): the real DAG exports a bucket over more objects than
``supabase_backup_shard_max_objects`` with one mapped task per key range (staging on an object
store, as workers on several machines share it), and the archive is the same, member by member
and entry by entry, as the archive of a run that exported every bucket in one task."""

from __future__ import annotations

import hashlib
import sys

import sandbox as sandbox_package
from tests.archive_reader import read_archive
from tests.conftest import PROJECT_ROOT

SHARD_MAX_OBJECTS = 40
EDGE_BUCKET = "shard-edges"
# 38 fillers, then "w w" and "x" fill the first shard (positions 39 and 40); "x/y" at position 41
# starts the second. So "x" and the folder "x/" meet across a shard boundary, and only a merge of
# both shards can see that "x" must step aside (FORMAT.md, "Object member names").
EDGE_KEYS = ([f"f{number:02d}" for number in range(38)]
             + ["w w", "x", "x/y", "x/z", "x0", "é", "é/naïve ☃.txt", "\U0001f600"])


def content(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest() * (1 + len(key) % 3)


def storage_part(contents: dict) -> tuple[dict, list]:
    """The storage members {name: (size, sha256)} and the manifest's object entries."""
    members = {name: value for name, value in contents["members"].items()
               if name.startswith("storage/")}
    entries = [member for member in contents["manifest"]["members"] if "object" in member]
    return members, entries


def test_a_sharded_export_gives_the_archive_of_a_one_task_export(small_sandbox, backup_runner,
                                                                  tmp_path):
    sandbox = small_sandbox
    assert sorted(EDGE_KEYS) == EDGE_KEYS and EDGE_KEYS.index("x/y") == SHARD_MAX_OBJECTS
    sandbox_package.add_objects(sandbox.settings, EDGE_BUCKET, [
        (key, content(key), "application/octet-stream") for key in EDGE_KEYS])
    storage_only = {"include_database": False, "include_auth": False}
    staging_url = f"s3://aws_default@{sandbox.settings['s3_bucket']}/staging-shards"
    try:
        whole_run = backup_runner.run(sandbox, storage_only)
        # Sharded, with staging on an object store as Celery workers on several machines use it.
        sharded_run = backup_runner.run(
            sandbox, storage_only, supabase_backup_shard_max_objects=str(SHARD_MAX_OBJECTS),
            supabase_backup_staging_root=staging_url)
        truth = sandbox.objects()
        archives = {}
        for name, dag_run in (("whole", whole_run), ("sharded", sharded_run)):
            row = sandbox.history_row(dag_run.run_id)
            assert (dag_run.state, row["status"]) == ("success", "success"), (name, row)
            archives[name] = read_archive(
                sandbox.download_archive(row["s3_key"], tmp_path / f"{name}.zip"))
            assert archives[name]["objects"] == truth
        with sandbox.connect() as connection:
            counts = dict(connection.execute(
                "SELECT id, (SELECT count(*) FROM storage.objects o WHERE o.bucket_id = b.id) "
                "FROM storage.buckets b").fetchall())

        # One mapped export per bucket, and per shard of a bucket over the limit.
        expected_labels = set()
        for bucket, count in counts.items():
            shards = max(1, -(-count // SHARD_MAX_OBJECTS))
            expected_labels |= ({bucket} if shards == 1 else
                                {f"{bucket} [{number}/{shards}]" for number in range(1, shards + 1)})
        documents_shards = -(-counts["documents"] // SHARD_MAX_OBJECTS)
        assert documents_shards >= 3
        assert counts[EDGE_BUCKET] == len(EDGE_KEYS)
        exports = [ti for ti in sharded_run.get_task_instances() if ti.task_id == "export_bucket"]
        assert {ti.rendered_map_index for ti in exports} == expected_labels
        assert len(exports) == len(expected_labels)
        assert all(ti.state == "success" for ti in exports)

        # The same members with the same bytes, and the same manifest entries, in the same order.
        whole_members, whole_entries = storage_part(archives["whole"])
        sharded_members, sharded_entries = storage_part(archives["sharded"])
        assert sharded_members == whole_members
        assert sharded_entries == whole_entries
        assert f"storage/{EDGE_BUCKET}/x/%00" in sharded_members  # stepped aside across shards
        # The bucket summaries say how each bucket was exported; the counts agree.
        summaries = {name: {bucket["bucket"]: bucket
                            for bucket in archives[name]["manifest"]["storage"]["buckets"]}
                     for name in archives}
        for bucket, whole in summaries["whole"].items():
            sharded = summaries["sharded"][bucket]
            assert {key: sharded[key] for key in ("objects", "bytes", "missing", "settings")} == \
                {key: whole[key] for key in ("objects", "bytes", "missing", "settings")}
            assert sharded.get("shards", 1) == max(1, -(-counts[bucket] // SHARD_MAX_OBJECTS))
        assert summaries["sharded"]["documents"]["listing"] == "storage.objects"
        assert archives["sharded"]["manifest"]["plan"]["shard_max_objects"] == SHARD_MAX_OBJECTS

        # Progress: each shard reported its own counts, and the page's totals add them up.
        if str(PROJECT_ROOT / "plugins") not in sys.path:
            sys.path.append(str(PROJECT_ROOT / "plugins"))
        from supabase_backup_plugin.routes.runs import progress_of

        row = sandbox.history_row(sharded_run.run_id)
        documents = row["progress"]["buckets"]["documents"]["shards"]
        assert len(documents) == documents_shards and all(shard["listing_done"] for shard in documents.values())
        progress = progress_of(row)
        assert (progress.buckets["documents"].objects_done, progress.buckets["documents"].shards) \
            == (counts["documents"], documents_shards)
        assert progress.total.objects_done == sum(counts.values())
        assert progress.total.listing_done
        assert not any(backup_runner.staging_root.iterdir())
        assert not [key for key in sandbox.archive_keys() if key.startswith("staging-shards/")]
    finally:
        with sandbox.connect() as connection:
            connection.execute("DELETE FROM storage.objects WHERE bucket_id = %s", (EDGE_BUCKET,))
            connection.execute("DELETE FROM storage.buckets WHERE id = %s", (EDGE_BUCKET,))
