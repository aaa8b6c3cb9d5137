"""What an alert says: failed or incomplete backups, failed restore drills, stale backups; and
when a stale project is worth a notice at all (``stale_notice``).

Pure text: ``airflow_resources.BackupAlertNotifier`` (an Airflow ``BaseNotifier``) gathers the
facts (the DAG run, its ``backup_history`` row, the Variables) and sends what this module writes
through the SMTP and Slack notifiers. Every alert names the run, the cause (the history row's
``error``, which already holds the first actionable reason), a link to the run in the Airflow UI and
a link to the Backups page.

| what                              | where                                               | default        |
|-----------------------------------|-----------------------------------------------------|----------------|
| e-mail recipients                 | Variable ``supabase_backup_alert_email`` (commas)   | no e-mail      |
| SMTP connection                   | Variable ``supabase_backup_alert_smtp_conn_id``     | ``smtp_default`` |
| Slack incoming-webhook connection | Variable ``supabase_backup_alert_slack_conn_id``    | no Slack       |
| stale after (hours)               | Variable ``supabase_backup_max_backup_age_hours``   | no check       |
| remind of a stale project (hours) | Variable ``supabase_backup_stale_reminder_hours``   | 24 (0: never)  |
| Airflow UI address for links      | Variable ``supabase_backup_ui_base_url``            | ``[api] base_url`` |

A stale project is an *episode*, as Alertmanager and PagerDuty treat an incident: one alert when it
starts, quiet while it lasts, a reminder every ``supabase_backup_stale_reminder_hours``, and one
"recovered" notice when a verified backup appears again. ``stale_notice`` decides which, from the
open episode (kept by ``alert_state``) and the time; the check itself still fails every hour it
finds the project stale, so Airflow's grid stays truthful.
"""

from __future__ import annotations

import enum
import html
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from supabase_backup.errors import ConfigurationError

DEFAULT_SMTP_CONNECTION = "smtp_default"
BACKUPS_PAGE_PATH = "/backup/ui"
DEFAULT_STALE_REMINDER_HOURS = 24.0
# A scheduled check starts a few seconds (or, on a busy scheduler, minutes) later or earlier than
# the one before it. Without this allowance a 24-hour reminder after an alert sent at 10:00:05
# would miss the check at 10:00:02 the next day and come an hour late.
REMINDER_EARLY_ALLOWANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class AlertSettings:
    email_to: tuple[str, ...] = ()
    smtp_conn_id: str = DEFAULT_SMTP_CONNECTION
    slack_conn_id: str | None = None
    max_backup_age_hours: float | None = None
    stale_reminder_hours: float = DEFAULT_STALE_REMINDER_HOURS  # 0: never remind
    base_url: str = "http://localhost:8080"

    @property
    def configured(self) -> bool:
        return bool(self.email_to or self.slack_conn_id)

    @classmethod
    def from_variables(cls, get_variable, default_base_url: str | None, *,
                       staleness: bool = True) -> "AlertSettings":
        """``staleness=False`` (the failure alerts) leaves the staleness Variables unread, so a
        mistyped one stops only the staleness check, never the alert of a failed backup."""
        emails = tuple(item.strip() for item in (get_variable("supabase_backup_alert_email", None)
                                                 or "").split(",") if item.strip())
        for address in emails:
            if "@" not in address:
                raise ConfigurationError(
                    f"supabase_backup_alert_email holds {address!r}, not an e-mail address "
                    "(comma-separated addresses, e.g. ops@example.com,oncall@example.com)")
        age_text = (get_variable("supabase_backup_max_backup_age_hours", None) or "").strip() \
            if staleness else ""
        max_age = None
        if age_text:
            try:
                max_age = float(age_text)
            except ValueError:
                max_age = -1.0
            if max_age <= 0:
                raise ConfigurationError(
                    f"supabase_backup_max_backup_age_hours must be a positive number of hours, "
                    f"not {age_text!r} (e.g. 26 for a daily backup)")
        reminder_text = (get_variable("supabase_backup_stale_reminder_hours", None) or "").strip() \
            if staleness else ""
        reminder_hours = DEFAULT_STALE_REMINDER_HOURS
        if reminder_text:
            try:
                reminder_hours = float(reminder_text)
            except ValueError:
                reminder_hours = -1.0
            if not 0 <= reminder_hours < float("inf"):
                raise ConfigurationError(
                    f"supabase_backup_stale_reminder_hours must be a number of hours, 0 or more, "
                    f"not {reminder_text!r} (e.g. 24 for a daily reminder; 0 for none)")
        base_url = (get_variable("supabase_backup_ui_base_url", None) or default_base_url
                    or "http://localhost:8080").rstrip("/")
        return cls(
            email_to=emails,
            smtp_conn_id=get_variable("supabase_backup_alert_smtp_conn_id", None)
            or DEFAULT_SMTP_CONNECTION,
            slack_conn_id=get_variable("supabase_backup_alert_slack_conn_id", None) or None,
            max_backup_age_hours=max_age, stale_reminder_hours=reminder_hours,
            base_url=base_url)


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str  # plain text: Slack, logs, and the e-mail's body inside <pre>

    def html(self) -> str:
        return ("<pre style=\"font-family: monospace; white-space: pre-wrap\">"
                f"{html.escape(self.text)}</pre>")


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    return f"{base_url}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def backups_page_url(base_url: str) -> str:
    return f"{base_url}{BACKUPS_PAGE_PATH}"


