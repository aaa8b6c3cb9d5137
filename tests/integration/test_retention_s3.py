"""Retention against real Postgres (the migration applied to a private database of the sandbox's
cluster, so no other test's history is touched) and the sandbox's S3 server: archives go, rows
stay marked, archives in use stay; and `supabase-backup prune --dry-run` says why."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from supabase_backup.records import history
from supabase_backup.destination import retention
from supabase_backup.retention_rules import RetentionRules
from tests.conftest import PROJECT_ROOT
from tests.sandbox_fixtures import MIGRATION

NOW = datetime.now(timezone.utc)


@pytest.fixture
def history_db(small_sandbox):
    name = f"retention_{uuid.uuid4().hex[:8]}"
    with small_sandbox.connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(["psql", "--quiet", "-v", "ON_ERROR_STOP=1", "-f", str(MIGRATION)],
                   env=small_sandbox.libpq_environment(name), check=True, capture_output=True)
    with small_sandbox.connect(name) as connection:
        yield name, connection
    with small_sandbox.connect() as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def seed(connection, s3, bucket, prefix):
    """Twelve daily successful backups (newest today 03:00 UTC), two on the newest day, plus rows
    that never count: a failed run, an incomplete archive, a running drill of backup #9."""
    rows = {}
    base = NOW.replace(hour=3, minute=0, second=0, microsecond=0)
    moments = [base + timedelta(hours=9)] if base + timedelta(hours=9) < NOW else []
    moments += [base - timedelta(days=day) for day in range(12)]
    for number, started in enumerate(moments, 1):
        key = f"{prefix}backup-{started:%Y-%m-%d-%H-%M}-UTC.zip"
        s3.put_object(Bucket=bucket, Key=key, Body=b"archive %d" % number)
        rows[number] = connection.execute(
            "INSERT INTO public.backup_history (run_id, status, trigger, started_at, finished_at, "
            "s3_bucket, s3_key, size_bytes) VALUES (%s, 'success', 'scheduled', %s, %s, %s, %s, 9)"
            " RETURNING id", (f"scheduled__{started.isoformat()}", started,
                              started + timedelta(minutes=5), bucket, key)).fetchone()[0]
    incomplete_key = f"{prefix}incomplete.zip"
    s3.put_object(Bucket=bucket, Key=incomplete_key, Body=b"incomplete")
    connection.execute(
        "INSERT INTO public.backup_history (run_id, status, trigger, started_at, s3_bucket, s3_key)"
        " VALUES ('old-incomplete', 'incomplete', 'manual', %s, %s, %s), "
        "('old-failed', 'failed', 'manual', %s, NULL, NULL)",
        (NOW - timedelta(days=40), bucket, incomplete_key, NOW - timedelta(days=41)))
    return rows, moments, incomplete_key


def keys_in(s3, bucket, prefix):
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {item["Key"] for item in listing.get("Contents", [])}


