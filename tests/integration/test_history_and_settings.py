"""history.py and settings.py against the sandbox's real Postgres with the migration applied."""

import subprocess
import uuid

import psycopg
import pytest

from supabase_backup.records import history
from supabase_backup.records import enabled as settings
from supabase_backup.errors import HistoryRowMissing, MigrationMissing
from tests.sandbox_fixtures import MIGRATION


@pytest.fixture
def connection(small_sandbox):
    with small_sandbox.connect() as connection:
        yield connection


def test_migration_is_idempotent_and_locks_out_the_api_roles(small_sandbox, connection):
    for _ in range(2):
        subprocess.run(["psql", "--quiet", "-v", "ON_ERROR_STOP=1", "-f", str(MIGRATION)],
                       env=small_sandbox.libpq_environment(), check=True, capture_output=True)
    rows = connection.execute(
        "SELECT relname, relrowsecurity FROM pg_class WHERE relname IN "
        "('system_settings_kv', 'backup_history') ORDER BY 1").fetchall()
    assert rows == [("backup_history", True), ("system_settings_kv", True)]
    for role in ("anon", "authenticated"):
        for table in ("public.backup_history", "public.system_settings_kv"):
            assert connection.execute("SELECT has_table_privilege(%s, %s, 'SELECT')",
                                      (role, table)).fetchone()[0] is False
    assert connection.execute("SELECT has_table_privilege('service_role', "
                              "'public.backup_history', 'INSERT')").fetchone()[0] is True


def test_run_row_lifecycle_is_keyed_by_run_id(connection):
    run_id = f"test__{uuid.uuid4()}"
    history.record_running(connection, run_id, "scheduled", triggered_by=None)
    history.record_progress(connection, run_id, step="exporting storage")
    history.record_progress(connection, run_id, bucket="media",
                            counts={"objects_done": 3, "objects_known": 10, "bytes_done": 99})
    # Buckets entered as pending later do not reset one that has already reported.
    history.record_buckets_pending(connection, run_id, ["media", "avatars"])
    row = history.get_by_run_id(connection, run_id)
    assert row["progress"]["step"] == "exporting storage"
    assert row["progress"]["buckets"]["media"]["objects_done"] == 3
    assert (row["progress"]["buckets"]["avatars"]["objects_known"],
            row["progress"]["buckets"]["avatars"]["listing_done"]) == (0, False)
    history.record_failed(connection, run_id, "dump_database: pg_dump exited with status 1",
                          trigger="scheduled")
    history.record_failed(connection, run_id, "generic: the run ended", trigger="scheduled")
    row = history.get_by_run_id(connection, run_id)
    assert row["status"] == "failed" and row["error"].startswith("dump_database")
    history.record_progress(connection, run_id, step="late report")  # a finished row stays as it is
    assert history.get_by_run_id(connection, run_id)["progress"]["step"] == "exporting storage"
    history.record_running(connection, run_id, "scheduled")  # the run was cleared and retried
    history.record_success(connection, run_id, {"s3_bucket": "b", "s3_key": "k", "size_bytes": 5,
                                                "sha256": "f" * 64, "storage_objects": 3})
    row = history.get_by_run_id(connection, run_id)
    assert (row["status"], row["error"], row["s3_key"], row["storage_objects"]) == (
        "success", None, "k", 3)
    count = connection.execute("SELECT count(*) FROM public.backup_history WHERE run_id = %s",
                               (run_id,)).fetchone()[0]
    assert count == 1
    assert history.get_by_id(connection, row["id"])["run_id"] == run_id
    assert run_id in [item["run_id"] for item in history.list_history(connection, limit=500)]


def test_a_run_that_fails_before_its_first_row_keeps_its_trigger(connection):
    run_id = f"test__{uuid.uuid4()}"
    history.record_failed(connection, run_id, "plan_run: no bucket Variable", trigger="api",
                          triggered_by="ops")
    row = history.get_by_run_id(connection, run_id)
    assert (row["status"], row["trigger"], row["triggered_by"]) == ("failed", "api", "ops")


