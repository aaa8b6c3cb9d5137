"""The one place where Airflow meets the library.

Only this module (besides ``dags/`` and ``plugins/``) imports ``airflow``; an import-linter contract
in ``pyproject.toml`` keeps it so. It reads Airflow connections, Variables and hooks and turns them
into the library's plain settings objects (``BackupSettings``, ``RunPlan``, ``DatabaseSettings``,
``ApiSettings``, a boto3 S3 client, a staging area), and it turns a DAG run's facts into plain
values. The DAG's tasks and the Backups plugin both go through it; the library's task bodies
(``steps``) take what it builds as arguments and know nothing of Airflow.

Everything here runs when a task runs (or a plugin route answers), never while the DAG file is
parsed: parsing must not read a Variable or open a connection.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from datetime import datetime, timezone
from typing import Any, Callable

from supabase_backup import drill, steps
from supabase_backup.api_client import ApiSettings
from supabase_backup.config import (
    API_CONN_ID,
    AWS_CONN_ID,
    DAG_ID,
    DATABASE_CONN_ID,
    DRILL_CONN_ID,
    BackupSettings,
    RunPlan,
)
from supabase_backup.database import DatabaseSettings
from supabase_backup.errors import BackupError, ConfigurationError
from supabase_backup.staging import StagingArea

log = logging.getLogger(__name__)


# --- connections and Variables --------------------------------------------------------------------


def read_backup_settings() -> BackupSettings:
    """The Variables, validated (a missing or wrong one is a ConfigurationError naming it)."""
    from airflow.sdk import Variable

    return BackupSettings.from_variables(
        lambda name, default: Variable.get(name, default=default)
    )


def database_settings(conn_id: str = DATABASE_CONN_ID) -> DatabaseSettings:
    """libpq parameters from the Postgres connection. Needs no Variable, so a run that fails on a
    missing Variable can still record why in backup_history."""
    from airflow.sdk import BaseHook

    return DatabaseSettings.from_connection(BaseHook.get_connection(conn_id))


def scratch_database_settings(conn_id: str = DRILL_CONN_ID) -> DatabaseSettings:
    """The server the restore drill creates its scratch databases on (the connection's schema is
    the database it connects to first, ``postgres`` by default). The connection's user needs
    CREATEDB, and CREATEROLE when the backup names roles the server lacks."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise ConfigurationError(
            f"the restore drill needs the Airflow connection {conn_id}: a Postgres server it may "
            "create and drop databases on (never the production database), e.g. "
            f"AIRFLOW_CONN_{conn_id.upper()}='postgresql://drill:…@drill-host:5432/postgres'"
        ) from None
    return DatabaseSettings.from_connection(connection)


def api_settings(conn_id: str = API_CONN_ID) -> ApiSettings:
    """The project URL (host) and service key (password) from the ``supabase_api`` connection."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    host = (connection.host or "").rstrip("/")
    if not host:
        raise ConfigurationError(
            f"connection {conn_id} has no host: set it to the project URL, "
            "e.g. https://<project-ref>.supabase.co"
        )
    if "://" not in host:
        scheme = connection.conn_type if connection.conn_type in ("http", "https") else "https"
        host = f"{scheme}://{host}" + (f":{connection.port}" if connection.port else "")
    key = connection.password or (connection.extra_dejson or {}).get("service_role_key")
    if not key:
        raise ConfigurationError(
            f"connection {conn_id} has no password: set it to the service role key (a "
            "service_role JWT or an sb_secret_… key)"
        )
    return ApiSettings(url=host, key=key)


def s3_client(aws_conn_id: str = AWS_CONN_ID):
    """A boto3 S3 client from the amazon provider's S3Hook: credentials, region and endpoint come
    from the Airflow connection."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id).get_conn()


def staging_area(plan: RunPlan) -> StagingArea:
    """The run's staging folder. An Airflow ObjectStoragePath, so an ``s3://`` root reaches the
    store with the ``aws_default`` connection's credentials on every worker."""
    from airflow.sdk import ObjectStoragePath

    return StagingArea.for_run(ObjectStoragePath(plan.staging_root.rstrip("/")), plan.run_id)


