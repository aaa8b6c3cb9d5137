"""supabase_backup.airflow: connections and Variables into plain settings, and a DAG run's facts."""

import json
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from supabase_backup.airflow import backup_run
from supabase_backup.airflow import dag_run as dag_run_facts
from supabase_backup.airflow import connections
from supabase_backup.config import BackupSettings, RunPlan
from supabase_backup.errors import ConfigurationError


def dag_run(run_type="manual", conf=None, user=None):
    return SimpleNamespace(run_id="manual__1", run_type=run_type, conf=conf,
                           triggering_user_name=user, logical_date=None,
                           start_date=datetime(2026, 11, 25, 3, 4, tzinfo=timezone.utc),
                           run_after=None)


@pytest.mark.parametrize("run_type, conf, expected", [
    ("scheduled", {}, "scheduled"),
    ("manual", None, "manual"),
    ("manual", {"trigger": "api"}, "api"),
    # The Backups page's button: the row keeps "api" (its CHECK constraint's value).
    ("manual", {"trigger": "backups_page"}, "api"),
    ("asset_triggered", {}, "asset"),
])
def test_trigger_of(run_type, conf, expected):
    assert dag_run_facts.trigger_of(dag_run(run_type, conf)) == expected


@pytest.mark.parametrize("connection, url", [
    ({"conn_type": "generic", "host": "http://127.0.0.1:54321/", "password": "k"},
     "http://127.0.0.1:54321"),
    ({"conn_type": "https", "host": "abcd.supabase.co", "password": "k"}, "https://abcd.supabase.co"),
    ({"conn_type": "generic", "host": "abcd.supabase.co",
      "extra": {"service_role_key": "k"}}, "https://abcd.supabase.co"),
])
def test_api_settings_from_the_connection(monkeypatch, connection, url):
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_API", json.dumps(connection))
    api = connections.api_settings()
    assert (api.url, api.key) == (url, "k")


def test_api_connection_without_a_key_says_what_to_set(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_API", json.dumps(
        {"conn_type": "generic", "host": "https://abcd.supabase.co"}))
    with pytest.raises(ConfigurationError, match="service role key"):
        connections.api_settings()


def test_database_settings_from_a_session_pooler_uri(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_DB",
                       "postgresql://postgres.abcd:p%40ss@aws-0-eu.pooler.supabase.com:5432/postgres"
                       "?sslmode=require")
    database = connections.database_settings()
    assert (database.host, database.port, database.user, database.password, database.sslmode) == (
        "aws-0-eu.pooler.supabase.com", 5432, "postgres.abcd", "p@ss", "require")


