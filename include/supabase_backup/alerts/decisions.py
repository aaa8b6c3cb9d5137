"""Whether an alert is due: pure decisions of the staleness check and of the failure notifier.

A stale project is an *episode*, as Alertmanager and PagerDuty treat an incident: one alert when it
starts, quiet while it lasts, a reminder every ``supabase_backup_stale_reminder_hours``, and one
"recovered" notice when a verified backup appears again. The callers (``supabase_backup.airflow``)
gather the facts, keep the episode (``records.alert_state``) and send what these functions decide.
"""

from __future__ import annotations

from datetime import datetime

from supabase_backup.records.alert_state import StaleEpisode, StaleNotice


def is_stale(latest: dict | None, max_age_hours: float, now: datetime) -> bool:
    if latest is None:
        return True
    finished: datetime = latest.get("finished_at") or latest["started_at"]
    return (now - finished).total_seconds() > max_age_hours * 3600


def stale_notice(
    *, stale: bool, episode: StaleEpisode | None, now: datetime, reminder_hours: float
) -> StaleNotice:
    """The notice one check sends, from whether the project is stale now, the open episode (None
    when people were never alerted, or were told it recovered) and the time. Pure: the caller keeps
    the episode and records what it sent."""
    require_aware(now, "now")
    if episode is not None:
        require_aware(episode.alerted_at, "episode.alerted_at")
        require_aware(episode.last_notified_at, "episode.last_notified_at")
    if not stale:
        return StaleNotice.RECOVERED if episode is not None else StaleNotice.QUIET
    if episode is None:
        return StaleNotice.ALERT
    due = episode.next_reminder_at(reminder_hours)
    return StaleNotice.REMINDER if due is not None and now >= due else StaleNotice.QUIET


def require_aware(value: datetime, name: str) -> None:
    # A naive time would be compared as if it were UTC on one machine and local time on another.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, not {value!r}")