def connection_secrets() -> list[str]:
    """Passwords and keys of our connections, so a failure message can be scrubbed of them."""
    secrets = []
    for read_secret in (lambda: database_settings().password, lambda: api_settings().key):
        try:
            secrets.append(read_secret() or "")
        except Exception:  # noqa: BLE001 - scrubbing must never mask the original failure
            pass
    return [secret for secret in secrets if secret]


def airflow_version() -> str:
    import airflow

    return airflow.__version__


class TaskResources:
    """What one task of a run may need, resolved from Airflow on first use (``steps.RunResources``).

    Connections are resolved lazily: a task that needs only the database never reads the API
    connection, so its failure to resolve cannot fail the wrong task.
    """

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan

    @functools.cached_property
    def database(self) -> DatabaseSettings:
        return database_settings(self.plan.database_conn_id)

    @functools.cached_property
    def api(self) -> ApiSettings:
        return api_settings(self.plan.api_conn_id)

    @functools.cached_property
    def s3(self):
        return s3_client(self.plan.aws_conn_id)

    @functools.cached_property
    def staging(self) -> StagingArea:
        return staging_area(self.plan)

    def tool_versions(self) -> dict[str, str]:
        return {"airflow": airflow_version()}


# --- the DAG run ----------------------------------------------------------------------------------


def trigger_of(dag_run: Any) -> str:
    """scheduled | manual | api | asset. A run started through the Backups plugin or a REST client
    that passes ``{"trigger": "api"}`` in its conf counts as api; every other manual run (the UI's
    Trigger button calls the same REST API) is manual."""
    run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
    if run_type == "scheduled":
        return "scheduled"
    if run_type == "asset_triggered":
        return "asset"
    if (dag_run.conf or {}).get("trigger") == "api":
        return "api"
    return "manual"


def triggered_by(dag_run: Any) -> str | None:
    """The Airflow user who triggered the run (None for scheduled runs)."""
    return getattr(dag_run, "triggering_user_name", None) or None


def plan_run(dag_run: Any, params: dict) -> RunPlan:
    """Resolve the Variables and the trigger form's Params once, for the whole run."""
    started = dag_run.start_date or dag_run.run_after or datetime.now(timezone.utc)
    return RunPlan.create(
        read_backup_settings(),
        run_id=dag_run.run_id,
        trigger=trigger_of(dag_run),
        triggered_by=triggered_by(dag_run),
        started_at=started.astimezone(timezone.utc).isoformat(),
        logical_date=dag_run.logical_date.isoformat() if dag_run.logical_date else None,
        params=dict(params),
        attempt=attempt_of(dag_run),
    )


def attempt_of(dag_run: Any) -> int:
    """How many times the run was cleared: a cleared run's outcome replaces the earlier one's."""
    return int(getattr(dag_run, "clear_number", 0) or 0)


@contextlib.contextmanager
def failing_fast():
    """Permanent errors (a configuration error, a missing migration, a missing or too old pg_dump,
    a refused key) fail the task at once: retrying them only keeps the run ``running`` for minutes.
    Other errors are raised as they are, for the task's retries."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except BackupError as error:
        if error.permanent:
            raise AirflowFailException(str(error)) from error
        raise


def run_step(step: Callable[..., Any], plan: dict | RunPlan, *args: Any, **kwargs: Any) -> Any:
    """Run a library step with this run's plan and resources."""
    run_plan = RunPlan.from_dict(plan)
    with failing_fast():
        return step(run_plan, TaskResources(run_plan), *args, **kwargs)


def start_run(dag_run: Any, params: dict) -> dict | None:
    """The first task: make the plan, record the run; the plan for every later task, or None when
    backups are disabled (the run is recorded as skipped and stops)."""
    with failing_fast():
        plan = plan_run(dag_run, params)
        started = steps.start_run(plan, TaskResources(plan), run_has_ended=dag_run_has_ended)
        return plan.to_dict() if started else None