def run_alert(*, kind: str, dag_id: str, run_id: str, row: dict | None, base_url: str,
              failed_tasks: list[str] | None = None, task_error: str | None = None) -> Alert:
    """A failed or incomplete backup, a backup whose later task (retention) failed, or a failed
    restore drill."""
    status = (row or {}).get("status") or "failed"
    cause = (row or {}).get("error") or task_error or (
        f"task(s) {', '.join(failed_tasks)} failed" if failed_tasks else "see the run's task logs")
    if kind == "drill":
        what = "Restore drill FAILED"
    elif status == "incomplete":
        what = "Backup INCOMPLETE"
    elif status == "success":
        what = "Backup verified, but a later task FAILED"
        cause = task_error or (f"task(s) {', '.join(failed_tasks)} failed" if failed_tasks
                               else cause)
    else:
        what = "Backup FAILED"
    lines = [f"{what}: DAG {dag_id}, run {run_id}", "", f"Cause: {cause}", ""]
    if row:
        lines.append(f"History row: #{row.get('id')} status {status}, trigger {row.get('trigger')}"
                     + (f" by {row['triggered_by']}" if row.get("triggered_by") else "")
                     + f", started {_when(row.get('started_at'))}")
        if row.get("s3_key"):
            lines.append(f"Archive: s3://{row.get('s3_bucket')}/{row['s3_key']}")
    if failed_tasks:
        lines.append(f"Failed task(s): {', '.join(failed_tasks)}")
    lines += ["", f"Run:          {run_url(base_url, dag_id, run_id)}",
              f"Backups page: {backups_page_url(base_url)}"]
    return Alert(subject=f"[supabase-backup] {what}: {run_id}", text="\n".join(lines))


def is_stale(latest: dict | None, max_age_hours: float, now: datetime) -> bool:
    if latest is None:
        return True
    finished = latest.get("finished_at") or latest.get("started_at")
    return (now - finished).total_seconds() > max_age_hours * 3600


class StaleNotice(enum.Enum):
    """What one staleness check tells people."""

    ALERT = "alert"          # the project just became stale (no episode open)
    REMINDER = "reminder"    # still stale, and the reminder interval passed since the last notice
    RECOVERED = "recovered"  # a verified backup again after an alert: the episode closes
    QUIET = "quiet"          # nothing people have not been told


@dataclass(frozen=True)
class StaleEpisode:
    """A stale spell people were alerted to and not yet told is over."""

    alerted_at: datetime        # the first notice
    last_notified_at: datetime  # the first notice or the latest reminder
    reminders_sent: int = 0

    def next_reminder_at(self, reminder_hours: float) -> datetime | None:
        """When the next reminder is due (None: never, ``reminder_hours`` is 0)."""
        if reminder_hours == 0:
            return None
        return (self.last_notified_at + timedelta(hours=reminder_hours)
                - REMINDER_EARLY_ALLOWANCE)