def test_success_needs_a_started_row(connection):
    with pytest.raises(HistoryRowMissing, match="never recorded it"):
        history.record_success(connection, f"never-started-{uuid.uuid4()}", {})


def test_enabled_setting_round_trip(connection):
    try:
        settings.write_backup_enabled(connection, False, "test")
        assert settings.read_backup_enabled(connection) is False
        row = connection.execute("SELECT value, updated_by FROM public.system_settings_kv "
                                 "WHERE key = 'backup_enabled'").fetchone()
        assert row == (False, "test")
    finally:
        settings.write_backup_enabled(connection, True, "test")
    assert settings.read_backup_enabled(connection) is True


def test_missing_tables_name_the_migration(small_sandbox):
    with small_sandbox.connect() as admin:
        name = f"empty_{uuid.uuid4().hex[:8]}"
        admin.execute(f'CREATE DATABASE "{name}"')
    with small_sandbox.connect(name) as connection:
        with pytest.raises(MigrationMissing, match="001_backup_system.sql"):
            settings.read_backup_enabled(connection)
        with pytest.raises(MigrationMissing, match="public.backup_history"):
            history.record_running(connection, "r", "manual")


def test_a_cleared_runs_reason_replaces_the_earlier_attempts(connection):
    run_id = f"test__{uuid.uuid4()}"
    history.record_running(connection, run_id, "manual")
    history.record_failed(connection, run_id, "list_buckets: 503", trigger="manual")
    history.record_failed(connection, run_id, "build_archive: staged dump gone", trigger="manual",
                          attempt=1)
    history.record_failed(connection, run_id, "record_history: summary", trigger="manual",
                          attempt=1)
    row = history.get_by_run_id(connection, run_id)
    assert (row["error"], row["run_attempt"]) == ("build_archive: staged dump gone", 1)


def test_kind_column_is_added_to_an_older_table_and_keeps_rows_backups(small_sandbox):
    name = f"history_{uuid.uuid4().hex[:8]}"
    with small_sandbox.connect() as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        environment = small_sandbox.libpq_environment(name)
        older = MIGRATION.read_text().split("-- 'backup' (a run of the supabase_backup DAG)")[0]
        subprocess.run(["psql", "--quiet", "-v", "ON_ERROR_STOP=1"], input=older, text=True,
                       env=environment, check=True, capture_output=True)
        with small_sandbox.connect(name) as connection:
            history.record_running(connection, "old__1", "manual")  # no kind column yet
            with pytest.raises(MigrationMissing, match="column kind"):
                history.record_running(connection, "drill:old__1", "manual", kind=history.DRILL)
        for _ in range(2):
            subprocess.run(["psql", "--quiet", "-v", "ON_ERROR_STOP=1", "-f", str(MIGRATION)],
                           env=environment, check=True, capture_output=True)
        with small_sandbox.connect(name) as connection:
            assert connection.execute(
                "SELECT kind FROM public.backup_history WHERE run_id = 'old__1'").fetchone() == ("backup",)
            with pytest.raises(psycopg.errors.CheckViolation):
                connection.execute("UPDATE public.backup_history SET kind = 'other'")
    finally:
        with small_sandbox.connect() as connection:
            connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_drill_rows_are_their_own_kind(connection):
    backup_run = f"test__{uuid.uuid4()}"
    history.record_running(connection, backup_run, "manual")
    history.record_success(connection, backup_run, {"s3_bucket": "b", "s3_key": "k", "size_bytes": 1,
                                                    "sha256": "00"})
    drill_run = f"supabase_backup_restore_drill:test__{uuid.uuid4()}"
    history.record_running(connection, drill_run, "manual", dag_id="supabase_backup_restore_drill",
                           kind=history.DRILL)
    history.record_details(connection, drill_run, {"comparison": {"differences": []}})
    history.record_drill_success(connection, drill_run, {"s3_bucket": "b", "s3_key": "k",
                                                         "size_bytes": 1, "sha256": "00"},
                                 {"restore": {"statements": 3}})
    latest_backup = history.latest_success(connection)
    latest_drill = history.latest_success(connection, history.DRILL)
    assert latest_backup["run_id"] == backup_run and latest_backup["kind"] == "backup"
    assert latest_drill["run_id"] == drill_run
    assert latest_drill["details"] == {"comparison": {"differences": []}, "restore": {"statements": 3}}
    assert all(row["kind"] == "drill" for row in history.list_history(connection, kind=history.DRILL))
    history.record_failed(connection, drill_run, "compare_figures: public.x differs",
                          trigger="manual", kind=history.DRILL)
    assert history.get_by_run_id(connection, drill_run)["status"] == "failed"


