"""The disaster case: a Supabase-shaped project (built from Supabase's own migrations by
../shared/supabase-db, with the sample app) backed up by the real DAG as the non-superuser
``postgres``, then restored with ``supabase-backup restore`` into a FRESH project's own
``postgres`` database as ``postgres``. Checked from the outside: every table's count on both sides,
the app's trigger on auth.users, its storage policies, the large object, the cron job, an extension
and a custom role the source had."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import psycopg
import pytest

from supabase_backup.cli import main
from tests.archive_reader import read_member
from tests.conftest import PROJECT_ROOT
from tests.sandbox_fixtures import MIGRATION

KIT = Path(os.environ.get("SUPABASE_DB_KIT", PROJECT_ROOT.parent / "shared" / "supabase-db"))
NOT_COMPARED = {("public", "backup_history"),  # written by the backup run after its snapshot
                ("auth", "schema_migrations"), ("storage", "migrations")}  # the project's own


def read_env(state: Path) -> dict:
    values = {}
    for line in (state / "env.sh").read_text().splitlines():
        for part in line.removeprefix("export ").split(" "):
            if "=" in part:
                name, value = part.split("=", 1)
                values[name] = value.strip("'")
    return values


@pytest.fixture(scope="module")
def projects():
    if not (KIT / "up.sh").exists():
        # The kit lives in the steering repository's shared/ folder, which CI puts beside the
        # clone: there its absence is an error, never a silent skip.
        message = f"{KIT}/up.sh not found (set SUPABASE_DB_KIT to shared/supabase-db)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    states = []

    def up(seed: str, extensions: str) -> dict:
        state = Path(tempfile.mkdtemp(prefix=f"supabase-backup-realdb-{seed}-", dir="/tmp"))
        state.chmod(0o755)
        states.append(state)
        subprocess.run([str(KIT / "up.sh"), str(state)], check=True, capture_output=True,
                       env={**os.environ, "REALDB_SEED": seed, "REALDB_EXTENSIONS": extensions})
        return read_env(state)

    try:
        source = up("app", "pg_cron")
        # On a hosted project the restore's CREATE EXTENSION pg_cron works as postgres (supautils);
        # this stand-in lacks supautils, so the fresh project gets it "from the dashboard".
        yield source, lambda: up("none", "pg_cron")
    finally:
        for state in states:
            subprocess.run([str(KIT / "down.sh"), str(state), "--purge"], capture_output=True)


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def prepare_source(source: dict) -> None:
    """The backup tables, plus what the sample app lacks: an extension the fresh project does
    not have enabled, a table using it, and a custom role named by a policy."""
    parts = urlsplit(source["REALDB_URL"])
    subprocess.run(["psql", "-X", "--quiet", "-v", "ON_ERROR_STOP=1", "-f", str(MIGRATION)],
                   env={**os.environ, "PGHOST": parts.hostname, "PGPORT": str(parts.port),
                        "PGUSER": "postgres", "PGPASSWORD": parts.password, "PGDATABASE": "postgres"},
                   check=True, capture_output=True)
    with connect(source["REALDB_ADMIN_URL"]) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA extensions")
    with connect(source["REALDB_URL"]) as connection:
        connection.execute("CREATE ROLE reporting NOLOGIN")
        # A login role no policy names: only db/roles.sql can carry it (without its password).
        connection.execute("CREATE ROLE analyst LOGIN PASSWORD 'analyst-secret-42' IN ROLE reporting")
        connection.execute("ALTER ROLE analyst SET statement_timeout TO '30s'")
        connection.execute("CREATE TABLE public.tags (name extensions.citext PRIMARY KEY, uses int)")
        connection.execute("INSERT INTO public.tags SELECT 'Tag' || i, i FROM generate_series(1, 30) i")
        connection.execute("CREATE POLICY reporting_reads ON public.todos FOR SELECT TO reporting "
                           "USING (true)")


def table_counts(url: str) -> dict:
    with connect(url) as connection:
        tables = connection.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN ('public', 'auth', 'storage') "
            "ORDER BY 1, 2").fetchall()
        return {(schema, table): connection.execute(
            f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
            for schema, table in tables if (schema, table) not in NOT_COMPARED}


def app_objects(url: str) -> dict:
    with connect(url) as connection:
        def values(query):
            return sorted(tuple(row) for row in connection.execute(query))

        return {
            "trigger": values("SELECT tgname, tgrelid::regclass::text, tgenabled FROM pg_trigger "
                              "WHERE tgname = 'on_auth_user_created'"),
            "storage policies": values("SELECT policyname, cmd, roles::text FROM pg_policies "
                                       "WHERE schemaname = 'storage'"),
            "public policies": values("SELECT tablename, policyname FROM pg_policies "
                                      "WHERE schemaname = 'public'"),
            "large objects": values("SELECT convert_from(lo_get(oid), 'UTF8') FROM pg_largeobject_metadata"),
            "cron jobs": values("SELECT jobname, schedule, command, active FROM cron.job"),
            "extensions": values("SELECT extname, extnamespace::regnamespace::text FROM pg_extension"),
            "custom roles": values("SELECT rolname, rolcanlogin, rolconfig::text FROM pg_roles "
                                   "WHERE rolname IN ('reporting', 'analyst')"),
            "memberships": values("SELECT m.rolname, r.rolname FROM pg_auth_members a "
                                  "JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
                                  "WHERE m.rolname = 'analyst'"),
            "profiles": values("SELECT id::text, username FROM public.profiles"),
            "identities": values("SELECT user_id::text, provider FROM auth.identities"),
        }


@pytest.fixture(scope="module")
def archive(projects, small_sandbox, backup_runner, tmp_path_factory):
    source, _ = projects
    prepare_source(source)
    # The DAG's supabase_db connection points at the project, as postgres; S3 is the sandbox's.
    runner_target = SimpleNamespace(env={**small_sandbox.env,
                                         "AIRFLOW_CONN_SUPABASE_DB": source["REALDB_URL"]})
    dag_run = backup_runner.run(runner_target, {"include_storage": False, "include_auth": False})
    with connect(source["REALDB_URL"]) as connection:
        status, key, error = connection.execute(
            "SELECT status, s3_key, error FROM public.backup_history WHERE run_id = %s",
            (dag_run.run_id,)).fetchone()
    assert status == "success", error
    return small_sandbox.download_archive(key, tmp_path_factory.mktemp("supabase") / "archive.zip")


def restore_command(target: dict, archive: Path, monkeypatch) -> list[str]:
    """The command, with the password in PGPASSWORD only."""
    parts = urlsplit(target["REALDB_URL"])
    monkeypatch.setenv("PGPASSWORD", parts.password)
    url = f"postgresql://postgres@{parts.hostname}:{parts.port}/postgres"
    return ["restore", "--only", "db", "--database-url", url, str(archive)]


def test_backup_of_a_project_restores_into_a_fresh_project(projects, archive, monkeypatch, capsys):
    source, fresh_project = projects
    target = fresh_project()
    command = restore_command(target, archive, monkeypatch)
    code = main(command)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Restored into the Supabase project database" in out
    assert "Extensions created first: citext" in out
    assert "Roles created from db/roles.sql (no passwords: set them by hand): analyst, reporting" in out
    assert "Roles created (NOLOGIN): none" in out
    roles_sql = read_member(archive, "db/roles.sql").decode()
    assert "CREATE ROLE analyst;" in roles_sql and "analyst-secret-42" not in roles_sql
    assert "PASSWORD" not in roles_sql
    assert "trigger on_auth_user_created on auth.users" in out
    assert "cron jobs scheduled: nightly-audit-trim" in out
    assert "all equal" in out and "psql said" not in out

    source_counts, target_counts = table_counts(source["REALDB_URL"]), table_counts(target["REALDB_URL"])
    assert source_counts == target_counts
    for table, rows in {("auth", "users"): 25, ("auth", "identities"): 25, ("auth", "sessions"): 5,
                        ("auth", "refresh_tokens"): 5, ("storage", "objects"): 40,
                        ("public", "profiles"): 25, ("public", "todos"): 75, ("public", "tags"): 30}.items():
        assert target_counts[table] == rows, table
    source_objects, target_objects = app_objects(source["REALDB_URL"]), app_objects(target["REALDB_URL"])
    assert target_objects == source_objects
    assert len(target_objects["storage policies"]) == 3 and target_objects["trigger"]
    assert target_objects["large objects"] == [("hello from a large object",)]
    assert [job[0] for job in target_objects["cron jobs"]] == ["nightly-audit-trim"]
    with connect(target["REALDB_URL"]) as connection:
        # Nothing fired while rows loaded: profiles came from the backup, not from the trigger.
        assert connection.execute("SELECT count(*) FROM public.profiles").fetchone()[0] == 25
        # The project's own migration history is untouched (77 auth, 64 storage rows).
        assert connection.execute("SELECT count(*) FROM auth.schema_migrations").fetchone()[0] == 77

    # Run again: the project is no longer fresh, so nothing is changed.
    assert main(command) == 10
    assert "already holds user tables" in capsys.readouterr().err


def test_a_project_older_than_the_source_is_refused_before_anything_runs(projects, archive,
                                                                         monkeypatch, capsys):
    _, fresh_project = projects
    target = fresh_project()
    with connect(target["REALDB_ADMIN_URL"]) as admin:  # as if its auth were one release behind
        newest = admin.execute("DELETE FROM auth.schema_migrations WHERE version = "
                               "(SELECT max(version) FROM auth.schema_migrations) "
                               "RETURNING version").fetchone()[0]
    assert main(restore_command(target, archive, monkeypatch)) == 10
    error = capsys.readouterr().err
    assert f"lacks 1 auth migration(s) the source had ({newest})" in error
    with connect(target["REALDB_URL"]) as connection:
        assert connection.execute("SELECT count(*) FROM auth.users").fetchone()[0] == 0
