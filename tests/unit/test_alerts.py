"""What alerts say: the run, the cause from the history row, links to the run and the Backups page;
and when a stale project is worth a notice (one per episode)."""

from datetime import datetime, timedelta, timezone

import pytest

from supabase_backup.records.alert_state import REMINDER_EARLY_ALLOWANCE, StaleEpisode, StaleNotice
from supabase_backup.alerts.settings import AlertSettings
from supabase_backup.alerts.decisions import is_stale, stale_notice
from supabase_backup.alerts.messages import recovered_notice, run_alert, stale_alert
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
                                         ("supabase_backup_max_backup_age_hours", "soon"),
                                         ("supabase_backup_max_backup_age_hours", "abc"),
                                         ("supabase_backup_max_backup_age_hours", "nan"),
                                         ("supabase_backup_max_backup_age_hours", "NaN"),
                                         ("supabase_backup_max_backup_age_hours", "inf"),
                                         ("supabase_backup_max_backup_age_hours", "-inf"),
                                         ("supabase_backup_max_backup_age_hours", "1e999"),
                                         ("supabase_backup_stale_reminder_hours", "-1"),
                                         ("supabase_backup_stale_reminder_hours", "daily"),
                                         ("supabase_backup_stale_reminder_hours", "nan"),
                                         ("supabase_backup_stale_reminder_hours", "inf")])
def test_bad_alert_variables_are_named(name, value):
    with pytest.raises(ConfigurationError, match=name):
        AlertSettings.from_variables(lambda n, d: value if n == name else d, None)


@pytest.mark.parametrize("name", ["supabase_backup_max_backup_age_hours",
                                  "supabase_backup_stale_reminder_hours"])
def test_a_bad_staleness_variable_never_stops_a_failure_alert(name):
    settings = AlertSettings.from_variables(
        lambda n, d: "soon" if n == name else ("ops@example.com" if n.endswith("email") else d),
        None, staleness=False)
    assert settings.configured and settings.email_to == ("ops@example.com",)


def test_settings_defaults_and_base_url_fallback():
    settings = AlertSettings.from_variables(lambda n, d: d, "http://airflow:8080/")
    assert not settings.configured and settings.base_url == "http://airflow:8080"
    assert settings.smtp_conn_id == "smtp_default" and settings.max_backup_age_hours is None
    assert settings.stale_reminder_hours == 24


@pytest.mark.parametrize("value, hours", [("0", 0.0), ("12", 12.0), ("0.5", 0.5), (" 48 ", 48.0),
                                          ("", 24.0)])
def test_the_reminder_interval_variable(value, hours):
    settings = AlertSettings.from_variables(
        lambda n, d: value if n == "supabase_backup_stale_reminder_hours" else d, None)
    assert settings.stale_reminder_hours == hours


# --- one notice per stale episode ----------------------------------------------------------------

ALERTED = datetime(2026, 11, 27, 10, 0, 5, tzinfo=timezone.utc)
OPEN = StaleEpisode(alerted_at=ALERTED, last_notified_at=ALERTED)
REMINDED = StaleEpisode(alerted_at=ALERTED, last_notified_at=ALERTED + timedelta(hours=24),
                        reminders_sent=1)
BERLIN = timezone(timedelta(hours=1))
TOKYO = timezone(timedelta(hours=9))
ALLOWANCE = REMINDER_EARLY_ALLOWANCE
ALERT, REMINDER, RECOVERED, QUIET = (StaleNotice.ALERT, StaleNotice.REMINDER,
                                     StaleNotice.RECOVERED, StaleNotice.QUIET)


