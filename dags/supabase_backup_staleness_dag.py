"""
### Supabase backup: staleness check

Every hour, checks that `backup_history` holds a verified successful backup newer than the Airflow
Variable `supabase_backup_max_backup_age_hours` (e.g. 26 for a daily backup). Without that Variable
the check is skipped.

**The task fails at every check that finds the project stale**, so this grid stays truthful. The
notifications (e-mail to `supabase_backup_alert_email`, Slack through the connection named by
`supabase_backup_alert_slack_conn_id`) are de-duplicated per stale episode instead:

- one **alert** when the project becomes stale;
- quiet while it stays stale, except a **reminder** every `supabase_backup_stale_reminder_hours`
  (default 24; `0` = never remind);
- one **recovered** notice when a verified backup appears again after an alert, then quiet.

The open episode lives in the table `backup_alert_state` of the Supabase project's database, beside
`backup_history`: it survives Airflow restarts, and a row lock lets one check decide at a time
however many schedulers run (`include/supabase_backup/alert_state.py` says why not a Variable). A
notice that cannot be sent is not recorded, so the retry sends it. Without that table (the migration
not re-applied after an upgrade) every stale check alerts, and the alert names the migration.

**A check that cannot run** (a mistyped Variable such as `supabase_backup_max_backup_age_hours=abc`,
an unreachable database) fails the task and sends one alert naming the cause, through the same
channels; a stale project's failure does not send a second notice.

Why a DAG and not an Airflow 3 deadline alert: a deadline watches one DAG run's duration, but a
backup can go stale with no run at all (the DAG paused, the scheduler down) or with runs that end
`incomplete`; only the history says whether a verified backup is recent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from supabase_backup.airflow import staleness


@dag(
    dag_id="supabase_backup_staleness",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["backup", "supabase", "alerts"],
    doc_md=__doc__,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(minutes=5),
    },
)
def supabase_backup_staleness():
    @task(on_failure_callback=staleness.alert_check_failure)
    def check_backup_age(**context) -> dict:
        return staleness.check_backup_age(context)

    check_backup_age()


supabase_backup_staleness()
