"""history.py's additions for the plugin (status filter, settling, download records) and the
backup_downloads table, against the sandbox's real Postgres with the migration applied."""

import subprocess
import uuid

import pytest

from supabase_backup.records import history
from tests.sandbox_fixtures import MIGRATION


@pytest.fixture
def connection(small_sandbox):
    with small_sandbox.connect() as connection:
        yield connection


def test_backup_downloads_is_locked_out_of_the_api_roles_and_the_migration_reruns(small_sandbox,
                                                                                   connection):
    subprocess.run(["psql", "--quiet", "-v", "ON_ERROR_STOP=1", "-f", str(MIGRATION)],
                   env=small_sandbox.libpq_environment(), check=True, capture_output=True)
    assert connection.execute("SELECT relrowsecurity FROM pg_class WHERE relname = "
                              "'backup_downloads'").fetchone() == (True,)
    for role in ("anon", "authenticated"):
        for privilege in ("SELECT", "INSERT"):
            assert connection.execute("SELECT has_table_privilege(%s, 'public.backup_downloads', "
                                      "%s)", (role, privilege)).fetchone() == (False,)


def test_settling_touches_only_the_ended_running_rows(connection):
    ended, alive, done = (f"settle__{uuid.uuid4()}" for _ in range(3))
    for run_id in (ended, alive, done):
        history.record_running(connection, run_id, "manual")
    history.record_failed(connection, done, "build_archive: disk full", trigger="manual")
    assert {ended, alive} <= set(history.running_run_ids(connection))
    assert history.settle_ended_runs(connection, [ended, done], settled_by="here") == [ended]
    assert history.get_by_run_id(connection, ended)["error"] == (
        f"the run ended without recording its outcome; see Airflow run {ended}")
    assert history.get_by_run_id(connection, alive)["status"] == "running"
    assert history.get_by_run_id(connection, done)["error"] == "build_archive: disk full"
    failed = history.list_history(connection, status="failed", limit=500)
    assert {ended, done} <= {row["run_id"] for row in failed}
    assert all(row["status"] == "failed" for row in failed)
    assert history.count_history(connection, "failed") >= 2


def test_a_download_is_recorded_with_its_expiry(connection):
    run_id = f"download__{uuid.uuid4()}"
    history.record_running(connection, run_id, "manual")
    row = history.get_by_run_id(connection, run_id) | {"s3_bucket": "b", "s3_key": "k.zip"}
    record_id = history.record_download(connection, row, requested_by="operator",
                                        expires_in_seconds=900)
    assert connection.execute(
        "SELECT history_id, run_id, s3_key, requested_by, extract(epoch FROM expires_at - "
        "requested_at) FROM public.backup_downloads WHERE id = %s", (record_id,)
    ).fetchone() == (row["id"], run_id, "k.zip", "operator", 900)
