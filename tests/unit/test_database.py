import os
import stat

import pytest

from supabase_backup.sources import database
from supabase_backup.errors import PgDumpTooOld


def fake_pg_dump(tmp_path, name, version):
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {version}'\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_arguments_hold_no_credentials_and_use_the_right_large_object_flag():
    arguments = database.pg_dump_arguments("/bin/pg_dump", 15, "00000003-0000001B-1")
    assert arguments[1:] == ["--no-owner", "--no-privileges", "--format=plain", "--verbose",
                             "--blobs", "--snapshot=00000003-0000001B-1"]
    assert "--large-objects" in database.pg_dump_arguments("/bin/pg_dump", 17, None)


def test_password_only_in_environment():
    settings = database.DatabaseSettings(host="db.example", port=5432, user="postgres.ref",
                                         password="s3cret!", dbname="postgres", sslmode="require")
    environment = settings.libpq_environment()
    assert environment["PGPASSWORD"] == "s3cret!" and environment["PGSSLMODE"] == "require"
    assert "s3cret" not in repr(settings) and "s3cret" not in settings.describe()


def test_too_old_pg_dump_names_the_client_to_install(tmp_path):
    old = fake_pg_dump(tmp_path, "pg_dump15", "15.18")
    with pytest.raises(PgDumpTooOld) as raised:
        database.choose_pg_dump(17, old)
    assert "postgresql-client-17" in str(raised.value) and "15.18" in str(raised.value)


def test_newest_candidate_wins(tmp_path, monkeypatch):
    paths = [fake_pg_dump(tmp_path, "a", "15.18"), fake_pg_dump(tmp_path, "b", "17.6")]
    monkeypatch.setattr(database, "candidate_pg_dumps", lambda: paths)
    assert database.choose_pg_dump(17) == (paths[1], "17.6")


def test_only_a_real_pg_dump_version_line_is_accepted():
    """`ls --version` also prints a version; it must not pass for "pg_dump 9.1"."""
    import shutil

    from supabase_backup.errors import PgDumpUnusable

    with pytest.raises(PgDumpUnusable, match="pg_dump \\(PostgreSQL\\) N"):
        database.pg_dump_version(shutil.which("ls"))
    with pytest.raises(PgDumpUnusable):
        database.choose_pg_dump(15, shutil.which("ls"))


@pytest.mark.parametrize("libpq_said, error_class, exit_code, words", [
    ('connection failed: connection to server at "db.example.com" (10.0.0.5), port 5432 failed: '
     "fe_sendauth: no password supplied", "DatabaseLoginRefused", 7,
     "it asks user 'postgres' for a password and none was given"),
    ('connection failed: connection to server at "db.example.com", port 5432 failed: FATAL:  no '
     'pg_hba.conf entry for host "10.1.1.1", user "postgres", database "postgres", no encryption',
     "DatabaseLoginRefused", 7, 'no pg_hba.conf entry for host "10.1.1.1"'),
    ("failed to resolve host 'db.example.com': [Errno -2] Name or service not known",
     "DatabaseUnreachable", 15, "No Postgres server answers at db.example.com:5432"),
    ('connection failed: connection to server at "db.example.com", port 5432 failed: timeout '
     "expired", "DatabaseUnreachable", 15, "(timeout expired)"),
    ("consuming input failed: server closed the connection unexpectedly", "DatabaseUnreachable",
     15, "server closed the connection unexpectedly"),
    ("something libpq never said before", "DatabaseFailed", 2,
     "The database postgres@db.example.com:5432/postgres failed: something libpq never said"),
])
def test_a_failed_connection_is_explained_by_the_error_tree(libpq_said, error_class, exit_code,
                                                             words):
    import psycopg

    settings = database.DatabaseSettings(host="db.example.com", password="hunter2-secret")
    explained = database.connection_failure(settings, psycopg.OperationalError(libpq_said))
    assert (type(explained).__name__, explained.exit_code) == (error_class, exit_code)
    assert words in str(explained) and "hunter2-secret" not in str(explained)
