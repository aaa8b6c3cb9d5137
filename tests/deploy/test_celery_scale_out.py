"""Scale-out on a real distributed executor, without Docker: a backup of the `medium` sandbox runs on
the CeleryExecutor across two `airflow celery worker` processes (real redis broker), each with its
own private temp folder and staging on the sandbox's S3 server. Its archive must hold exactly what
a LocalExecutor run of the same data holds, member by member.

Only content is compared (names, sizes, sha256 of the manifest's members), never times. One member
cannot be byte-identical between two runs and is compared after taking out what a second run
changes by design (see `comparable_dump`): db/backup.sql holds the `backup_history` table, which
each run writes to, and pg_dump's own per-run lines.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from tests.airflow_services import AirflowServices
from tests.archive_reader import read_archive, read_member
from tests.celery_services import CeleryAirflowServices, RedisServer

DAG_ID = "supabase_backup"  # reached by id only: the DAG file's name may change
WORKERS = ("worker-a", "worker-b")


def common_environment(sandbox) -> dict[str, str]:
    return {**sandbox.env, "SUPABASE_BACKUP_SCHEDULE": "none",
            "SUPABASE_BACKUP_RETRY_DELAY_SECONDS": "1"}


def run_once(services: AirflowServices) -> tuple[dict, list[dict]]:
    """Trigger the DAG through the REST API and wait: (the finished run, its task instances)."""
    services.wait_for_dag(DAG_ID)
    run_id = services.trigger(DAG_ID, {"trigger": "api"})
    run = services.wait_for_run(DAG_ID, run_id, timeout=900)
    reply = services.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances",
                         params={"limit": 100})
    reply.raise_for_status()
    return run, reply.json()["task_instances"]


def wall_seconds(run: dict) -> float:
    return (datetime.fromisoformat(run["end_date"])
            - datetime.fromisoformat(run["start_date"])).total_seconds()


def archive_of(sandbox, run: dict, folder: Path) -> Path:
    row = sandbox.history_row(run["dag_run_id"])
    assert row is not None and row["status"] == "success", row
    return sandbox.download_archive(row["s3_key"], folder / f"{row['id']}.zip")


def manifest_members(contents: dict) -> dict[str, tuple[int, str]]:
    listed = {member["path"]: (member["size"], member["sha256"])
              for member in contents["manifest"]["members"]}
    # The manifest lists exactly what the zip holds (read by the tests' own reader).
    assert listed == {name: value for name, value in contents["members"].items()
                      if name != "manifest.json"}
    return listed


def comparable_dump(dump: bytes) -> tuple[int, str]:
    """(size, sha256) of a plain dump without what differs between two runs by design: pg_dump's
    `\\restrict` key (random per dump) and its start/finish times, and the rows and sequence value
    of public.backup_history (each run writes its own row before the dump)."""
    kept, in_history_copy = [], False
    for line in dump.split(b"\n"):
        if in_history_copy:
            in_history_copy = line != b"\\."
            continue
        if line.startswith(b"COPY public.backup_history "):
            in_history_copy = True
            continue
        if (re.match(rb"\\(un)?restrict ", line) or re.match(rb"-- (Started|Completed) on ", line)
                or b"'public.backup_history_id_seq'" in line):
            continue
        kept.append(line)
    text = b"\n".join(kept)
    return len(text), hashlib.sha256(text).hexdigest()


@pytest.mark.slow
def test_a_backup_spread_over_two_celery_workers_equals_a_local_executor_backup(
        medium_sandbox, tmp_path_factory, capsys):
    sandbox = medium_sandbox
    folder = tmp_path_factory.mktemp("scale-out")

    # The reference: the same DAG on the LocalExecutor (one machine, local staging).
    local_home = folder / "local"
    local = AirflowServices(local_home, {
        **common_environment(sandbox),
        "AIRFLOW_VAR_SUPABASE_BACKUP_STAGING_ROOT": f"file://{local_home / 'staging'}",
    })
    try:
        local.start()
        local_run, _ = run_once(local)
    finally:
        local.stop()
    assert local_run["state"] == "success", local_run
    local_archive = archive_of(sandbox, local_run, folder)

    # Scale-out: CeleryExecutor, two workers, staging on the S3 server (no shared local disk).
    staging_prefix = "staging-celery"
    broker = RedisServer(folder / "redis").start()
    celery = CeleryAirflowServices(folder / "celery", {
        **common_environment(sandbox),
        "AIRFLOW_VAR_SUPABASE_BACKUP_STAGING_ROOT":
            f"s3://aws_default@{sandbox.settings['s3_bucket']}/{staging_prefix}",
    }, broker, worker_names=WORKERS)
    try:
        celery.start()
        celery_run, task_instances = run_once(celery)
    finally:
        celery.stop()
        broker.stop()
    states = {(item["task_id"], item["map_index"]): item["state"] for item in task_instances}
    assert celery_run["state"] == "success", states
    # apply_retention is skipped while supabase_backup_retention is unset (every archive kept).
    assert all(state == "success" or (task_id, state) == ("apply_retention", "skipped")
               for (task_id, _), state in states.items()), states

    ran = [item for item in task_instances if item["state"] == "success"]
    tasks_per_worker = Counter(item["hostname"] for item in ran)
    assert set(tasks_per_worker) == set(WORKERS), tasks_per_worker
    # The run cleaned its staging on S3 (the teardown ran on a worker like every other task).
    assert not [key for key in sandbox.archive_keys() if key.startswith(f"{staging_prefix}/")]

    celery_archive = archive_of(sandbox, celery_run, folder)
    local_contents, celery_contents = read_archive(local_archive), read_archive(celery_archive)
    local_members, celery_members = (manifest_members(local_contents),
                                     manifest_members(celery_contents))
    assert set(celery_members) == set(local_members)
    assert len(celery_members) > 2000
    # pg_dump and pg_dumpall write a random \restrict key into every dump: compared without it.
    dumps = ("db/backup.sql", "db/roles.sql")
    differing = {name for name in local_members
                 if name not in dumps and local_members[name] != celery_members[name]}
    assert not differing, sorted(differing)[:20]
    for dump in dumps:
        assert (comparable_dump(read_member(celery_archive, dump))
                == comparable_dump(read_member(local_archive, dump)))
    assert celery_contents["objects"] == local_contents["objects"] == sandbox.objects()

    figures = (
        f"scale-out figures (medium sandbox, {len(celery_members)} archive members, "
        f"{sum(size for size, _ in celery_members.values()) / 2**20:.0f} MiB):\n"
        f"  CeleryExecutor, {len(WORKERS)} workers x concurrency {celery.worker_concurrency}, "
        f"S3 staging: {wall_seconds(celery_run):.1f} s; tasks per worker: "
        + ", ".join(f"{name} {count}" for name, count in sorted(tasks_per_worker.items()))
        + f"\n  LocalExecutor, parallelism 4, local staging: {wall_seconds(local_run):.1f} s"
    )
    with capsys.disabled():
        print("\n" + figures)
