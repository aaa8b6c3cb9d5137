"""The restore drill DAG end to end (dag.test): a real backup of the small sandbox made by the backup
DAG, drilled into scratch databases on a separate, bare Postgres 15 server; once as it is (a
success row), once with the figures in its manifest altered (a failed row naming the tables)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import uuid
import zipfile

import psycopg
import pytest

from tests.e2e.conftest import outcome_of, run_dag
from tests.e2e.test_retention_encryption_alerts import body_text, smtp_sink  # noqa: F401

from supabase_backup.records import history
from tests.postgres_servers import DEBIAN_POSTGRES_15, bare_server

@pytest.fixture(scope="module")
def drill_server():
    """A bare Postgres 15 cluster: none of the sandbox's roles, schemas or extensions."""
    with bare_server(DEBIAN_POSTGRES_15) as server:
        yield server


def connect(server: dict, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(host=server["host"], port=server["port"], user="postgres",
                           dbname=dbname, autocommit=True)


class DrillRunner:
    def __init__(self, sandbox, server: dict):
        self.sandbox, self.server = sandbox, server

    def run(self, conf: dict | None = None, **variables):
        environment = {**self.sandbox.env, "AIRFLOW_CONN_SUPABASE_BACKUP_DRILL_DB": json.dumps(
            {"conn_type": "postgres", "host": self.server["host"], "port": self.server["port"],
             "login": "postgres", "schema": "postgres"})}
        environment.update({f"AIRFLOW_VAR_{name.upper()}": value for name, value in variables.items()})
        return run_dag("supabase_backup_restore_drill", environment, conf)


@pytest.fixture(scope="module")
def backup(small_sandbox, backup_runner):
    dag_run = backup_runner.run(small_sandbox, {"include_storage": False, "include_auth": False})
    row = small_sandbox.history_row(dag_run.run_id)
    assert row["status"] == "success", row
    return row


def drill_row(sandbox, dag_run) -> dict:
    return sandbox.history_row(f"supabase_backup_restore_drill:{dag_run.run_id}")


def scratch_databases(server) -> list[str]:
    with connect(server) as connection:
        return [row[0] for row in connection.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'drill\\_%'")]


def manifest_tables(sandbox, key: str) -> list[dict]:
    body = sandbox.s3().get_object(Bucket=sandbox.settings["s3_bucket"], Key=key)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        text = archive.read("manifest.json").decode()
    return json.loads(text)["database"]["tables"]


def test_a_drill_of_the_newest_backup_succeeds_and_records_its_comparison(
        small_sandbox, backup, drill_server, airflow_metadata):
    dag_run = DrillRunner(small_sandbox, drill_server).run()
    row = drill_row(small_sandbox, dag_run)
    assert dag_run.state == "success", row
    assert row["kind"] == "drill" and row["status"] == "success" and row["error"] is None
    assert row["dag_id"] == "supabase_backup_restore_drill"
    assert (row["s3_key"], row["sha256"]) == (backup["s3_key"], backup["sha256"])
    details = row["details"]
    assert details["backup_run_id"] == backup["run_id"]
    comparison = details["comparison"]
    recorded = manifest_tables(small_sandbox, backup["s3_key"])
    with_figures = [entry for entry in recorded if entry.get("rows") is not None]
    assert comparison["differences"] == []
    assert comparison["tables_compared"] == len(with_figures) > 15
    assert comparison["checksums_compared"] == len(with_figures)
    assert comparison["rows_compared"] == sum(entry["rows"] for entry in with_figures) > 1000
    # The bare server lacked the sandbox's API roles: the restore created them, NOLOGIN.
    assert "authenticated" in details["restore"]["roles_created"]
    assert scratch_databases(drill_server) == []  # the teardown dropped it
    assert outcome_of(dag_run) == (
        f"Success: restored s3://{row['s3_bucket']}/{backup['s3_key']}; "
        f"{comparison['tables_compared']} tables and {comparison['rows_compared']:,} rows equal "
        "to the backup's figures.")


def damaged_copy(sandbox, backup: dict) -> dict:
    """The same archive with two tables' recorded figures altered in manifest.json (its members'
    bytes and sha256s unchanged, so it still verifies), uploaded under a new key and recorded as a
    successful backup."""
    s3, bucket = sandbox.s3(), sandbox.settings["s3_bucket"]
    body = s3.get_object(Bucket=bucket, Key=backup["s3_key"])["Body"].read()
    output = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(body)) as source, zipfile.ZipFile(output, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "manifest.json":
                text = data.decode()
                head, rest = text.split('\n"members": [\n', 1)
                header = json.loads(head.rstrip(",") + "}")
                for entry in header["database"]["tables"]:
                    if (entry["schema"], entry["table"]) == ("auth", "users"):
                        entry["rows"] += 1
                    if (entry["schema"], entry["table"]) == ("storage", "objects"):
                        entry["checksum"] = "0" * 32
                data = (json.dumps(header, indent=1)[:-1].rstrip() + ',\n"members": [\n'
                        + rest).encode()
            target.writestr(info, data)
    damaged = output.getvalue()
    key = f"damaged/{uuid.uuid4().hex}.zip"
    s3.put_object(Bucket=bucket, Key=key, Body=damaged)
    run_id = f"damaged__{uuid.uuid4().hex}"
    with sandbox.connect() as connection:
        history.record_running(connection, run_id, "manual")
        history.record_success(connection, run_id, {
            "s3_bucket": bucket, "s3_key": key, "size_bytes": len(damaged),
            "sha256": hashlib.sha256(damaged).hexdigest()})
    return {"run_id": run_id, "s3_key": key}


def test_a_drill_of_a_backup_whose_figures_disagree_fails_naming_the_tables(
        small_sandbox, backup, drill_server, airflow_metadata):
    damaged = damaged_copy(small_sandbox, backup)
    dag_run = DrillRunner(small_sandbox, drill_server).run({"backup_run_id": damaged["run_id"]})
    row = drill_row(small_sandbox, dag_run)
    assert dag_run.state == "failed"
    assert row["kind"] == "drill" and row["status"] == "failed"
    assert row["error"].startswith("compare_with_manifest: The restored backup s3://")
    assert "differs from the figures recorded at dump time in 2 table(s)" in row["error"]
    assert "auth.users:" in row["error"] and "at dump time" in row["error"]
    assert "storage.objects: content checksum" in row["error"]
    assert outcome_of(dag_run).startswith(f"Failed: {row['error'][:300]}")
    differences = row["details"]["comparison"]["differences"]
    assert [line.split(":")[0] for line in differences] == ["auth.users", "storage.objects"]
    assert row["details"]["backup_run_id"] == damaged["run_id"]
    assert scratch_databases(drill_server) == []  # dropped on failure too
    # The archive restores to other figures than it recorded: its backup is marked damaged.
    marked = small_sandbox.history_row(damaged["run_id"])
    assert marked["status"] == "success" and marked["damaged_by"] == row["run_id"]
    assert marked["damage"] == row["error"]
    # The damaged row is a backup row: the newest successful drill is still the first test's.
    with small_sandbox.connect() as connection:
        assert history.latest_success(connection, history.DRILL)["run_id"] != row["run_id"]


def with_a_bad_crc(sandbox, backup: dict) -> dict:
    """The same archive with db/backup.sql stored uncompressed and one byte of it flipped after
    the zip was written (its CRC-32 no longer matches), recorded as the newest successful backup."""
    s3, bucket = sandbox.s3(), sandbox.settings["s3_bucket"]
    body = s3.get_object(Bucket=bucket, Key=backup["s3_key"])["Body"].read()
    output = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(body)) as source, zipfile.ZipFile(output, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "db/backup.sql":
                info.compress_type = zipfile.ZIP_STORED
            target.writestr(info, data)
    damaged = bytearray(output.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(damaged))) as archive:
        entry = archive.getinfo("db/backup.sql")
    name_length, extra_length = struct.unpack_from("<HH", damaged, entry.header_offset + 26)
    damaged[entry.header_offset + 30 + name_length + extra_length + 100] ^= 0xFF
    key = f"damaged/{uuid.uuid4().hex}.zip"
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(damaged))
    run_id = f"bad-crc__{uuid.uuid4().hex}"
    with sandbox.connect() as connection:
        history.record_running(connection, run_id, "manual")
        history.record_success(connection, run_id, {
            "s3_bucket": bucket, "s3_key": key, "size_bytes": len(damaged),
            "sha256": hashlib.sha256(damaged).hexdigest()})
    return {"run_id": run_id, "s3_key": key}


