"""What an alert says: failed or incomplete backups, failed restore drills, stale backups.

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
| Airflow UI address for links      | Variable ``supabase_backup_ui_base_url``            | ``[api] base_url`` |
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

from supabase_backup.errors import ConfigurationError

DEFAULT_SMTP_CONNECTION = "smtp_default"
BACKUPS_PAGE_PATH = "/backup/ui"


@dataclass(frozen=True)
class AlertSettings:
    email_to: tuple[str, ...] = ()
    smtp_conn_id: str = DEFAULT_SMTP_CONNECTION
    slack_conn_id: str | None = None
    max_backup_age_hours: float | None = None
    base_url: str = "http://localhost:8080"

    @property
    def configured(self) -> bool:
        return bool(self.email_to or self.slack_conn_id)

    @classmethod
    def from_variables(cls, get_variable, default_base_url: str | None) -> "AlertSettings":
        emails = tuple(item.strip() for item in (get_variable("supabase_backup_alert_email", None)
                                                 or "").split(",") if item.strip())
        for address in emails:
            if "@" not in address:
                raise ConfigurationError(
                    f"supabase_backup_alert_email holds {address!r}, not an e-mail address "
                    "(comma-separated addresses, e.g. ops@example.com,oncall@example.com)")
        age_text = (get_variable("supabase_backup_max_backup_age_hours", None) or "").strip()
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
        base_url = (get_variable("supabase_backup_ui_base_url", None) or default_base_url
                    or "http://localhost:8080").rstrip("/")
        return cls(
            email_to=emails,
            smtp_conn_id=get_variable("supabase_backup_alert_smtp_conn_id", None)
            or DEFAULT_SMTP_CONNECTION,
            slack_conn_id=get_variable("supabase_backup_alert_slack_conn_id", None) or None,
            max_backup_age_hours=max_age, base_url=base_url)


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


def stale_alert(*, latest: dict | None, max_age_hours: float, now: datetime, base_url: str,
                dag_id: str) -> Alert:
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
             f"Newest verified backup: {last}", "",
             f"DAG:          {base_url}/dags/{quote(dag_id, safe='')}",
             f"Backups page: {backups_page_url(base_url)}"]
    return Alert(subject=f"[supabase-backup] STALE: no verified backup in {max_age_hours:g} h",
                 text="\n".join(lines))


def _when(value) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value) if value else "?"
