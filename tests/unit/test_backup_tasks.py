"""backup.tasks: the task bodies' own logic, with staging on a local folder and no database (the
e2e tests run them in the DAG)."""

import hashlib
import json
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from supabase_backup.backup import tasks
from supabase_backup.config import BackupSettings, RunPlan
from supabase_backup.errors import StagingCorrupted
from supabase_backup.records import history
from supabase_backup.sources import shards
from supabase_backup.staging import StagingArea

PLAN = RunPlan(BackupSettings(s3_bucket="archives"), run_id="r", trigger="manual",
               started_at="2026-12-07T03:00:00+00:00")


class NoDatabase:
    @contextmanager
    def connect(self, **options):
        yield object()


def stage_objects(bucket_staging, keys):
    bucket_staging.index_path.parent.mkdir(parents=True, exist_ok=True)
    with bucket_staging.index_path.open("w") as index:
        for number, key in enumerate(keys, 1):
            data = key.encode()
            index.write(json.dumps({"key": key, "file": f"objects/{number}", "size": len(data),
                                    "sha256": hashlib.sha256(data).hexdigest(),
                                    "etag": None}) + "\n")


def shard_unit(bucket, number, of):
    return {"bucket": bucket, "shard": number, "of": of, "start": None, "stop": None,
            "label": f"{bucket} [{number}/{of}]"}


def export_summary(bucket, objects, listing, seconds, **shard):
    return {"bucket": bucket, "objects": objects, "bytes": objects, "missing": 0,
            "unreadable": 0, "listing": listing, "seconds": seconds, **shard}


@pytest.fixture
def resources(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "record_progress", lambda *args, **kwargs: None)
    staging = StagingArea.at(f"file://{tmp_path}/run")
    stage_objects(staging.bucket("small"), ["a"])
    big = staging.bucket("big")
    stage_objects(big.shard(1), ["k1", "k2"])
    stage_objects(big.shard(2), ["k3"])
    return SimpleNamespace(staging=staging, database=NoDatabase(), api=None)


UNITS = [shards.whole_bucket_unit("small"), shard_unit("big", 1, 2), shard_unit("big", 2, 2)]


def test_reconcile_takes_the_exports_results_as_arguments_not_from_staging(resources):
    summaries = [export_summary("small", 1, "list-v2", 0.5),
                 export_summary("big", 1, "storage.objects", 2.0, shard=2, of=2),
                 export_summary("big", 2, "storage.objects", 1.25, shard=1, of=2)]
    assert not list(resources.staging.run_folder.rglob("summary.json"))
    result = tasks.reconcile(PLAN, resources, ["small", "big"], {"snapshot": None}, UNITS,
                             summaries)
    buckets = {bucket["bucket"]: bucket for bucket in result["buckets"]}
    assert {name: (bucket["objects"], bucket["listing"], bucket["seconds"], bucket.get("shards"))
            for name, bucket in buckets.items()} == {
        "small": (1, "list-v2", 0.5, None), "big": (3, "storage.objects", 3.25, 2)}
    # The manifest's bucket entries are those results with the buckets' settings.
    section = tasks._storage_section(resources.staging, ["small", "big"], result)
    assert [(bucket["bucket"], bucket["listing"], bucket["settings"])
            for bucket in section["buckets"]] == [
        ("small", "list-v2", {}), ("big", "storage.objects", {})]


def test_a_shard_without_its_export_result_is_named(resources):
    summaries = [export_summary("small", 1, "list-v2", 0.5),
                 export_summary("big", 2, "storage.objects", 2.0, shard=1, of=2)]
    with pytest.raises(StagingCorrupted, match=r"export_bucket\[big \[2/2\]\]"):
        tasks.reconcile(PLAN, resources, ["small", "big"], {"snapshot": None}, UNITS, summaries)
