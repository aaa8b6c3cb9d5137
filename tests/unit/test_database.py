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


# --- A dump counts only when its own stream proves it whole (issue 19, item 1) ------------------

WHOLE_DUMP = (
    b"--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\nSET statement_timeout = 0;\n"
    b"CREATE TABLE public.orders (id integer, note text);\n\n"
    b"--\n-- Data for Name: orders; Type: TABLE DATA; Schema: public; Owner: -\n--\n\n"
    b"COPY public.orders (id, note) FROM stdin;\n1\tfirst\n2\ttwo\\nlines\n3\t\\\\.\n\\.\n\n"
    b"--\n-- Data for Name: My T; Type: TABLE DATA; Schema: My S; Owner: -\n--\n\n"
    b'COPY "My S"."My T" (a) FROM stdin;\n\\.\n\n'
    b"-- Completed on 2026-12-07 23:08:32 UTC\n\n"
    b"--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n"
)


def fake_dump_program(tmp_path, output: bytes, name="pg_dump"):
    """A program that prints ``output`` and exits 0, as a broken or foreign pg_dump might."""
    (tmp_path / f"{name}.out").write_bytes(output)
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\ncat '{tmp_path / f'{name}.out'}'\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def staged(tmp_path):
    from supabase_backup.staging import StagingArea

    return StagingArea.at(f"file://{tmp_path / 'staging'}")


def test_a_whole_dump_passes_with_its_rows_counted(tmp_path):
    program = fake_dump_program(tmp_path, WHOLE_DUMP)
    result = database.run_pg_dump([program], {}, staged(tmp_path))
    assert result["bytes"] == len(WHOLE_DUMP)
    assert result["dump_check"] == {"trailer": "-- PostgreSQL database dump complete",
                                    "copy_blocks": 2, "copy_rows": 3}
    assert result["copy_rows"] == [{"schema": "public", "table": "orders", "rows": 3},
                                   {"schema": "My S", "table": "My T", "rows": 0}]


@pytest.mark.parametrize("case, output, expected", [
    ("empty", b"", "is empty (0 bytes)"),
    ("cut", WHOLE_DUMP[:WHOLE_DUMP.index(b"2\ttwo")], "ends inside the rows of table public.orders"),
    ("cut after the data", WHOLE_DUMP[:WHOLE_DUMP.index(b"-- Completed")],
     "does not end with the line '-- PostgreSQL database dump complete'"),
    ("junk", b"Usage: something else entirely\n" * 40, "does not end with the line"),
    ("statement after the trailer", WHOLE_DUMP + b"DROP TABLE public.orders;\n",
     "does not end with the line"),
])
def test_an_exit_status_of_0_is_not_enough(tmp_path, case, output, expected):
    from supabase_backup.errors import DatabaseDumpIncomplete

    program = fake_dump_program(tmp_path, output)
    with pytest.raises(DatabaseDumpIncomplete) as raised:
        database.run_pg_dump([program], {"PGPASSWORD": "s3cret-canary"}, staged(tmp_path))
    message = str(raised.value)
    assert expected in message and "db/backup.sql is not a whole dump" in message
    assert "pg_dump exited with status 0" in message and "s3cret-canary" not in message
    assert raised.value.permanent and raised.value.exit_code == 6


def test_a_cut_roles_dump_is_left_out_not_kept(tmp_path, monkeypatch):
    whole = b"--\n-- Roles\n--\n\nCREATE ROLE app;\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n"
    settings = database.DatabaseSettings(host="db.example", password="s3cret-canary")
    fake_dump_program(tmp_path, whole, name="pg_dumpall")
    roles = database.dump_roles(str(tmp_path / "pg_dump"), settings, staged(tmp_path))
    assert roles["included"] and roles["dump_check"]["trailer"].endswith("cluster dump complete")
    assert "copy_rows" not in roles
    fake_dump_program(tmp_path, whole[:30], name="pg_dumpall")
    roles = database.dump_roles(str(tmp_path / "pg_dump"), settings, staged(tmp_path))
    assert not roles["included"] and "db/roles.sql is not a whole dump" in roles["reason"]
    assert "cluster dump complete" in roles["reason"] and "s3cret" not in roles["reason"]


def test_rows_in_the_dump_must_equal_the_exact_counts_of_the_snapshot():
    tables = [
        {"schema": "public", "table": "orders", "rows": 3},
        {"schema": "public", "table": "lost", "rows": 2},  # rows in the snapshot, no COPY block
        {"schema": "public", "table": "parent", "rows": 5},  # count(*) includes its children
        {"schema": "public", "table": "estimated", "row_estimate": 9},  # no exact figures
    ]
    copy_rows = [{"schema": "public", "table": "orders", "rows": 2},
                 {"schema": "public", "table": "parent", "rows": 1},
                 {"schema": "public", "table": "estimated", "rows": 8}]
    compared, differences = database.record_dump_rows(tables, copy_rows, {("public", "parent")})
    assert compared == 2
    assert differences == ("table public.orders has 2 rows in the dump but 3 in the snapshot; "
                           "table public.lost has 0 rows in the dump but 2 in the snapshot")
    assert [entry.get("dump_rows") for entry in tables] == [2, None, 1, 8]
    agreeing = [{"schema": "public", "table": "orders", "rows": 2}]
    assert database.record_dump_rows(agreeing, copy_rows, set()) == (1, None)
