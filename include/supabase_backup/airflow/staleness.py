"""The staleness check's task: is any verified backup recent enough, and is a notice due.

The decisions are pure functions of ``supabase_backup.alerts``; this module reads the Variables,
locks the open episode in the Supabase database, sends what is due and fails the task while the
project is stale, so Airflow's grid stays truthful. A check that cannot run at all (a mistyped
Variable, an unreachable database) alerts through ``alert_check_failure``, its failure callback.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from supabase_backup.airflow.alerting import read_alert_settings, send_alert
from supabase_backup.airflow.connections import connection_secrets, database_settings
from supabase_backup.airflow.dag_run import failing_fast
from supabase_backup.alerts.decisions import is_stale, stale_notice
from supabase_backup.alerts.messages import (
    Alert,
    check_failed_alert,
    recovered_notice,
    stale_alert,
)
from supabase_backup.config import DAG_ID
from supabase_backup.errors import MigrationMissing, scrub
from supabase_backup.records import alert_state, history
from supabase_backup.records.alert_state import StaleNotice

log = logging.getLogger(__name__)


class BackupsStale(AirflowFailException):
    """The check ran and found no recent verified backup. Its notices (alert, reminder) went out
    from the check itself, de-duplicated per episode, so the failure callback stays quiet."""


def utc_now() -> datetime:
    """The staleness check's clock (the tests move it on to play out a day of hourly checks)."""
    return datetime.now(UTC)


def check_backup_age(context: dict) -> dict:
    """The staleness check's task: fail when no verified backup is newer than
    ``supabase_backup_max_backup_age_hours`` (skipped when that Variable is unset), and notify once
    per stale episode: an alert, reminders every ``supabase_backup_stale_reminder_hours``, and a
    recovered notice (``alerts.stale_notice`` decides, ``alert_state`` remembers)."""
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
                notice = stale_notice(
                    stale=stale, episode=episode, now=now, reminder_hours=reminder_hours
                )
            if notice in (StaleNotice.ALERT, StaleNotice.REMINDER):
                alert = stale_alert(
                    latest=latest,
                    max_age_hours=settings.max_backup_age_hours,
                    now=now,
                    base_url=settings.base_url,
                    dag_id=DAG_ID,
                    reminder_hours=None if state_missing else reminder_hours,
                    episode=episode if notice is StaleNotice.REMINDER else None,
                )
                if state_missing is not None:
                    alert = Alert(
                        subject=alert.subject,
                        text=f"{alert.text}\n\nAlerting at every check: {state_missing}",
                    )
            elif notice is StaleNotice.RECOVERED:
                # stale_notice says RECOVERED only for an open episode that is no longer stale, and
                # a project is stale while it has no verified backup
                assert latest is not None and episode is not None
                alert = recovered_notice(
                    latest=latest,
                    episode=episode,
                    now=now,
                    base_url=settings.base_url,
                    dag_id=DAG_ID,
                )
            if alert is not None:
                channels = send_alert(alert, settings, context)
                log.info(
                    "%s sent (%s): %s",
                    "Recovered notice"
                    if notice is StaleNotice.RECOVERED
                    else notice.value.capitalize(),
                    ", ".join(channels),
                    alert.subject,
                )
            if state_missing is None and settings.configured:
                alert_state.record_stale_notice(connection, notice, now)
    if not stale:
        assert latest is not None  # a project without a verified backup is stale
        return {
            "stale": False,
            "latest_run_id": latest["run_id"],
            "notice": notice.value,
            "channels": channels,
        }
    # The task fails at every stale check, so Airflow's grid stays truthful; only the notices
    # are de-duplicated.
    subject = f"[supabase-backup] STALE: no verified backup in {settings.max_backup_age_hours:g} h"
    if not settings.configured:
        said = "no alert channel configured"
    elif alert is not None:
        said = f"{notice.value} sent: {', '.join(channels) or 'none'}"
    else:
        # Stale and configured, yet no alert: stale_notice kept quiet, which it does only for an
        # episode already open (without one it alerts; with the state table missing, so does this)
        assert episode is not None
        due = episode.next_reminder_at(reminder_hours)
        said = f"no notice now: alerted {_utc_minute(episode.alerted_at)}; " + (
            f"next reminder from {_utc_minute(due)}"
            if due
            else "no reminders (supabase_backup_stale_reminder_hours = 0)"
        )
    raise BackupsStale(f"{subject} ({said})")


def _utc_minute(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def alert_check_failure(context: dict) -> None:
    """The check task's ``on_failure_callback``: when the check could not run (``BackupsStale`` is
    the check working, and has notified already), alert with the cause, through the channels of
    the failure alerts (read without the staleness Variables, which may be the cause). Never
    raises: an alert that cannot be sent is logged."""
    exception = context.get("exception")
    if isinstance(exception, BackupsStale):
        return
    try:
        settings = read_alert_settings(staleness=False)
        if not settings.configured:
            log.info("The staleness check could not run; no alert channel configured: no alert")
            return
        ti, dag_run = context["ti"], context["dag_run"]
        cause = scrub(
            f"{type(exception).__name__}: {exception}" if exception else "see the task's log",
            connection_secrets(),
        )
        alert = check_failed_alert(
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            task_id=ti.task_id,
            cause=cause,
            base_url=settings.base_url,
            watched_dag_id=DAG_ID,
        )
        channels = send_alert(alert, settings, context)
        log.info("Alert sent (%s): %s", ", ".join(channels), alert.subject)
    except Exception:  # noqa: BLE001 - a callback must never raise
        log.exception("Could not send the alert that the staleness check cannot run")