def test_a_drill_that_finds_the_newest_archive_damaged_says_so_and_marks_it(
        small_sandbox, backup, drill_server, airflow_metadata, smtp_sink):
    damaged = with_a_bad_crc(small_sandbox, backup)
    with small_sandbox.connect() as connection:
        assert history.latest_verified_backup(connection)["run_id"] == damaged["run_id"]

    dag_run = DrillRunner(small_sandbox, drill_server).run(
        supabase_backup_alert_email="ops@example.com")

    row = drill_row(small_sandbox, dag_run)
    assert dag_run.state == "failed" and row["status"] == "failed"
    assert row["error"].startswith("verify_backup: Archive verification failed for s3://")
    assert "damaged member" in row["error"] and "db/backup.sql" in row["error"]
    # The e-mail carries the drill's cause, not "task(s) record_drill failed".
    (_, message), = smtp_sink.messages
    text = body_text(message)
    assert message["Subject"] == f"[supabase-backup] Restore drill FAILED: {dag_run.run_id}"
    assert f"Cause: {row['error']}" in text and "record_drill failed" not in text.split("\n")[2]
    assert f"Backup {damaged['run_id']} is now marked damaged" in text
    # The backup is marked; staleness and the next drill count only backups not found damaged.
    marked = small_sandbox.history_row(damaged["run_id"])
    assert marked["status"] == "success" and marked["damaged_at"] is not None
    assert marked["damaged_by"] == row["run_id"] and marked["damage"] == row["error"]
    with small_sandbox.connect() as connection:
        latest = history.latest_verified_backup(connection)
        assert latest["run_id"] != damaged["run_id"]
        assert latest["damaged_at"] is None
    again = DrillRunner(small_sandbox, drill_server).run()
    assert drill_row(small_sandbox, again)["details"]["backup_run_id"] != damaged["run_id"]


def test_a_drill_without_its_server_connection_fails_saying_which_to_set(
        small_sandbox, backup, airflow_metadata):
    os.environ.pop("AIRFLOW_CONN_SUPABASE_BACKUP_DRILL_DB", None)
    dag_run = run_dag("supabase_backup_restore_drill", small_sandbox.env)
    row = drill_row(small_sandbox, dag_run)
    assert dag_run.state == "failed" and row["status"] == "failed"
    assert "supabase_backup_drill_db" in row["error"]
