"""Faults that take a part of the project down mid-run: S3 dying in the middle of the archive's
upload, Postgres dying in the middle of pg_dump. Each must end in a truthful row (never a success,
never a row left running), with a reason a person can act on.

A sandbox of its own: these tests stop and restart its processes."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

import sandbox as sandbox_package
from supabase_backup.destination import retention
from tests.sandbox_fixtures import running_sandbox


@pytest.fixture(scope="module")
def fragile_sandbox():
    with running_sandbox("fragile") as sandbox:
        yield sandbox


def restart(sandbox) -> None:
    sandbox_package.up(sandbox.settings["state_dir"], size="small")


def in_background(condition, action, timeout: float = 300, on_timeout=None) -> threading.Thread:
    """Run ``action`` once ``condition()`` holds (polled; the timeout only bounds a broken run,
    and ``on_timeout`` then unblocks the run so the test fails instead of hanging)."""
    thread = threading.Thread(target=lambda: _wait_then(condition, action, timeout, on_timeout),
                              daemon=True)
    thread.done = threading.Event()
    thread.start()
    return thread


def _wait_then(condition, action, timeout, on_timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                action()
                threading.current_thread().done.set()
                return
        except Exception:  # noqa: BLE001 - the service may be mid-restart; poll again
            pass
        time.sleep(0.01)
    if on_timeout is not None:
        on_timeout()


def test_s3_dying_mid_upload_fails_the_run_with_the_reason(fragile_sandbox, backup_runner):
    sandbox = fragile_sandbox
    # One 48 MiB object: the archive goes up in several parts, so there is a "middle".
    sandbox_package.add_objects(sandbox.settings, "big-upload", [
        ("big.bin", os.urandom(48 * 2**20), "application/octet-stream")])
    s3, bucket = sandbox.s3(), sandbox.settings["s3_bucket"]

    def archive_upload_started() -> bool:
        # plan_run's write check also opens (and aborts) a multipart upload: wait for the archive's.
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads") or []
        return any(upload["Key"].rsplit("/", 1)[-1].startswith("backup-") for upload in uploads)

    watcher = in_background(
        archive_upload_started,
        lambda: sandbox_package.stop_part(sandbox.settings["state_dir"], "s3"))
    try:
        dag_run = backup_runner.run(sandbox, {"buckets": ["big-upload"], "include_auth": False,
                                              "include_database": False})
    finally:
        watcher.join(timeout=10)
        restart(sandbox)
    assert watcher.done.is_set(), "the upload never started a multipart upload"
    row = sandbox.history_row(dag_run.run_id)
    assert dag_run.state == "failed"
    assert (row["status"], row["s3_key"]) == ("failed", None)
    assert "upload_archive" in row["error"] and "endpoint" in row["error"].lower(), row["error"]


def test_postgres_dying_mid_dump_leaves_a_row_the_next_run_settles(fragile_sandbox, backup_runner):
    """pg_dump waits on a table lock; the server then stops as in a crash. Nothing can be written
    at that moment, so the row stays running; the next run settles it as failed, pointing to the
    Airflow run, and no row stays running."""
    sandbox = fragile_sandbox
    locker = sandbox.connect(autocommit=False)
    locker.execute("LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE")

    def pg_dump_waits_on_the_lock() -> bool:
        with sandbox.connect() as probe:
            return bool(probe.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'supabase-backup' "
                "AND wait_event_type = 'Lock' AND query ILIKE '%%orders%%'").fetchone())

    killer = in_background(pg_dump_waits_on_the_lock,
                           lambda: sandbox_package.stop_part(sandbox.settings["state_dir"],
                                                             "postgres"),
                           timeout=120, on_timeout=locker.close)
    try:
        dag_run = backup_runner.run(sandbox, {"include_auth": False, "include_storage": False})
    finally:
        killer.join(timeout=10)
        try:
            locker.close()
        except Exception:  # noqa: BLE001 - its server is gone
            pass
        restart(sandbox)
    assert killer.done.is_set(), "pg_dump never waited on the lock"
    assert dag_run.state == "failed"
    stranded = sandbox.history_row(dag_run.run_id)
    assert stranded["status"] == "running"  # nothing could be written while Postgres was down

    next_run = backup_runner.run(sandbox, {"include_auth": False, "include_storage": False})
    settled = sandbox.history_row(dag_run.run_id)
    assert settled["status"] == "failed" and dag_run.run_id in settled["error"]
    assert "without recording its outcome" in settled["error"]
    assert sandbox.history_row(next_run.run_id)["status"] == "success"
    with sandbox.connect() as connection:
        assert connection.execute("SELECT count(*) FROM public.backup_history "
                                  "WHERE status = 'running'").fetchone()[0] == 0


def test_postgres_down_as_verification_begins_is_settled_from_s3_as_success(fragile_sandbox,
                                                                              backup_runner):
    """Postgres stops once the archive is in S3, as verify_upload begins: the archive is verified
    and its record written beside it, but record_history cannot write the row, so it stays
    running. The next run settles it from S3 as the success it was, with its key, size and
    sha256, and retention counts it like any other success."""
    sandbox = fragile_sandbox
    s3, bucket = sandbox.s3(), sandbox.settings["s3_bucket"]
    keys_before = sandbox.archive_keys()

    def archive_uploaded() -> bool:
        return any(key.rsplit("/", 1)[-1].startswith("backup-") and key.endswith(".zip")
                   for key in sandbox.archive_keys() - keys_before)

    stopper = in_background(archive_uploaded,
                            lambda: sandbox_package.stop_part(sandbox.settings["state_dir"],
                                                              "postgres"))
    try:
        dag_run = backup_runner.run(sandbox, {"include_auth": False, "include_storage": False})
    finally:
        stopper.join(timeout=10)
        restart(sandbox)
    assert stopper.done.is_set(), "the archive never reached S3"
    assert dag_run.state == "failed"  # record_history could not write
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert (states["verify_upload"], states["record_history"]) == ("success", "failed")
    assert sandbox.history_row(dag_run.run_id)["status"] == "running"
    archive_key = next(key for key in sandbox.archive_keys() - keys_before
                       if key.endswith(".zip"))
    assert archive_key + ".verified.json" in sandbox.archive_keys()

    next_run = backup_runner.run(sandbox, {"include_auth": False, "include_storage": False})
    settled = sandbox.history_row(dag_run.run_id)
    body = s3.get_object(Bucket=bucket, Key=archive_key)["Body"].read()
    assert (settled["status"], settled["error"], settled["s3_key"]) == ("success", None, archive_key)
    assert (settled["size_bytes"], settled["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert settled["settled_by"] and settled["database_bytes"]
    assert sandbox.history_row(next_run.run_id)["status"] == "success"
    with sandbox.connect() as connection:
        assert dag_run.run_id in {backup.run_id for backup in retention.candidates(connection)}
        assert connection.execute("SELECT count(*) FROM public.backup_history "
                                  "WHERE status = 'running'").fetchone()[0] == 0
