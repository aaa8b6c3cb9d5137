"""Alerts through Airflow's notifiers: the notifier the DAGs attach as ``on_failure_callback``, and
sending an alert by e-mail (SmtpNotifier) and Slack (SlackWebhookNotifier). What an alert says and
whether one is due are decided in ``supabase_backup.alerts``; this module gathers the facts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from supabase_backup.airflow.connections import connection_secrets, database_settings
from supabase_backup.airflow.dag_run import failed_task_ids
from supabase_backup.alerts.messages import run_alert
from supabase_backup.alerts.settings import AlertSettings
from supabase_backup.errors import scrub
from supabase_backup.records import history
from supabase_backup.restore.drill import history_run_id as drill_history_run_id

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


def read_alert_settings(*, staleness: bool = True):
    """The alert Variables; the links' base URL falls back to Airflow's ``[api] base_url``.
    ``staleness=False`` for the failure alerts: they do not depend on the staleness Variables."""
    from airflow.configuration import conf
    from airflow.sdk import Variable

    return AlertSettings.from_variables(
        lambda name, default: Variable.get(name, default=default),
        conf.get("api", "base_url", fallback=None),
        staleness=staleness,
    )


def send_alert(alert, settings, context: dict) -> list[str]:
    """Send through Airflow's notifiers: SmtpNotifier and SlackWebhookNotifier. Their ``notify`` is
    called directly, not ``__call__``: that would render the text as a Jinja template, and an error
    message may hold ``{{``. Returns the channels used."""
    # Every caller passes the context Airflow handed its callback or task (as a plain dict).
    airflow_context = cast("Context", context)
    sent = []
    if settings.email_to:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        SmtpNotifier(
            to=list(settings.email_to),
            subject=alert.subject,
            html_content=alert.html(),
            smtp_conn_id=settings.smtp_conn_id,
            from_email=_sender(settings.smtp_conn_id),
        ).notify(airflow_context)
        sent.append("email")
    if settings.slack_conn_id:
        from airflow.providers.slack.notifications.slack_webhook import (
            SlackWebhookNotifier,
        )

        SlackWebhookNotifier(
            slack_webhook_conn_id=settings.slack_conn_id,
            text=f"*{alert.subject}*\n```{alert.text}```",
        ).notify(airflow_context)
        sent.append("slack")
    return sent


def _sender(smtp_conn_id: str) -> str | None:
    """The From address: the SMTP connection's ``from_email`` extra, else ``[email] from_email``.
    Given to SmtpNotifier so it has nothing left to render from a template."""
    from airflow.configuration import conf
    from airflow.sdk import BaseHook

    extra = BaseHook.get_connection(smtp_conn_id).extra_dejson or {}
    return extra.get("from_email") or conf.get("email", "from_email", fallback=None)


def _history_row(dag_run_id: str, kind: str = "backup") -> dict | None:
    """The run's backup_history row: a backup's is keyed by its DAG run id, a drill's by the drill
    DAG's id and its run id (``drill.history_run_id``)."""
    run_id = drill_history_run_id(dag_run_id) if kind == "drill" else dag_run_id
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
            settings = read_alert_settings(staleness=False)
            if not settings.configured:
                log.info(
                    "No alert channel configured (supabase_backup_alert_email, "
                    "supabase_backup_alert_slack_conn_id): no alert sent"
                )
                return
            dag_run = context["dag_run"]
            ti = context.get("ti")  # None in a DAG-level callback
            try:
                row = _history_row(dag_run.run_id, self.kind)
            except Exception as error:  # noqa: BLE001 - alert anyway, saying why the row is missing
                log.warning("Could not read backup_history for the alert: %s", error)
                row = None
            if (
                self.kind == "backup"
                and not self.after_verification
                and (row or {}).get("status") == "success"
            ):
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
            task_error = f"{ti.task_id}: {exception}" if ti is not None and exception else None
            if task_error:
                task_error = scrub(task_error, connection_secrets())
            alert = run_alert(
                kind=self.kind,
                dag_id=dag_run.dag_id,
                run_id=dag_run.run_id,
                row=row,
                base_url=settings.base_url,
                failed_tasks=sorted(failed),
                task_error=task_error,
            )
            channels = send_alert(alert, settings, context)
            log.info("Alert sent (%s): %s", ", ".join(channels), alert.subject)

    return BackupAlertNotifier


_NOTIFIER_CLASS = None


def _notifier_class():
    global _NOTIFIER_CLASS
    if _NOTIFIER_CLASS is None:
        _NOTIFIER_CLASS = _make_notifier_class()
    return _NOTIFIER_CLASS


def backup_alert_notifier(kind: str = "backup", *, after_verification: bool = False):
    """An Airflow notifier instance (``BaseNotifier``) for ``on_failure_callback``: the backup
    DAG's (``kind="backup"``), a task after verification (``after_verification=True``), or the
    restore drill DAG's (``kind="drill"``)."""
    return _notifier_class()(kind, after_verification=after_verification)


def __getattr__(name: str):
    # The provider registers the notifier by its class path (provider.py), which Airflow imports
    # with getattr; the class itself is still built on first use, like backup_alert_notifier's.
    if name == "BackupAlertNotifier":
        return _notifier_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
