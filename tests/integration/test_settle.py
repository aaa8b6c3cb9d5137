"""records.settle against the sandbox's real Postgres and S3 (moto): a verified archive
whose row stayed running is settled from S3 as the success it was; a deployment never settles
another's rows; the run's own reason replaces one a settle wrote (issue 19, items 2 and 3)."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime

import pytest

from supabase_backup.backup import outcome
from supabase_backup.destination import retention
from supabase_backup.destination import s3 as destination
from supabase_backup.records import history, settle
from tests.integration.test_destination_s3 import make_archive

HERE, THERE = "deployment-here", "deployment-there"


@pytest.fixture
def connection(small_sandbox):
    with small_sandbox.connect() as connection:
        yield connection


@pytest.fixture
def s3(small_sandbox):
    return small_sandbox.s3(), small_sandbox.settings["s3_bucket"], f"settle-{uuid.uuid4().hex[:8]}/"


def verified_archive_in_s3(s3, tmp_path, run_id: str, *, attempt: int = 0) -> dict:
    """What verify_upload leaves in S3: the archive (its metadata naming the run) and, once it
    was read back and matched, its verified record."""
    client, bucket, prefix = s3
    source, size, sha256 = make_archive(tmp_path / "archive.zip", b"select 1;\n" * 500)
    location = destination.upload_archive(client, source, bucket, prefix, datetime.now(UTC),
                                          sha256=sha256, size=size, run_id=run_id)
    checked = destination.read_back_and_verify(client, bucket, location["s3_key"], size=size,
                                               sha256=sha256)
    verified = {**location, **checked}
    summaries = {"archive": {"storage_buckets": 0}, "database": {"bytes": 5000},
                 "auth": None, "storage": None}
    record = outcome.verified_record(run_id, attempt, verified, summaries)
    destination.write_verified_record(client, bucket, location["s3_key"], record)
    return verified


def settle_here(connection, s3, deployment: str = HERE, ended=lambda run_id: True):
    client, bucket, prefix = s3

    def find_verified(row):
        return destination.find_verified_record(client, bucket, prefix, row["run_id"],
                                                attempt=row["run_attempt"], since=row["started_at"])

    return settle.settle_ended_runs(connection, "the-current-run", ended,
                                     deployment=deployment, find_verified=find_verified)


def test_a_verified_archive_whose_row_stayed_running_is_settled_as_success(connection, s3,
                                                                           tmp_path):
    run_id = f"scheduled__{uuid.uuid4()}"
    history.record_running(connection, run_id, "scheduled", deployment=HERE)
    verified = verified_archive_in_s3(s3, tmp_path, run_id)
    # record_history could not write (the database was down): the row is still running.
    assert history.get_by_run_id(connection, run_id)["status"] == "running"

    assert run_id in settle_here(connection, s3)
    row = history.get_by_run_id(connection, run_id)
    assert (row["status"], row["error"], row["settled_by"]) == ("success", None, HERE)
    assert (row["s3_bucket"], row["s3_key"], row["size_bytes"], row["sha256"]) == (
        s3[1], verified["s3_key"], verified["bytes"], verified["sha256"])
    assert row["database_bytes"] == 5000
    assert row["details"]["settled_from"].endswith(verified["s3_key"] + ".verified.json")
    # Retention sees it as the normal success it is, not as an untracked archive.
    assert run_id in {backup.run_id for backup in retention.candidates(connection)}


def test_a_run_without_a_verified_archive_is_settled_failed_and_one_s3_cannot_answer_waits(
        connection, s3, tmp_path):
    client, bucket, prefix = s3
    nothing, gone, unknown = (f"manual__{uuid.uuid4()}" for _ in range(3))
    for run_id in (nothing, gone, unknown):
        history.record_running(connection, run_id, "manual", deployment=HERE)
    # A verified record whose archive was deleted since is not trusted.
    verified = verified_archive_in_s3(s3, tmp_path, gone)
    client.delete_object(Bucket=bucket, Key=verified["s3_key"])

    def find_verified(row):
        if row["run_id"] == unknown:
            raise ConnectionError("S3 is down")
        return destination.find_verified_record(client, bucket, prefix, row["run_id"],
                                                attempt=row["run_attempt"], since=row["started_at"])

    settled = settle.settle_ended_runs(connection, None, lambda run_id: True, deployment=HERE,
                                        find_verified=find_verified)
    assert {nothing, gone} <= set(settled) and unknown not in settled
    for run_id in (nothing, gone):
        row = history.get_by_run_id(connection, run_id)
        assert (row["status"], row["s3_key"], row["settled_by"]) == ("failed", None, HERE)
        assert row["error"] == f"the run ended without recording its outcome; see Airflow run {run_id}"
    assert history.get_by_run_id(connection, unknown)["status"] == "running"


def test_a_verified_record_of_an_earlier_attempt_does_not_settle_a_cleared_run(connection, s3,
                                                                              tmp_path):
    run_id = f"manual__{uuid.uuid4()}"
    history.record_running(connection, run_id, "manual", attempt=1, deployment=HERE)
    verified_archive_in_s3(s3, tmp_path, run_id, attempt=0)
    settle_here(connection, s3)
    assert history.get_by_run_id(connection, run_id)["status"] == "failed"


def test_rows_of_another_deployment_are_never_settled(connection, s3):
    theirs, ours, legacy = (f"manual__{uuid.uuid4()}" for _ in range(3))
    history.record_running(connection, theirs, "manual", deployment=THERE)
    history.record_running(connection, ours, "manual", deployment=HERE)
    history.record_running(connection, legacy, "manual")  # written before rows named an owner
    connection.execute("UPDATE public.backup_history SET deployment = NULL WHERE run_id = %s",
                       (legacy,))
    # This Airflow does not know the other deployment's run, which reads as "ended".
    settled = settle_here(connection, s3, deployment=HERE)
    assert {ours, legacy} <= set(settled) and theirs not in settled
    row = history.get_by_run_id(connection, theirs)
    assert (row["status"], row["error"], row["deployment"]) == ("running", None, THERE)
    # The plugin's settle uses the same owner function: the owner can settle its own row.
    assert theirs in settle_here(connection, s3, deployment=THERE)


def test_the_runs_own_reason_replaces_a_reason_written_by_a_settle(connection, s3):
    run_id = f"manual__{uuid.uuid4()}"
    history.record_running(connection, run_id, "manual", deployment=HERE)
    history.settle_ended_runs(connection, [run_id], settled_by=THERE)
    row = history.get_by_run_id(connection, run_id)
    assert (row["status"], row["settled_by"]) == ("failed", THERE)
    assert "without recording its outcome" in row["error"]

    history.record_failed(connection, run_id, "export_auth_users: Auth answered HTTP 503 on export",
                          trigger="manual")
    history.record_failed(connection, run_id, "no verified archive: task(s) export_auth_users "
                          "failed (see their logs)", trigger="manual")
    row = history.get_by_run_id(connection, run_id)
    assert (row["status"], row["error"], row["settled_by"]) == (
        "failed", "export_auth_users: Auth answered HTTP 503 on export", None)


def test_a_settle_keeps_a_reason_the_run_had_written_itself(connection):
    run_id = f"manual__{uuid.uuid4()}"
    history.record_running(connection, run_id, "manual", deployment=HERE)
    history.record_failed(connection, run_id, "dump_database: pg_dump exited with status 1",
                          trigger="manual")
    connection.execute("UPDATE public.backup_history SET status = 'running' WHERE run_id = %s",
                       (run_id,))  # the failure callback wrote, the finish step never ran
    history.settle_ended_runs(connection, [run_id], settled_by=HERE)
    history.record_failed(connection, run_id, "no verified archive: task(s) dump_database failed",
                          trigger="manual")
    row = history.get_by_run_id(connection, run_id)
    assert (row["error"], row["settled_by"]) == ("dump_database: pg_dump exited with status 1",
                                                 None)


def test_the_archive_names_its_run_in_its_metadata(s3, tmp_path):
    client, bucket, prefix = s3
    run_id = "manual__2026-12-07T10:00:00+00:00"
    verified = verified_archive_in_s3(s3, tmp_path, run_id)
    head = destination.head_object(client, bucket, verified["s3_key"])
    assert head["Metadata"]["run-id"] == "manual__2026-12-07T10%3A00%3A00%2B00%3A00"
    assert hashlib.sha256(client.get_object(Bucket=bucket, Key=verified["s3_key"])["Body"]
                          .read()).hexdigest() == verified["sha256"]
    assert os.path.basename(verified["s3_key"]).startswith("backup-")
