"""``backup_alert_state``: the staleness check's open episode, so a stale project alerts once, is
reminded of on a schedule, and gets one "recovered" notice (``alerts.decisions.stale_notice`` decides which).

Why here, in the Supabase project's own database, beside ``backup_history``:

- It outlives Airflow: a restarted scheduler, a rebuilt metadata database or a move to another
  Airflow deployment does not forget that people were already alerted (and page them again).
- One check at a time decides, however many schedulers run: ``lock_stale_episode`` takes a row
  lock (``SELECT … FOR UPDATE``) held until the caller's transaction ends, so a second check (a
  manual run beside the hourly one, a second Airflow during a migration) waits, then sees what the
  first one sent. An Airflow Variable has no such compare-and-set from a task: two checks could both
  read "not alerted" and both alert; and it would sit among the settings on the Variables page,
  inviting edits. ``system_settings_kv`` holds switches a person sets; this is machine state with
  typed timestamps, so it has its own small table.
- The check already reads ``backup_history`` in that database: no other store to reach or secure.

Call order, in one transaction: lock, decide, send, record. A notice that cannot be sent rolls the
transaction back, so the task's retry (or the next check) sends it again: a notice may come twice,
never not at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import pq

from supabase_backup.records.migrations import require_table

ALERT_STATE_TABLE = "public.backup_alert_state"
STALE = "stale"

# A scheduled check starts a few seconds (or, on a busy scheduler, minutes) later or earlier than
# the one before it. Without this allowance a 24-hour reminder after an alert sent at 10:00:05
# would miss the check at 10:00:02 the next day and come an hour late.
REMINDER_EARLY_ALLOWANCE = timedelta(minutes=5)


class StaleNotice(enum.Enum):
    """What one staleness check tells people."""

    ALERT = "alert"  # the project just became stale (no episode open)
    REMINDER = "reminder"  # still stale, and the reminder interval passed since the last notice
    RECOVERED = "recovered"  # a verified backup again after an alert: the episode closes
    QUIET = "quiet"  # nothing people have not been told


@dataclass(frozen=True)
class StaleEpisode:
    """A stale spell people were alerted to and not yet told is over."""

    alerted_at: datetime  # the first notice
    last_notified_at: datetime  # the first notice or the latest reminder
    reminders_sent: int = 0

    def next_reminder_at(self, reminder_hours: float) -> datetime | None:
        """When the next reminder is due (None: never, ``reminder_hours`` is 0)."""
        if reminder_hours == 0:
            return None
        return self.last_notified_at + timedelta(hours=reminder_hours) - REMINDER_EARLY_ALLOWANCE


def lock_stale_episode(connection: psycopg.Connection) -> StaleEpisode | None:
    """The open stale episode (None when none is), its row locked until the transaction ends.
    Must be called inside ``connection.transaction()``: outside one the lock would end at once."""
    if connection.info.transaction_status != pq.TransactionStatus.INTRANS:
        raise RuntimeError(
            "lock_stale_episode must run inside connection.transaction(): the "
            "row lock has to last until the notice is recorded"
        )
    require_table(connection, ALERT_STATE_TABLE)
    # The row exists from the first check on; creating it here (not in the migration) keeps a
    # table emptied by hand working. Two first checks at once: the second waits on the key.
    connection.execute(
        "INSERT INTO public.backup_alert_state (alert) VALUES (%s) ON CONFLICT (alert) DO NOTHING",
        (STALE,),
    )
    row = connection.execute(
        "SELECT alerted_at, last_notified_at, reminders_sent FROM public.backup_alert_state "
        "WHERE alert = %s FOR UPDATE",
        (STALE,),
    ).fetchone()
    if row is None or row[0] is None:  # (the INSERT above makes the row; None: no open episode)
        return None
    alerted_at, last_notified_at, reminders_sent = row
    return StaleEpisode(
        alerted_at=alerted_at,
        last_notified_at=last_notified_at or alerted_at,
        reminders_sent=reminders_sent,
    )


def record_stale_notice(connection: psycopg.Connection, notice: StaleNotice, now: datetime) -> None:
    """Record a notice that was sent: an alert opens the episode, a reminder moves its clock on, a
    recovered notice closes it. ``now`` is the checking worker's clock, the one ``stale_notice``
    compared against."""
    if notice is StaleNotice.ALERT:
        statement = (
            "alerted_at = %(now)s, last_notified_at = %(now)s, reminders_sent = 0, "
            "recovered_at = NULL"
        )
    elif notice is StaleNotice.REMINDER:
        statement = "last_notified_at = %(now)s, reminders_sent = reminders_sent + 1"
    elif notice is StaleNotice.RECOVERED:
        statement = (
            "alerted_at = NULL, last_notified_at = NULL, reminders_sent = 0, recovered_at = %(now)s"
        )
    else:
        return
    connection.execute(
        f"UPDATE public.backup_alert_state SET {statement}, updated_at = now() "
        "WHERE alert = %(alert)s",
        {"now": now, "alert": STALE},
    )
