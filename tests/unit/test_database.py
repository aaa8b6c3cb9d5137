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