def dag_run_has_ended(run_id: str, dag_id: str = DAG_ID) -> bool:
    """Whether Airflow says the DAG run is over (or no longer knows it), asked from a task."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    try:
        state = RuntimeTaskInstance.get_dagrun_state(dag_id, run_id)
    except Exception:  # noqa: BLE001 - a run Airflow no longer has cannot still be running
        log.info("Airflow has no run %s of %s: treating it as ended", run_id, dag_id)
        return True
    return str(getattr(state, "value", state)) not in ("queued", "running")


def failed_task_ids(ti: Any, run_id: str) -> list[str]:
    """Tasks of the run that failed themselves (not those that only could not run because of them)."""
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
    return sorted(task_id for task_id, state in states.items() if state == "failed")


def on_task_failure(context: dict) -> None:
    """Every task's failure callback: put the reason on the history row as soon as it happens. It
    never raises: the run's last task writes the row again anyway."""
    try:
        dag_run = context["dag_run"]
        steps.record_task_failure(
            database_settings(), run_id=context["run_id"], task_id=context["ti"].task_id,
            error=context.get("exception"), trigger=trigger_of(dag_run),
            triggered_by=triggered_by(dag_run), secrets=connection_secrets(),
            attempt=attempt_of(dag_run),
        )
    except Exception:  # noqa: BLE001
        log.exception("Could not record the failure in backup_history")


def record_history(plan: dict | None, verified: dict | None, summaries: dict, *, ti: Any,
                   dag_run: Any) -> dict:
    """The final history row. Success exactly when the archive was uploaded and verified; otherwise
    a failed row, and the task fails so the DAG run does."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return steps.finish_run(
            database_settings(RunPlan.from_dict(plan).database_conn_id if plan else DATABASE_CONN_ID),
            run_id=dag_run.run_id, trigger=trigger_of(dag_run), triggered_by=triggered_by(dag_run),
            verified=verified, summaries=summaries,
            failed_tasks=failed_task_ids(ti, dag_run.run_id), attempt=attempt_of(dag_run),
        )
    except steps.RunFailed as failure:  # the row says why: retrying cannot change the outcome
        raise AirflowFailException(str(failure)) from None


# --- the restore drill ----------------------------------------------------------------------------


class DrillTaskResources:
    """``drill.DrillResources`` from Airflow, resolved on first use."""

    def __init__(self, database_conn_id: str = DATABASE_CONN_ID, drill_conn_id: str = DRILL_CONN_ID,
                 aws_conn_id: str = AWS_CONN_ID) -> None:
        self.conn_ids = {"database_conn_id": database_conn_id, "drill_conn_id": drill_conn_id,
                         "aws_conn_id": aws_conn_id}

    @functools.cached_property
    def database(self) -> DatabaseSettings:
        return database_settings(self.conn_ids["database_conn_id"])

    @functools.cached_property
    def drill_server(self) -> DatabaseSettings:
        return scratch_database_settings(self.conn_ids["drill_conn_id"])

    @functools.cached_property
    def s3(self):
        return s3_client(self.conn_ids["aws_conn_id"])

    def secrets(self) -> list[str]:
        found = connection_secrets()
        try:
            found.append(self.drill_server.password or "")
        except Exception:  # noqa: BLE001 - scrubbing must never mask the original failure
            pass
        return [secret for secret in found if secret]


def _record_drill_failure(resources: DrillTaskResources, *, run_id: str, trigger: str,
                          triggered_by: str | None, step_name: str, error: BaseException) -> None:
    try:
        message = steps.scrub(f"{step_name}: {error}", resources.secrets())
        drill.record_failure(resources.database, run_id=run_id, trigger=trigger,
                             triggered_by=triggered_by, message=message)
    except Exception:  # noqa: BLE001 - the original failure is the one to raise
        log.exception("Could not record the drill's failure in backup_history")


def start_drill(dag_run: Any, params: dict) -> dict:
    """The drill's first task: record it, choose the backup, name the scratch database."""
    started = dag_run.start_date or dag_run.run_after or datetime.now(timezone.utc)
    resources = DrillTaskResources()
    trigger = trigger_of(dag_run)
    try:
        with failing_fast():
            plan = drill.plan_drill(
                resources, dag_run_id=dag_run.run_id, trigger=trigger,
                triggered_by=triggered_by(dag_run),
                started_at=started.astimezone(timezone.utc).isoformat(),
                backup_run_id=(params or {}).get("backup_run_id") or None,
                conn_ids=resources.conn_ids)
    except BaseException as error:
        _record_drill_failure(resources, run_id=drill.history_run_id(dag_run.run_id),
                              trigger=trigger, triggered_by=triggered_by(dag_run),
                              step_name="plan_drill", error=error)
        raise
    return plan.to_dict()


