"""What alerts say: the run, the cause from the history row, links to the run and the Backups page."""

from datetime import datetime, timedelta, timezone

import pytest

from supabase_backup.alerts import AlertSettings, is_stale, run_alert, stale_alert
from supabase_backup.errors import ConfigurationError

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=timezone.utc)
ROW = {"id": 42, "status": "incomplete", "trigger": "scheduled", "triggered_by": None,
       "started_at": NOW - timedelta(hours=1), "s3_bucket": "b", "s3_key": "p/backup.zip",
       "error": "1 object(s) could not be read and are not in the verified archive"}


def test_an_incomplete_run_names_its_cause_archive_and_links():
    alert = run_alert(kind="backup", dag_id="supabase_backup", run_id="scheduled__2026-11-28T03:00:00+00:00",
                      row=ROW, base_url="https://af.example.com", failed_tasks=["record_history"])
    assert alert.subject == "[supabase-backup] Backup INCOMPLETE: scheduled__2026-11-28T03:00:00+00:00"
    assert f"Cause: {ROW['error']}" in alert.text and "Archive: s3://b/p/backup.zip" in alert.text
    assert ("https://af.example.com/dags/supabase_backup/runs/"
            "scheduled__2026-11-28T03%3A00%3A00%2B00%3A00") in alert.text
    assert "https://af.example.com/backup/ui" in alert.text
    assert "&lt;" in run_alert(kind="backup", dag_id="d", run_id="r", row={**ROW, "error": "<b>"},
                               base_url="x").html()


def test_a_failed_drill_and_a_failed_retention_after_a_verified_backup():
    drill = run_alert(kind="drill", dag_id="supabase_backup_restore_drill", run_id="r1",
                      row={**ROW, "status": "failed", "error": "row counts differ: public.t"},
                      base_url="https://af")
    assert drill.subject.startswith("[supabase-backup] Restore drill FAILED")
    assert "Cause: row counts differ: public.t" in drill.text
    retention = run_alert(kind="backup", dag_id="supabase_backup", run_id="r2",
                          row={**ROW, "status": "success", "error": None}, base_url="https://af",
                          failed_tasks=["apply_retention"],
                          task_error="apply_retention: Retention could not delete s3://b/k")
    assert retention.subject.startswith("[supabase-backup] Backup verified, but a later task FAILED")
    assert "Cause: apply_retention: Retention could not delete" in retention.text


def test_staleness():
    latest = {**ROW, "status": "success", "run_id": "old", "finished_at": NOW - timedelta(hours=30)}
    assert is_stale(latest, 26, NOW) and not is_stale(latest, 31, NOW) and is_stale(None, 26, NOW)
    text = stale_alert(latest=latest, max_age_hours=26, now=NOW, base_url="https://af",
                       dag_id="supabase_backup").text
    assert "30.0 hours ago, more than the 26 hours allowed" in text and "run old" in text
    assert "no verified successful backup at all" in stale_alert(
        latest=None, max_age_hours=26, now=NOW, base_url="https://af", dag_id="d").text


@pytest.mark.parametrize("name, value", [("supabase_backup_alert_email", "not-an-address"),
                                         ("supabase_backup_max_backup_age_hours", "-3"),
                                         ("supabase_backup_max_backup_age_hours", "soon")])
def test_bad_alert_variables_are_named(name, value):
    with pytest.raises(ConfigurationError, match=name):
        AlertSettings.from_variables(lambda n, d: value if n == name else d, None)


def test_settings_defaults_and_base_url_fallback():
    settings = AlertSettings.from_variables(lambda n, d: d, "http://airflow:8080/")
    assert not settings.configured and settings.base_url == "http://airflow:8080"
    assert settings.smtp_conn_id == "smtp_default" and settings.max_backup_age_hours is None
