"""Every expected failure of the command is its exit code and one sentence on stderr, never a
traceback: restore, prune and verify against a refused password, a closed port, a database that
does not exist, a database without the backup tables, a missing file, a password in argv. Run as a
separate process, as a person runs it, against the sandbox's Postgres."""

import os
import subprocess
import sys
import uuid

import pytest

from tests.airflow_services import free_port
from tests.conftest import PROJECT_ROOT
from tests.unit.test_restore import write_archive

WRONG_PASSWORD = "Not-The-Password-7"


def run_command(*arguments, password):
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "include")}
    environment.pop("SUPABASE_BACKUP_RESTORE_DATABASE_URL", None)
    environment["PGPASSWORD"] = password
    result = subprocess.run([sys.executable, "-m", "supabase_backup", *arguments],
                            capture_output=True, text=True, env=environment, timeout=120)
    return result.returncode, result.stderr


@pytest.fixture(scope="module")
def server(small_sandbox):
    settings = small_sandbox.settings
    return {"host": settings["pg_host"], "port": settings["pg_port"],
            "user": settings["pg_user"], "password": settings["pg_password"]}


@pytest.fixture(scope="module")
def database_without_backup_tables(small_sandbox):
    name = f"no_tables_{uuid.uuid4().hex[:8]}"
    with small_sandbox.connect() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield name
    with small_sandbox.connect() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_archive(tmp_path_factory.mktemp("cli-failures") / "backup.zip")


def url(server, *, port=None, dbname="postgres"):
    return f"postgresql://{server['user']}@{server['host']}:{port or server['port']}/{dbname}"


def prune(database_url):
    return ("prune", "--keep-daily", "2", "--dry-run", "--database-url", database_url)


def restore(database_url, archive):
    return ("restore", "--only", "db", "--database-url", database_url, str(archive))


def cases(server, archive, closed_port, no_tables):
    """(name, arguments, PGPASSWORD, exit code, the sentence on stderr)."""
    refused = (f"The Postgres server at {server['user']}@{server['host']}:{server['port']}/postgres "
               f"refused the login (password authentication failed for user "
               f"\"{server['user']}\"): check the user in the database URL and the password in "
               f"PGPASSWORD (the DAG takes both from its Airflow connection).")
    closed = (f"No Postgres server answers at {server['host']}:{closed_port} (Connection refused): "
              f"check the host and port in the database URL (a Supabase project's session pooler "
              f"listens on 5432) and that the server is running, then run again.")
    missing = (f"The Postgres server at {server['host']}:{server['port']} has no database "
               f"'no_such_database': name an existing database in the database URL, or create it "
               f"first (createdb no_such_database) when it is a restore target.")
    password = server["password"]
    in_argv = url(server).replace("@", f":{password}@")
    return [
        ("restore, refused password", restore(url(server), archive), WRONG_PASSWORD, 7,
         f"supabase-backup restore: {refused}"),
        ("restore, closed port", restore(url(server, port=closed_port), archive), password, 15,
         f"supabase-backup restore: {closed}"),
        ("restore, missing database", restore(url(server, dbname="no_such_database"), archive),
         password, 16, f"supabase-backup restore: {missing}"),
        ("restore, password in argv", restore(in_argv, archive), password, 3,
         "supabase-backup restore: Configuration problem: --database-url holds a password, which "
         "any user of this machine can read in the process list: remove it and set PGPASSWORD"),
        ("prune, refused password", prune(url(server)), WRONG_PASSWORD, 7,
         f"supabase-backup prune: {refused}"),
        ("prune, closed port", prune(url(server, port=closed_port)), password, 15,
         f"supabase-backup prune: {closed}"),
        ("prune, missing database", prune(url(server, dbname="no_such_database")), password, 16,
         f"supabase-backup prune: {missing}"),
        ("prune, no backup tables", prune(url(server, dbname=no_tables)), password, 4,
         "supabase-backup prune: Table public.backup_history does not exist in the Supabase "
         "database: apply include/sql/001_backup_system.sql (psql -v ON_ERROR_STOP=1 -f "
         "include/sql/001_backup_system.sql) and run again."),
        ("verify, missing file", ("verify", str(archive.with_name("missing.zip"))), password, 9,
         f"supabase-backup verify: No archive at {archive.with_name('missing.zip')}: no such file"),
    ]


def test_every_expected_failure_is_its_exit_code_and_one_sentence(
        server, archive, database_without_backup_tables):
    closed_port = free_port()
    outcomes = {}
    for name, arguments, password, code, sentence in cases(
            server, archive, closed_port, database_without_backup_tables):
        returned, stderr = run_command(*arguments, password=password)
        # restore prints one progress line ("Verified …") before it reaches the database.
        lines = [line for line in stderr.splitlines() if not line.startswith("Verified ")]
        outcomes[name] = (returned, lines)
        assert "Traceback" not in stderr, f"{name}: {stderr}"
        assert server["password"] not in stderr and WRONG_PASSWORD not in stderr, name
        assert (returned, lines) == (code, [sentence]), f"{name}: {returned} {stderr}"
    assert len(outcomes) == 9


def test_verbose_adds_the_cause_still_without_a_traceback(server):
    returned, stderr = run_command("-v", *prune(url(server)), password=WRONG_PASSWORD)
    assert returned == 7 and "Traceback" not in stderr
    assert "caused by OperationalError: connection failed:" in stderr