def run_drill_step(step: Callable[..., Any], plan: dict, *args: Any) -> Any:
    """Run a drill step; a failure is written on the drill's history row before it is raised."""
    drill_plan = drill.DrillPlan.from_dict(plan)
    resources = DrillTaskResources(drill_plan.database_conn_id, drill_plan.drill_conn_id,
                                   drill_plan.aws_conn_id)
    try:
        with failing_fast():
            return step(drill_plan, resources, *args)
    except BaseException as error:
        _record_drill_failure(resources, run_id=drill_plan.run_id, trigger=drill_plan.trigger,
                              triggered_by=drill_plan.triggered_by, step_name=step.__name__,
                              error=error)
        raise


def finish_drill(plan: dict | None, verified: dict | None, compared: dict | None, *, ti: Any,
                 dag_run: Any) -> dict:
    """The drill's final history row; a failed drill fails the task and so the DAG run."""
    from airflow.sdk.exceptions import AirflowFailException

    conn_id = (plan or {}).get("database_conn_id", DATABASE_CONN_ID)
    try:
        return drill.finish_drill(
            database_settings(conn_id), run_id=drill.history_run_id(dag_run.run_id),
            trigger=trigger_of(dag_run), triggered_by=triggered_by(dag_run), plan=plan,
            verified=verified, compared=compared,
            failed_tasks=failed_task_ids(ti, dag_run.run_id))
    except BackupError as failure:  # the row says why: retrying cannot change the outcome
        raise AirflowFailException(str(failure)) from None


# --- alerts (issue 11) ----------------------------------------------------------------------------


def read_alert_settings(*, staleness: bool = True):
    """The alert Variables; the links' base URL falls back to Airflow's ``[api] base_url``.
    ``staleness=False`` for the failure alerts: they do not depend on the staleness Variables."""
    from airflow.configuration import conf
    from airflow.sdk import Variable

    from supabase_backup.alerts import AlertSettings

    return AlertSettings.from_variables(
        lambda name, default: Variable.get(name, default=default),
        conf.get("api", "base_url", fallback=None), staleness=staleness)


def send_alert(alert, settings, context: dict) -> list[str]:
    """Send through Airflow's notifiers: SmtpNotifier and SlackWebhookNotifier. Their ``notify`` is
    called directly, not ``__call__``: that would render the text as a Jinja template, and an error
    message may hold ``{{``. Returns the channels used."""
    sent = []
    if settings.email_to:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        SmtpNotifier(to=list(settings.email_to), subject=alert.subject,
                     html_content=alert.html(), smtp_conn_id=settings.smtp_conn_id,
                     from_email=_sender(settings.smtp_conn_id)).notify(context)
        sent.append("email")
    if settings.slack_conn_id:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        SlackWebhookNotifier(slack_webhook_conn_id=settings.slack_conn_id,
                             text=f"*{alert.subject}*\n```{alert.text}```").notify(context)
        sent.append("slack")
    return sent


def _sender(smtp_conn_id: str) -> str | None:
    """The From address: the SMTP connection's ``from_email`` extra, else ``[email] from_email``.
    Given to SmtpNotifier so it has nothing left to render from a template."""
    from airflow.configuration import conf
    from airflow.sdk import BaseHook

    extra = BaseHook.get_connection(smtp_conn_id).extra_dejson or {}
    return extra.get("from_email") or conf.get("email", "from_email", fallback=None)