def test_shards_of_a_bucket_report_side_by_side_and_the_page_adds_them_up(connection):
    import sys

    from tests.conftest import PROJECT_ROOT

    if str(PROJECT_ROOT / "plugins") not in sys.path:
        sys.path.append(str(PROJECT_ROOT / "plugins"))
    from supabase_backup_plugin.routes.runs import progress_of

    run_id = f"test__{uuid.uuid4()}"
    history.record_running(connection, run_id, "manual", triggered_by=None)
    history.record_buckets_pending(connection, run_id, ["media", "avatars"])
    history.record_progress(connection, run_id, bucket="media", shard=2, counts={
        "objects_done": 5, "objects_known": 5, "bytes_done": 50, "listing_done": True})
    # Entered as sharded after shard 2 reported: its counts stay, the other shards are pending.
    history.record_buckets_pending(connection, run_id, ["media", "avatars"], {"media": 3})
    history.record_progress(connection, run_id, bucket="media", shard=1, counts={
        "objects_done": 7, "objects_known": 9, "bytes_done": 70, "listing_done": True})
    history.record_progress(connection, run_id, bucket="avatars", counts={
        "objects_done": 1, "objects_known": 2, "bytes_done": 3, "listing_done": True})
    row = history.get_by_run_id(connection, run_id)
    shards = row["progress"]["buckets"]["media"]["shards"]
    assert {number: counts["objects_done"] for number, counts in shards.items()} == {
        "1": 7, "2": 5, "3": 0}
    progress = progress_of(row)
    media = progress.buckets["media"]
    assert (media.objects_done, media.objects_known, media.bytes_done, media.shards,
            media.listing_done) == (12, 14, 120, 3, False)  # shard 3 has not listed yet
    assert (progress.total.objects_done, progress.total.objects_known,
            progress.total.listing_done) == (13, 16, False)
    history.record_progress(connection, run_id, bucket="media", shard=3, counts={
        "objects_done": 1, "objects_known": 1, "bytes_done": 1, "listing_done": True})
    progress = progress_of(history.get_by_run_id(connection, run_id))
    assert progress.total.listing_done and progress.total.objects_done == 14
    assert progress.buckets["avatars"].shards is None


def test_a_retried_tries_reason_is_on_the_running_row(connection):
    run_id = f"test__{uuid.uuid4()}"
    history.record_running(connection, run_id, "manual")
    history.record_progress(connection, run_id, step="listing buckets")
    history.record_retry(connection, run_id, "list_buckets", try_number=1,
                         reason="Storage answered 503 listing buckets")
    history.record_retry(connection, run_id, "export_bucket[2]", try_number=2,
                         reason="Storage answered 503 downloading media/a.png")
    history.record_progress(connection, run_id, step="exporting storage")
    row = history.get_by_run_id(connection, run_id)
    # The row stays running (the retry may succeed) and its progress keeps every report.
    assert row["status"] == "running" and row["error"] is None
    assert row["progress"]["step"] == "exporting storage"
    retries = row["progress"]["retries"]
    assert {key: (value["try_number"], value["error"]) for key, value in retries.items()} == {
        "list_buckets": (1, "Storage answered 503 listing buckets"),
        "export_bucket[2]": (2, "Storage answered 503 downloading media/a.png")}
    assert retries["list_buckets"]["failed_at"]
    history.record_failed(connection, run_id, "list_buckets: gave up", trigger="manual")
    history.record_retry(connection, run_id, "list_buckets", try_number=3, reason="late")
    assert history.get_by_run_id(connection, run_id)["progress"]["retries"]["list_buckets"][
        "try_number"] == 1