def stale_notice(*, stale: bool, episode: StaleEpisode | None, now: datetime,
                 reminder_hours: float) -> StaleNotice:
    """The notice one check sends, from whether the project is stale now, the open episode (None
    when people were never alerted, or were told it recovered) and the time. Pure: the caller keeps
    the episode and records what it sent."""
    _require_aware(now, "now")
    if episode is not None:
        _require_aware(episode.alerted_at, "episode.alerted_at")
        _require_aware(episode.last_notified_at, "episode.last_notified_at")
    if not stale:
        return StaleNotice.RECOVERED if episode is not None else StaleNotice.QUIET
    if episode is None:
        return StaleNotice.ALERT
    due = episode.next_reminder_at(reminder_hours)
    return StaleNotice.REMINDER if due is not None and now >= due else StaleNotice.QUIET


def stale_alert(*, latest: dict | None, max_age_hours: float, now: datetime, base_url: str,
                dag_id: str, reminder_hours: float | None = None,
                episode: StaleEpisode | None = None) -> Alert:
    """The alert that opens a stale episode or, given the open ``episode``, its reminder. With
    ``reminder_hours`` it says when people hear about it next."""
    if latest is None:
        cause = "backup_history holds no verified successful backup at all"
        last = "none"
    else:
        finished = latest.get("finished_at") or latest.get("started_at")
        hours = (now - finished).total_seconds() / 3600
        cause = (f"the newest verified backup finished {hours:.1f} hours ago, more than the "
                 f"{max_age_hours:g} hours allowed (supabase_backup_max_backup_age_hours)")
        last = (f"run {latest.get('run_id')}, s3://{latest.get('s3_bucket')}/"
                f"{latest.get('s3_key')}, finished {_when(finished)}")
    lines = [f"No recent verified backup for DAG {dag_id}", "", f"Cause: {cause}",
             f"Newest verified backup: {last}"]
    if episode is not None:
        lines.append(f"Still stale since the first alert, {_when(episode.alerted_at)} "
                     f"({_hours_between(episode.alerted_at, now)} ago); reminder "
                     f"{episode.reminders_sent + 1}.")
    if reminder_hours is not None:
        lines += ["", _what_comes_next(reminder_hours)]
    lines += ["", f"DAG:          {base_url}/dags/{quote(dag_id, safe='')}",
              f"Backups page: {backups_page_url(base_url)}"]
    what = "STILL STALE" if episode is not None else "STALE"
    return Alert(subject=f"[supabase-backup] {what}: no verified backup in {max_age_hours:g} h",
                 text="\n".join(lines))


def recovered_notice(*, latest: dict, episode: StaleEpisode, now: datetime, base_url: str,
                     dag_id: str) -> Alert:
    """Closes the episode ``stale_alert`` opened: a verified backup is recent again."""
    finished = latest.get("finished_at") or latest.get("started_at")
    reminders = episode.reminders_sent
    lines = [f"Verified backups are recent again for DAG {dag_id}", "",
             f"Newest verified backup: run {latest.get('run_id')}, s3://{latest.get('s3_bucket')}/"
             f"{latest.get('s3_key')}, finished {_when(finished)}",
             f"Stale since the first alert, {_when(episode.alerted_at)} "
             f"({_hours_between(episode.alerted_at, now)} ago); "
             f"{reminders} reminder{'' if reminders == 1 else 's'} sent.",
             "", "No further notice unless it goes stale again.", "",
             f"DAG:          {base_url}/dags/{quote(dag_id, safe='')}",
             f"Backups page: {backups_page_url(base_url)}"]
    return Alert(subject=f"[supabase-backup] RECOVERED: verified backup {latest.get('run_id')}",
                 text="\n".join(lines))


def _what_comes_next(reminder_hours: float) -> str:
    if reminder_hours == 0:
        reminder = "No reminders (supabase_backup_stale_reminder_hours is 0)"
    else:
        reminder = (f"Next reminder in {reminder_hours:g} h while it stays stale "
                    "(supabase_backup_stale_reminder_hours)")
    return (f"{reminder}; a notice follows when a verified backup appears. The check fails every "
            "hour meanwhile, in Airflow only.")


def _hours_between(earlier: datetime, later: datetime) -> str:
    return f"{(later - earlier).total_seconds() / 3600:.1f} h"


def _require_aware(value: datetime, name: str) -> None:
    # A naive time would be compared as if it were UTC on one machine and local time on another.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, not {value!r}")


def _when(value) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value) if value else "?"