@pytest.mark.parametrize("stale, episode, now, reminder_hours, expected", [
    # becoming stale: one alert, whatever the reminder setting
    (True, None, ALERTED, 24, ALERT),
    (True, None, ALERTED, 0, ALERT),
    # staying stale: quiet at the next hourly checks
    (True, OPEN, ALERTED + timedelta(hours=1), 24, QUIET),
    (True, OPEN, ALERTED + timedelta(hours=23), 24, QUIET),
    # the reminder boundary: due at 24 h less the allowance, so the 24th hourly check (started a
    # few seconds earlier in the hour than the one that alerted) reminds, not the 25th
    (True, OPEN, ALERTED + timedelta(hours=24) - ALLOWANCE - timedelta(seconds=1), 24, QUIET),
    (True, OPEN, ALERTED + timedelta(hours=24) - ALLOWANCE, 24, REMINDER),
    (True, OPEN, ALERTED + timedelta(hours=24) - timedelta(seconds=3), 24, REMINDER),
    (True, OPEN, ALERTED + timedelta(hours=30), 24, REMINDER),  # checks missed (scheduler down)
    # the next reminder counts from the last one, not from the alert
    (True, REMINDED, ALERTED + timedelta(hours=25), 24, QUIET),
    (True, REMINDED, ALERTED + timedelta(hours=47), 24, QUIET),
    (True, REMINDED, ALERTED + timedelta(hours=48), 24, REMINDER),
    # reminder 0: never, however long it stays stale
    (True, OPEN, ALERTED + timedelta(days=30), 0, QUIET),
    # a short interval reminds at every hourly check
    (True, OPEN, ALERTED + timedelta(hours=1) - timedelta(seconds=4), 1, REMINDER),
    # recovery: one notice when an alert was sent, nothing when none was
    (False, OPEN, ALERTED + timedelta(hours=2), 24, RECOVERED),
    (False, REMINDED, ALERTED + timedelta(days=3), 0, RECOVERED),
    (False, None, ALERTED, 24, QUIET),
    # time zones: the same instants written in other offsets decide the same way
    (True, StaleEpisode(alerted_at=ALERTED.astimezone(TOKYO),
                        last_notified_at=ALERTED.astimezone(TOKYO)),
     (ALERTED + timedelta(hours=24) - ALLOWANCE).astimezone(BERLIN), 24, REMINDER),
    (True, StaleEpisode(alerted_at=ALERTED.astimezone(TOKYO),
                        last_notified_at=ALERTED.astimezone(TOKYO)),
     (ALERTED + timedelta(hours=23)).astimezone(BERLIN), 24, QUIET),
    # a clock that went backwards (a skewed worker) stays quiet rather than reminding
    (True, OPEN, ALERTED - timedelta(hours=2), 24, QUIET),
])
def test_stale_notice(stale, episode, now, reminder_hours, expected):
    assert stale_notice(stale=stale, episode=episode, now=now,
                        reminder_hours=reminder_hours) is expected


@pytest.mark.parametrize("now, episode", [
    (datetime(2026, 11, 28, 7), None),
    (NOW, StaleEpisode(alerted_at=datetime(2026, 11, 27, 7), last_notified_at=NOW)),
])
def test_stale_notice_refuses_naive_times(now, episode):
    with pytest.raises(ValueError, match="timezone-aware"):
        stale_notice(stale=True, episode=episode, now=now, reminder_hours=24)


def test_a_day_of_hourly_checks_sends_one_alert_and_one_reminder():
    """The decision played over 49 hourly checks whose start drifts by a few seconds, the episode
    kept the way alert_state keeps it."""
    episode, sent = None, []
    for hour in range(49):
        now = ALERTED + timedelta(hours=hour, seconds=(-1) ** hour * 4)
        notice = stale_notice(stale=True, episode=episode, now=now, reminder_hours=24)
        if notice is ALERT:
            episode = StaleEpisode(alerted_at=now, last_notified_at=now)
        elif notice is REMINDER:
            episode = StaleEpisode(alerted_at=episode.alerted_at, last_notified_at=now,
                                   reminders_sent=episode.reminders_sent + 1)
        if notice is not QUIET:
            sent.append((hour, notice))
    assert sent == [(0, ALERT), (24, REMINDER), (48, REMINDER)]