def test_retention_deletes_from_s3_marks_rows_and_spares_archives_in_use(small_sandbox, history_db):
    name, connection = history_db
    s3, bucket = small_sandbox.s3(), small_sandbox.settings["s3_bucket"]
    prefix = f"retention-test-{uuid.uuid4().hex[:6]}/"
    rows, moments, incomplete_key = seed(connection, s3, bucket, prefix)
    count = len(rows)
    newest_first = [rows[number] for number in range(1, count + 1)]
    drill_archive = newest_first[-4]
    downloaded = newest_first[-3]
    old_download = newest_first[-2]
    connection.execute(
        "INSERT INTO public.backup_history (run_id, kind, status, trigger, s3_bucket, s3_key) "
        "SELECT 'drill-1', 'drill', 'running', 'manual', s3_bucket, s3_key "
        "FROM public.backup_history WHERE id = %s", (drill_archive,))
    connection.execute(
        "INSERT INTO public.backup_downloads (history_id, run_id, s3_bucket, s3_key, requested_by, "
        "requested_at, expires_at) SELECT id, run_id, s3_bucket, s3_key, 'operator', "
        "now() - interval '5 minutes', now() + interval '10 minutes' "
        "FROM public.backup_history WHERE id = %s", (downloaded,))
    connection.execute(
        "INSERT INTO public.backup_downloads (history_id, run_id, s3_bucket, s3_key, requested_by, "
        "requested_at, expires_at) SELECT id, run_id, s3_bucket, s3_key, 'operator', "
        "now() - interval '20 minutes', now() + interval '10 minutes' "
        "FROM public.backup_history WHERE id = %s", (old_download,))

    rules = RetentionRules.parse({"keep_daily": 3})
    result = retention.apply_retention(connection, s3, rules)

    # keep_daily 3: the newest of each of the 3 newest days; plus what is in use.
    by_day = {}
    for number, started in enumerate(moments, 1):
        by_day.setdefault(started.date(), rows[number])
    expected_kept = set(list(by_day.values())[:3]) | {drill_archive, downloaded}
    assert set(result["kept"]) == expected_kept
    assert set(result["deleted"]) == set(newest_first) - expected_kept
    assert old_download in result["deleted"]  # minted 20 minutes ago: no longer in use
    remaining = keys_in(s3, bucket, prefix)
    marked = dict(connection.execute(
        "SELECT id, deleted_by FROM public.backup_history WHERE deleted_at IS NOT NULL").fetchall())
    assert set(marked) == set(result["deleted"])
    assert set(marked.values()) == {"retention keep_daily=3"}
    for history_id in newest_first:
        key = connection.execute("SELECT s3_key FROM public.backup_history WHERE id = %s",
                                 (history_id,)).fetchone()[0]
        assert (key in remaining) == (history_id in expected_kept), history_id
    assert incomplete_key in remaining  # never a candidate
    assert connection.execute("SELECT count(*) FROM public.backup_history").fetchone()[0] == count + 3

    # Run again: nothing more goes (deleted rows no longer count), and it is idempotent.
    again = retention.apply_retention(connection, s3, rules)
    assert again["deleted"] == [] and set(again["kept"]) == expected_kept