def test_the_plan_is_resolved_once_from_variables_and_params(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_SUPABASE_BACKUP_S3_BUCKET", "archives")
    monkeypatch.setenv("AIRFLOW_VAR_SUPABASE_BACKUP_BUCKETS", "a,b")
    monkeypatch.setenv("AIRFLOW_VAR_SUPABASE_BACKUP_STAGING_ROOT", "s3://stage/here")
    plan = backup_run.plan_run(dag_run(conf={"trigger": "api"}, user="ops"),
                                      {"force": True, "buckets": None, "include_auth": False})
    assert (plan.trigger, plan.triggered_by, plan.buckets, plan.forced) == ("api", "ops", ("a", "b"), True)
    assert (plan.include_auth, plan.settings.staging_root, plan.settings.s3_bucket) == (
        False, "s3://stage/here", "archives")
    assert plan.started_at == "2026-11-25T03:04:00+00:00"
    # The plan travels as JSON between tasks and comes back equal; it holds no secret.
    assert RunPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    # A Variable edited after planning does not change the plan a later task receives.
    monkeypatch.setenv("AIRFLOW_VAR_SUPABASE_BACKUP_STAGING_ROOT", "file:///elsewhere")
    assert RunPlan.from_dict(plan.to_dict()).settings.staging_root == "s3://stage/here"


def test_permanent_errors_fail_the_task_at_once_and_others_may_retry():
    from airflow.sdk.exceptions import AirflowFailException

    from supabase_backup.errors import ApiTransientError, MigrationMissing

    plan = RunPlan(BackupSettings(s3_bucket="b"), run_id="r", trigger="manual",
                   started_at="2026-11-25T03:04:00+00:00")

    def missing_migration(plan, resources):
        raise MigrationMissing("public.backup_history")

    def flaky(plan, resources):
        raise ApiTransientError("GET", "/x", 503, 503, None, "try later")

    with pytest.raises(AirflowFailException, match="001_backup_system.sql"):
        backup_run.run_step(missing_migration, plan.to_dict())
    with pytest.raises(ApiTransientError):
        backup_run.run_step(flaky, plan.to_dict())


def test_scratch_database_settings_come_from_the_drill_connection(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_SUPABASE_BACKUP_DRILL_DB", raising=False)
    with pytest.raises(ConfigurationError, match="AIRFLOW_CONN_SUPABASE_BACKUP_DRILL_DB"):
        connections.scratch_database_settings()
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_BACKUP_DRILL_DB",
                       "postgresql://drill:s%3Fcret@drill-host:6543/maintenance")
    server = connections.scratch_database_settings()
    assert (server.host, server.port, server.user, server.password, server.dbname) == (
        "drill-host", 6543, "drill", "s?cret", "maintenance")
    assert "s?cret" not in server.describe() and "s?cret" not in repr(server)


# --- the staleness check's failure callback ------------------------------------------------------

def staleness_failure(monkeypatch, exception):
    """Run the check task's failure callback with ``exception``; the alerts it would send."""
    from supabase_backup.airflow import staleness
    from supabase_backup.alerts.settings import AlertSettings

    sent = []
    monkeypatch.setattr(staleness, "read_alert_settings", lambda staleness: AlertSettings(
        email_to=("ops@example.com",), base_url="https://af.example.com"))
    monkeypatch.setattr(staleness, "send_alert",
                        lambda alert, settings, context: sent.append(alert) or ["email"])
    monkeypatch.setattr(staleness, "connection_secrets", lambda: ["s3cr3t-password"])
    staleness.alert_check_failure({
        "exception": exception,
        "ti": SimpleNamespace(task_id="check_backup_age"),
        "dag_run": SimpleNamespace(dag_id="supabase_backup_staleness", run_id="scheduled__1"),
    })
    return sent


def test_a_check_that_cannot_run_alerts_with_its_cause(monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from supabase_backup.alerts.settings import AlertSettings

    with pytest.raises(ConfigurationError) as mistyped:
        AlertSettings.from_variables(
            lambda n, d: "abc" if n == "supabase_backup_max_backup_age_hours" else d, None)
    sent = staleness_failure(monkeypatch, AirflowFailException(str(mistyped.value)))
    assert [alert.subject for alert in sent] == [
        "[supabase-backup] Staleness check FAILED: scheduled__1"]
    assert "Cause: AirflowFailException: Configuration problem: supabase_backup_max_backup_age_" \
           "hours must be a positive, finite number of hours, not 'abc'" in sent[0].text
    assert "https://af.example.com/dags/supabase_backup_staleness/runs/scheduled__1" in sent[0].text
    unreachable = staleness_failure(monkeypatch, OSError("no route to db: s3cr3t-password"))
    assert "Cause: OSError: no route to db: ***" in unreachable[0].text


def test_a_stale_project_is_not_alerted_twice(monkeypatch):
    from supabase_backup.airflow import staleness

    stale = staleness.BackupsStale("[supabase-backup] STALE: no verified backup in 26 h (alert "
                                   "sent: email)")
    assert staleness_failure(monkeypatch, stale) == []


def deployment_for(monkeypatch, url: str, explicit: str | None = None) -> str:
    if explicit is None:
        monkeypatch.delenv(dag_run_facts.DEPLOYMENT_ENVIRONMENT_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(dag_run_facts.DEPLOYMENT_ENVIRONMENT_VARIABLE, explicit)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", url)
    # What Airflow 3's task supervisor leaves a task: no metadata database to identify.
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")
    return dag_run_facts.deployment_id()


def test_the_deployment_is_the_api_server_its_tasks_report_to(monkeypatch):
    first = deployment_for(monkeypatch, "http://ops:hunter2@Airflow-API:8080/execution/")
    assert first.startswith("airflow-") and "hunter2" not in first and "ops" not in first
    # The same server spelled another way, or with other credentials, is the same deployment.
    assert deployment_for(monkeypatch, "http://airflow-api:8080/execution") == first
    assert deployment_for(monkeypatch, "http://airflow-api:8081/execution/") != first
    assert deployment_for(monkeypatch, "http://airflow-api:8080/execution/",
                          explicit=" eu-prod ") == "eu-prod"
