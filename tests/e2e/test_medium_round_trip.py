"""The medium sandbox's database (about 190k rows and a large object) backed up by the DAG and
restored with `supabase-backup restore` into a bare Postgres 15 and a bare Postgres 17: every
table's exact count and content checksum recorded at dump time found again on both (the command's
own comparison), and every table's count checked from the outside against the source."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from supabase_backup.cli import main
from tests.postgres_17 import reachable_bin
from tests.postgres_servers import DEBIAN_POSTGRES_15, bare_server

SKIP_TABLES = {("public", "backup_history")}  # written to by the backup run after its snapshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def medium_archive(medium_sandbox, backup_runner, tmp_path_factory):
    dag_run = backup_runner.run(medium_sandbox, {"include_storage": False, "include_auth": False})
    row = medium_sandbox.history_row(dag_run.run_id)
    assert row["status"] == "success", row
    return medium_sandbox.download_archive(row["s3_key"], tmp_path_factory.mktemp("medium") / "a.zip")


def counts(connection) -> dict:
    tables = connection.execute(
        "SELECT schemaname, tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()
    return {(schema, table): connection.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
            for schema, table in tables if (schema, table) not in SKIP_TABLES}


@pytest.mark.parametrize("version", [15, 17])
def test_medium_database_round_trip(version, medium_sandbox, medium_archive, capsys):
    with bare_server(DEBIAN_POSTGRES_15 if version == 15 else reachable_bin()) as server:
        name = f"restored_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(host=server["host"], port=server["port"], user="postgres",
                             dbname="postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
            assert connection.info.server_version // 10000 == version
        url = f"postgresql://postgres@{server['host']}:{server['port']}/{name}"
        code = main(["restore", "--only", "db", "--target", "postgres", "--database-url", url,
                     "--psql", str(server["bin"] / "psql"), str(medium_archive)])
        out = capsys.readouterr().out
        assert code == 0, out
        with medium_sandbox.connect() as source, psycopg.connect(
                host=server["host"], port=server["port"], user="postgres", dbname=name) as target:
            source_counts, target_counts = counts(source), counts(target)
    assert source_counts == target_counts
    assert sum(target_counts.values()) > 150_000
    tables = len(target_counts) + len(SKIP_TABLES)
    assert f"Figures: {tables} tables" in out and f"{tables} content checksums compared" in out
    assert "all equal" in out