def test_prune_dry_run_shows_why_and_deletes_nothing(small_sandbox, history_db):
    name, connection = history_db
    s3, bucket = small_sandbox.s3(), small_sandbox.settings["s3_bucket"]
    prefix = f"prune-test-{uuid.uuid4().hex[:6]}/"
    seed(connection, s3, bucket, prefix)
    before = keys_in(s3, bucket, prefix)
    settings = small_sandbox.settings
    url = f"postgresql://{settings['pg_user']}@{settings['pg_host']}:{settings['pg_port']}/{name}"
    environment = {**os.environ, "PGPASSWORD": settings["pg_password"],
                   "PYTHONPATH": str(PROJECT_ROOT / "include")}
    result = subprocess.run(
        [sys.executable, "-m", "supabase_backup", "prune", "--database-url", url,
         "--keep-daily", "2", "--keep-weekly", "2", "--dry-run"],
        capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("retention keep_daily=2 keep_weekly=2 (periods in UTC);")
    assert "would be deleted" in lines[0]
    assert "(newest successful backup, daily " in result.stdout
    assert "would delete" in result.stdout and "no rule keeps it" in result.stdout
    assert "[parts not recorded]  (newest successful backup" in result.stdout  # rows seeded bare
    assert settings["pg_password"] not in result.stdout + result.stderr
    assert keys_in(s3, bucket, prefix) == before
    assert connection.execute("SELECT count(*) FROM public.backup_history "
                              "WHERE deleted_at IS NOT NULL").fetchone()[0] == 0
    print(result.stdout)

    refused = subprocess.run(
        [sys.executable, "-m", "supabase_backup", "prune", "--keep-daily", "2", "--dry-run",
         "--database-url", url.replace("@", f":{settings['pg_password']}@")],
        capture_output=True, text=True, env=environment)
    assert refused.returncode == 3 and "PGPASSWORD" in refused.stderr
    assert settings["pg_password"] not in refused.stderr


# --- the last copy of each part, and backups a drill found damaged (issue 19, items 7 and 9) -------


class PrivateDatabase:
    """DatabaseSettings' one method the drill's outcome uses, on the test's private database."""

    def __init__(self, sandbox, name):
        self.sandbox, self.name = sandbox, name

    def connect(self, autocommit=True):
        return self.sandbox.connect(self.name, autocommit=autocommit)


def record_backup(private, s3, bucket, prefix, started, *, database=True, auth=True,
                  buckets=("avatars", "docs")):
    """A verified backup written the way the DAG's finish step writes it, parts and all."""
    from supabase_backup.backup import outcome

    _, connection, settings = private
    run_id = f"scheduled__{started.isoformat()}"
    key = f"{prefix}backup-{started:%Y-%m-%d-%H-%M}-UTC.zip"
    s3.put_object(Bucket=bucket, Key=key, Body=b"archive")
    history.record_running(connection, run_id, "scheduled")
    connection.execute("UPDATE public.backup_history SET started_at = %s WHERE run_id = %s",
                       (started, run_id))
    summaries = {
        "archive": {"storage_buckets": len(buckets) if buckets is not None else None},
        "database": {"included": True, "bytes": 10} if database else None,
        "auth": {"included": True, "users": 2} if auth else None,
        "storage": {"buckets": [{"bucket": name} for name in buckets], "objects": 1, "bytes": 1}
        if buckets is not None else None,
    }
    verified = {"s3_bucket": bucket, "s3_key": key, "bytes": 7, "sha256": "0" * 64}
    outcome.finish_run(settings, run_id=run_id, trigger="scheduled",
                       triggered_by=None, verified=verified, summaries=summaries, failed_tasks=[])
    return history.get_by_run_id(connection, run_id)


@pytest.fixture
def private(small_sandbox, history_db):
    name, connection = history_db
    yield name, connection, PrivateDatabase(small_sandbox, name)


def test_keep_last_one_never_deletes_the_last_archive_holding_storage(small_sandbox, private):
    name, connection, _ = private
    s3, bucket = small_sandbox.s3(), small_sandbox.settings["s3_bucket"]
    prefix = f"parts-test-{uuid.uuid4().hex[:6]}/"
    base = NOW.replace(microsecond=0) - timedelta(days=5)
    oldest = record_backup(private, s3, bucket, prefix, base)
    with_storage = record_backup(private, s3, bucket, prefix, base + timedelta(days=1))
    only_avatars = record_backup(private, s3, bucket, prefix, base + timedelta(days=2),
                                 database=False, auth=False, buckets=("avatars",))
    newest = record_backup(private, s3, bucket, prefix, base + timedelta(days=3), buckets=None)
    assert newest["details"]["parts"] == ["database", "auth"]
    assert with_storage["details"]["parts"] == ["database", "auth", "storage/avatars",
                                                "storage/docs"]

    result = retention.apply_retention(connection, s3, RetentionRules.parse({"keep_last": 1}))

    assert set(result["kept"]) == {newest["id"], only_avatars["id"], with_storage["id"]}
    assert result["deleted"] == [oldest["id"]]
    reasons = {d.backup.history_id: d.reasons for d in result["decisions"]}
    assert reasons[only_avatars["id"]] == ["last copy of storage/avatars"]
    assert reasons[with_storage["id"]] == ["last copy of storage/docs"]
    assert keys_in(s3, bucket, prefix) == {newest["s3_key"], only_avatars["s3_key"],
                                           with_storage["s3_key"]}


def test_a_row_from_before_parts_were_recorded_is_kept_while_it_may_hold_the_last_copy(
        small_sandbox, private):
    name, connection, _ = private
    s3, bucket = small_sandbox.s3(), small_sandbox.settings["s3_bucket"]
    prefix = f"old-rows-test-{uuid.uuid4().hex[:6]}/"
    rows, moments, _ = seed(connection, s3, bucket, prefix)  # rows without details.parts
    # Newer than every seeded row whatever the time of day (seed's newest is today 03:00 UTC,
    # which is later than now between midnight and 03:00).
    newest = record_backup(private, s3, bucket, prefix,
                           max(moments).replace(microsecond=0) + timedelta(hours=1), buckets=None)
    result = retention.apply_retention(connection, s3, RetentionRules.parse({"keep_last": 1}),
                                       dry_run=True)
    reasons = {d.backup.history_id: d.reasons for d in result["decisions"] if d.keep}
    assert reasons == {newest["id"]: ["newest successful backup", "last",
                                      "last copy of database, auth"],
                       rows[1]: ["newest archive whose parts were not recorded"]}


def test_a_drill_that_finds_the_archive_damaged_marks_the_backup(small_sandbox, private):
    from supabase_backup.errors import DrillFailed, VerificationFailed
    from supabase_backup.restore import drill

    name, connection, database = private
    s3, bucket = small_sandbox.s3(), small_sandbox.settings["s3_bucket"]
    prefix = f"damage-test-{uuid.uuid4().hex[:6]}/"
    base = NOW.replace(microsecond=0) - timedelta(hours=3)
    older = record_backup(private, s3, bucket, prefix, base)
    newest = record_backup(private, s3, bucket, prefix, base + timedelta(hours=1))
    assert history.latest_verified_backup(connection)["run_id"] == newest["run_id"]

    def drill_of(backup_run_id, dag_run_id):
        plan = drill.plan_drill(SimpleNamespace(database=database), dag_run_id=dag_run_id,
                                trigger="manual", started_at=NOW.isoformat(),
                                backup_run_id=backup_run_id)
        return plan

    plan = drill_of(None, "manual__first")
    assert plan.backup_run_id == newest["run_id"]
    damage = VerificationFailed(f"s3://{bucket}/{newest['s3_key']}",
                                "damaged member: Bad CRC-32 for file 'db/backup.sql'")
    drill.record_failure(database, run_id=plan.run_id, trigger="manual", triggered_by=None,
                         message=f"verify_backup: {damage}", step="verify_backup", error=damage)
    with pytest.raises(DrillFailed, match="Bad CRC-32"):
        drill.finish_drill(database, run_id=plan.run_id, trigger="manual", triggered_by=None,
                           plan=plan.to_dict(), verified=None, compared=None,
                           failed_tasks=["verify_backup"])

    marked = history.get_by_run_id(connection, newest["run_id"])
    assert marked["status"] == "success" and marked["damaged_by"] == plan.run_id
    assert marked["damage"] == f"verify_backup: {damage}" and marked["damaged_at"] is not None
    drill_row = history.get_by_run_id(connection, plan.run_id)
    assert drill_row["details"]["archive_damage"]["backup_run_id"] == newest["run_id"]
    # Staleness and the next drill count only backups not found damaged; retention counts it as
    # no copy, so the older archive stays as the last copy of everything.
    assert history.latest_verified_backup(connection)["run_id"] == older["run_id"]
    assert drill_of(None, "manual__second").backup_run_id == older["run_id"]
    result = retention.apply_retention(connection, s3, RetentionRules.parse({"keep_last": 1}),
                                       dry_run=True)
    assert set(result["kept"]) == {newest["id"], older["id"]}

    # A drill whose own resources failed (not the archive) marks nothing.
    plan = drill_of(older["run_id"], "manual__third")
    drill.record_failure(database, run_id=plan.run_id, trigger="manual", triggered_by=None,
                         message="create_scratch_database: connection refused",
                         step="create_scratch_database", error=OSError("connection refused"))
    with pytest.raises(DrillFailed):
        drill.finish_drill(database, run_id=plan.run_id, trigger="manual", triggered_by=None,
                           plan=plan.to_dict(), verified={"members_checked": 3}, compared=None,
                           failed_tasks=["create_scratch_database"])
    assert history.get_by_run_id(connection, older["run_id"])["damaged_at"] is None

    # Drilled again on purpose and every figure matched: the mark goes.
    plan = drill_of(newest["run_id"], "manual__fourth")
    drill.finish_drill(database, run_id=plan.run_id, trigger="manual", triggered_by=None,
                       plan=plan.to_dict(), verified={"members_checked": 3},
                       compared={"differences": [], "tables_compared": 2, "rows_compared": 9},
                       failed_tasks=[])
    assert history.get_by_run_id(connection, newest["run_id"])["damaged_at"] is None
    assert history.latest_verified_backup(connection)["run_id"] == newest["run_id"]
