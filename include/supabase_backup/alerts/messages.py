"""What an alert says: a failed or incomplete backup, a failed restore drill, a stale project, a
recovered one. Pure text: ``supabase_backup.airflow.alerting`` gathers the facts (the DAG run, its
``backup_history`` row, the Variables) and sends what this module writes through the SMTP and Slack
notifiers. Every alert names the run, the cause (the history row's ``error``, which already holds
the first actionable reason), a link to the run in the Airflow UI and a link to the Backups page.

| what                              | where                                               | default        |
|-----------------------------------|-----------------------------------------------------|----------------|
| e-mail recipients                 | Variable ``supabase_backup_alert_email`` (commas)   | no e-mail      |
| SMTP connection                   | Variable ``supabase_backup_alert_smtp_conn_id``     | ``smtp_default`` |
| Slack incoming-webhook connection | Variable ``supabase_backup_alert_slack_conn_id``    | no Slack       |
| stale after (hours)               | Variable ``supabase_backup_max_backup_age_hours``   | no check       |
| remind of a stale project (hours) | Variable ``supabase_backup_stale_reminder_hours``   | 24 (0: never)  |
| Airflow UI address for links      | Variable ``supabase_backup_ui_base_url``            | ``[api] base_url`` |
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from supabase_backup.records.alert_state import StaleEpisode
from supabase_backup.records.history import ARCHIVE_DAMAGE_DETAIL

BACKUPS_PAGE_PATH = "/backup/ui"


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str  # plain text: Slack, logs, and the e-mail's body inside <pre>

    def html(self) -> str:
        return (
            '<pre style="font-family: monospace; white-space: pre-wrap">'
            f"{html.escape(self.text)}</pre>"
        )


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    return f"{base_url}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def backups_page_url(base_url: str) -> str:
    return f"{base_url}{BACKUPS_PAGE_PATH}"


def run_alert(
    *,
    kind: str,
    dag_id: str,
    run_id: str,
    row: dict | None,
    base_url: str,
    failed_tasks: list[str] | None = None,
    task_error: str | None = None,
) -> Alert:
    """A failed or incomplete backup, a backup whose later task (retention) failed, or a failed
    restore drill."""
    status = (row or {}).get("status") or "failed"
    cause = (
        (row or {}).get("error")
        or task_error
        or (
            f"task(s) {', '.join(failed_tasks)} failed"
            if failed_tasks
            else "see the run's task logs"
        )
    )
    if kind == "drill":
        what = "Restore drill FAILED"
    elif status == "incomplete":
        what = "Backup INCOMPLETE"
    elif status == "success":
        what = "Backup verified, but a later task FAILED"
        cause = task_error or (
            f"task(s) {', '.join(failed_tasks)} failed" if failed_tasks else cause
        )
    else:
        what = "Backup FAILED"
    lines = [f"{what}: DAG {dag_id}, run {run_id}", "", f"Cause: {cause}", ""]
    if row:
        lines.append(
            f"History row: #{row.get('id')} status {status}, trigger {row.get('trigger')}"
            + (f" by {row['triggered_by']}" if row.get("triggered_by") else "")
            + f", started {_when(row.get('started_at'))}"
        )
        if row.get("s3_key"):
            lines.append(f"Archive: s3://{row.get('s3_bucket')}/{row['s3_key']}")
        damage = (row.get("details") or {}).get(ARCHIVE_DAMAGE_DETAIL) or {}
        if kind == "drill" and damage.get("backup_run_id"):
            lines.append(
                f"Backup {damage['backup_run_id']} is now marked damaged: the next drill takes "
                "the newest backup not found damaged, the staleness check no longer counts it, "
                "and retention no longer counts it as a copy."
            )
    if failed_tasks:
        lines.append(f"Failed task(s): {', '.join(failed_tasks)}")
    lines += [
        "",
        f"Run:          {run_url(base_url, dag_id, run_id)}",
        f"Backups page: {backups_page_url(base_url)}",
    ]
    return Alert(subject=f"[supabase-backup] {what}: {run_id}", text="\n".join(lines))


def stale_alert(
    *,
    latest: dict | None,
    max_age_hours: float,
    now: datetime,
    base_url: str,
    dag_id: str,
    reminder_hours: float | None = None,
    episode: StaleEpisode | None = None,
) -> Alert:
    """The alert that opens a stale episode or, given the open ``episode``, its reminder. With
    ``reminder_hours`` it says when people hear about it next."""
    if latest is None:
        cause = "backup_history holds no verified successful backup at all"
        last = "none"
    else:
        finished: datetime = latest.get("finished_at") or latest["started_at"]
        hours = (now - finished).total_seconds() / 3600
        cause = (
            f"the newest verified backup finished {hours:.1f} hours ago, more than the "
            f"{max_age_hours:g} hours allowed (supabase_backup_max_backup_age_hours)"
        )
        last = (
            f"run {latest.get('run_id')}, s3://{latest.get('s3_bucket')}/"
            f"{latest.get('s3_key')}, finished {_when(finished)}"
        )
    lines = [
        f"No recent verified backup for DAG {dag_id}",
        "",
        f"Cause: {cause}",
        f"Newest verified backup: {last}",
    ]
    if episode is not None:
        lines.append(
            f"Still stale since the first alert, {_when(episode.alerted_at)} "
            f"({_hours_between(episode.alerted_at, now)} ago); reminder "
            f"{episode.reminders_sent + 1}."
        )
    if reminder_hours is not None:
        lines += ["", _what_comes_next(reminder_hours)]
    lines += [
        "",
        f"DAG:          {base_url}/dags/{quote(dag_id, safe='')}",
        f"Backups page: {backups_page_url(base_url)}",
    ]
    what = "STILL STALE" if episode is not None else "STALE"
    return Alert(
        subject=f"[supabase-backup] {what}: no verified backup in {max_age_hours:g} h",
        text="\n".join(lines),
    )


def recovered_notice(
    *, latest: dict, episode: StaleEpisode, now: datetime, base_url: str, dag_id: str
) -> Alert:
    """Closes the episode ``stale_alert`` opened: a verified backup is recent again."""
    finished = latest.get("finished_at") or latest.get("started_at")
    reminders = episode.reminders_sent
    lines = [
        f"Verified backups are recent again for DAG {dag_id}",
        "",
        f"Newest verified backup: run {latest.get('run_id')}, s3://{latest.get('s3_bucket')}/"
        f"{latest.get('s3_key')}, finished {_when(finished)}",
        f"Stale since the first alert, {_when(episode.alerted_at)} "
        f"({_hours_between(episode.alerted_at, now)} ago); "
        f"{reminders} reminder{'' if reminders == 1 else 's'} sent.",
        "",
        "No further notice unless it goes stale again.",
        "",
        f"DAG:          {base_url}/dags/{quote(dag_id, safe='')}",
        f"Backups page: {backups_page_url(base_url)}",
    ]
    return Alert(
        subject=f"[supabase-backup] RECOVERED: verified backup {latest.get('run_id')}",
        text="\n".join(lines),
    )


def check_failed_alert(
    *, dag_id: str, run_id: str, task_id: str, cause: str, base_url: str, watched_dag_id: str
) -> Alert:
    """The staleness check itself could not run (a mistyped Variable, an unreachable database):
    until it runs again, nobody hears of backups that stop."""
    lines = [
        f"The staleness check could not run: DAG {dag_id}, run {run_id}, task {task_id}",
        "",
        f"Cause: {cause}",
        "",
        f"Until it runs again, nobody is told when verified backups of {watched_dag_id} stop "
        "arriving. Fix the cause; the next hourly check then runs as usual.",
        "",
        f"Run:          {run_url(base_url, dag_id, run_id)}",
        f"Backups page: {backups_page_url(base_url)}",
    ]
    return Alert(
        subject=f"[supabase-backup] Staleness check FAILED: {run_id}", text="\n".join(lines)
    )


def _what_comes_next(reminder_hours: float) -> str:
    if reminder_hours == 0:
        reminder = "No reminders (supabase_backup_stale_reminder_hours is 0)"
    else:
        reminder = (
            f"Next reminder in {reminder_hours:g} h while it stays stale "
            "(supabase_backup_stale_reminder_hours)"
        )
    return (
        f"{reminder}; a notice follows when a verified backup appears. The check fails every "
        "hour meanwhile, in Airflow only."
    )


def _hours_between(earlier: datetime, later: datetime) -> str:
    return f"{(later - earlier).total_seconds() / 3600:.1f} h"


def _when(value) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value) if value else "?"