def _history_row(run_id: str) -> dict | None:
    from supabase_backup import history

    with database_settings().connect(autocommit=True) as connection:
        return history.get_by_run_id(connection, run_id)


def _make_notifier_class():
    from airflow.sdk import BaseNotifier

    class BackupAlertNotifier(BaseNotifier):
        """Airflow notifier for a failed or incomplete backup run (``kind="backup"``: the backup
        DAG's ``on_failure_callback``) and for a failed restore drill (``kind="drill"``:
        ``on_failure_callback=backup_alert_notifier("drill")`` on the drill DAG). It reads the
        run's ``backup_history`` row for the cause. It never raises: an alert that cannot be sent
        is logged, and never changes a run's outcome."""

        template_fields = ()

        def __init__(self, kind: str = "backup", *, after_verification: bool = False) -> None:
            super().__init__()
            self.kind = kind
            # True on a task after verify_upload (apply_retention): its own failure callback
            # alerts with the exception; the DAG-level alert then stays quiet for a success row.
            self.after_verification = after_verification

        def render_template_fields(self, context, jinja_env=None) -> None:
            """Nothing to render: the text is built from the history row, and an error message
            must never be read as a Jinja template. (Skipping it also avoids dag.test's
            SerializedDAG, which has no template environment.)"""

        def notify(self, context) -> None:
            try:
                self._notify(context)
            except Exception:  # noqa: BLE001
                log.exception("Could not send the supabase-backup alert")

        def _notify(self, context) -> None:
            from supabase_backup.alerts import run_alert

            settings = read_alert_settings(staleness=False)
            if not settings.configured:
                log.info("No alert channel configured (supabase_backup_alert_email, "
                         "supabase_backup_alert_slack_conn_id): no alert sent")
                return
            dag_run = context["dag_run"]
            ti = context.get("ti")  # None in a DAG-level callback
            try:
                row = _history_row(dag_run.run_id)
            except Exception as error:  # noqa: BLE001 - alert anyway, saying why the row is missing
                log.warning("Could not read backup_history for the alert: %s", error)
                row = None
            if (self.kind == "backup" and not self.after_verification
                    and (row or {}).get("status") == "success"):
                log.info("The backup is verified; the task that failed after it sent its own alert")
                return
            failed = []
            if ti is not None:
                try:
                    failed = failed_task_ids(ti, dag_run.run_id)
                except Exception:  # noqa: BLE001
                    failed = []
            if ti is not None and ti.task_id not in failed:
                failed.append(ti.task_id)
            exception = context.get("exception")
            task_error = (f"{ti.task_id}: {exception}" if ti is not None and exception
                          else None)
            if task_error:
                task_error = steps.scrub(task_error, connection_secrets())
            alert = run_alert(kind=self.kind, dag_id=dag_run.dag_id, run_id=dag_run.run_id,
                              row=row, base_url=settings.base_url, failed_tasks=sorted(failed),
                              task_error=task_error)
            channels = send_alert(alert, settings, context)
            log.info("Alert sent (%s): %s", ", ".join(channels), alert.subject)

    return BackupAlertNotifier


_NOTIFIER_CLASS = None


def backup_alert_notifier(kind: str = "backup", *, after_verification: bool = False):
    """An Airflow notifier instance (``BaseNotifier``) for ``on_failure_callback``: the backup
    DAG's (``kind="backup"``), a task after verification (``after_verification=True``), or the
    restore drill DAG's (``kind="drill"``)."""
    global _NOTIFIER_CLASS
    if _NOTIFIER_CLASS is None:
        _NOTIFIER_CLASS = _make_notifier_class()
    return _NOTIFIER_CLASS(kind, after_verification=after_verification)


def utc_now() -> datetime:
    """The staleness check's clock (the tests move it on to play out a day of hourly checks)."""
    return datetime.now(timezone.utc)