def test_what_the_reminder_and_the_recovered_notice_say():
    latest = {"run_id": "old", "s3_bucket": "b", "s3_key": "p/backup.zip",
              "finished_at": NOW - timedelta(hours=30)}
    first = stale_alert(latest=latest, max_age_hours=26, now=NOW, base_url="https://af",
                        dag_id="supabase_backup", reminder_hours=24)
    assert first.subject == "[supabase-backup] STALE: no verified backup in 26 h"
    assert "Next reminder in 24 h while it stays stale" in first.text
    assert "No reminders" in stale_alert(latest=latest, max_age_hours=26, now=NOW,
                                         base_url="https://af", dag_id="d", reminder_hours=0).text
    episode = StaleEpisode(alerted_at=NOW - timedelta(hours=24),
                           last_notified_at=NOW - timedelta(hours=24))
    reminder = stale_alert(latest=latest, max_age_hours=26, now=NOW, base_url="https://af",
                           dag_id="supabase_backup", reminder_hours=24, episode=episode)
    assert reminder.subject == "[supabase-backup] STILL STALE: no verified backup in 26 h"
    assert ("Still stale since the first alert, 2026-11-27 07:00:00 UTC (24.0 h ago); reminder 1."
            in reminder.text)
    fresh = {**latest, "run_id": "scheduled__new", "finished_at": NOW - timedelta(minutes=5)}
    recovered = recovered_notice(latest=fresh, episode=episode, now=NOW, base_url="https://af",
                                 dag_id="supabase_backup")
    assert recovered.subject == "[supabase-backup] RECOVERED: verified backup scheduled__new"
    assert ("run scheduled__new, s3://b/p/backup.zip, finished 2026-11-28 06:55:00 UTC"
            in recovered.text)
    assert "(24.0 h ago); 0 reminders sent." in recovered.text
    assert "https://af/backup/ui" in recovered.text


# --- the notifier finds the drill's row (issue 19, item 9) ------------------------------------------


def test_the_drill_notifier_reads_the_drill_row_and_sends_its_cause(monkeypatch):
    from contextlib import nullcontext
    from types import SimpleNamespace

    from supabase_backup.airflow import alerting

    dag_run_id = "manual__2026-12-07T20:00:00+00:00"
    drill_row = {**ROW, "status": "failed", "run_id": f"supabase_backup_restore_drill:{dag_run_id}",
                 "error": "verify_backup: Archive verification failed for s3://b/k.zip: damaged "
                          "member: Bad CRC-32 for file 'db/backup.sql'",
                 "details": {"archive_damage": {"step": "verify_backup", "finding": "…",
                                                "backup_run_id": "scheduled__2026-12-07"}}}
    rows = {drill_row["run_id"]: drill_row}
    looked_up, sent = [], []

    def get_by_run_id(connection, run_id):
        looked_up.append(run_id)
        return rows.get(run_id)

    monkeypatch.setattr(alerting.history, "get_by_run_id", get_by_run_id)
    monkeypatch.setattr(alerting, "database_settings",
                        lambda: SimpleNamespace(connect=lambda autocommit: nullcontext(None)))
    monkeypatch.setattr(alerting, "read_alert_settings", lambda staleness=True: SimpleNamespace(
        configured=True, base_url="https://af"))
    monkeypatch.setattr(alerting, "send_alert",
                        lambda alert, settings, context: sent.append(alert) or ["email"])
    dag_run = SimpleNamespace(run_id=dag_run_id, dag_id="supabase_backup_restore_drill")

    alerting.backup_alert_notifier("drill").notify({"dag_run": dag_run, "ti": None})

    assert looked_up == [drill_row["run_id"]]
    [alert] = sent
    assert f"Cause: {drill_row['error']}" in alert.text
    assert "task(s) record_drill failed" not in alert.text
    assert "Backup scheduled__2026-12-07 is now marked damaged" in alert.text