def check_backup_age(context: dict) -> dict:
    """The staleness check's task: fail when no verified backup is newer than
    ``supabase_backup_max_backup_age_hours`` (skipped when that Variable is unset), and notify once
    per stale episode: an alert, reminders every ``supabase_backup_stale_reminder_hours``, and a
    recovered notice (``alerts.stale_notice`` decides, ``alert_state`` remembers)."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from supabase_backup import alert_state, history
    from supabase_backup.alerts import (
        Alert,
        StaleNotice,
        is_stale,
        recovered_notice,
        stale_alert,
        stale_notice,
    )
    from supabase_backup.config import DAG_ID
    from supabase_backup.errors import MigrationMissing

    with failing_fast():
        settings = read_alert_settings()
    if settings.max_backup_age_hours is None:
        raise AirflowSkipException("supabase_backup_max_backup_age_hours is not set: no check")
    now = utc_now()
    reminder_hours = settings.stale_reminder_hours
    alert, channels, episode, state_missing = None, [], None, None
    with failing_fast(), database_settings().connect(autocommit=True) as connection:
        # Lock, decide, send, record: one transaction, so checks running at once send one notice
        # (alert_state says why the state lives in this database).
        with connection.transaction():
            try:
                episode = alert_state.lock_stale_episode(connection)
            except MigrationMissing as error:
                # A deployment upgraded without re-applying the migration: alerting at every check,
                # as before the table existed, beats staying silent about a stale project.
                state_missing = error
                log.warning("%s Until then every stale check alerts.", error)
            latest = history.latest_verified_backup(connection)
            stale = is_stale(latest, settings.max_backup_age_hours, now)
            if not settings.configured:
                # Nobody to tell: the episode stays as it is, so setting a channel later still
                # gets the first alert out.
                notice = StaleNotice.QUIET
            elif state_missing is not None:
                notice = StaleNotice.ALERT if stale else StaleNotice.QUIET
            else:
                notice = stale_notice(stale=stale, episode=episode, now=now,
                                      reminder_hours=reminder_hours)
            if notice in (StaleNotice.ALERT, StaleNotice.REMINDER):
                alert = stale_alert(
                    latest=latest, max_age_hours=settings.max_backup_age_hours, now=now,
                    base_url=settings.base_url, dag_id=DAG_ID,
                    reminder_hours=None if state_missing else reminder_hours,
                    episode=episode if notice is StaleNotice.REMINDER else None)
                if state_missing is not None:
                    alert = Alert(subject=alert.subject,
                                  text=f"{alert.text}\n\nAlerting at every check: {state_missing}")
            elif notice is StaleNotice.RECOVERED:
                alert = recovered_notice(latest=latest, episode=episode, now=now,
                                         base_url=settings.base_url, dag_id=DAG_ID)
            if alert is not None:
                channels = send_alert(alert, settings, context)
                log.info("%s sent (%s): %s", "Recovered notice" if notice is StaleNotice.RECOVERED
                         else notice.value.capitalize(), ", ".join(channels), alert.subject)
            if state_missing is None and settings.configured:
                alert_state.record_stale_notice(connection, notice, now)
    if not stale:
        return {"stale": False, "latest_run_id": latest["run_id"], "notice": notice.value,
                "channels": channels}
    # The task fails at every stale check, so Airflow's grid stays truthful; only the notices
    # are de-duplicated.
    subject = f"[supabase-backup] STALE: no verified backup in {settings.max_backup_age_hours:g} h"
    if not settings.configured:
        said = "no alert channel configured"
    elif alert is not None:
        said = f"{notice.value} sent: {', '.join(channels) or 'none'}"
    else:
        due = episode.next_reminder_at(reminder_hours)
        said = (f"no notice now: alerted {_utc_minute(episode.alerted_at)}; "
                + (f"next reminder from {_utc_minute(due)}" if due
                   else "no reminders (supabase_backup_stale_reminder_hours = 0)"))
    raise AirflowFailException(f"{subject} ({said})")


def _utc_minute(moment: datetime) -> str:
    return f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"
