"""
### Supabase backup: restore drill

Proves a backup by restoring it. Takes the newest successful backup from `backup_history` (or the
run named in the trigger form), reads the archive back from S3 and verifies every member, restores
its database into a new scratch database `drill_…` on the server of the `supabase_backup_drill_db`
connection, and compares every table's exact row count and content checksum with the figures the
backup recorded inside the dump's own snapshot. The scratch database is dropped whatever happens.

- **Outcome**: a `kind = 'drill'` row in `backup_history` (run id `supabase_backup_restore_drill:<run id>`);
  its `details` hold the comparison, and a failed drill's error names the tables that differ. A
  failed drill fails this DAG run, so alerts fire.
- **Extensions** the drill server lacks are skipped; their tables are listed as not compared.
- **Schedule**: weekly (`SUPABASE_BACKUP_DRILL_SCHEDULE`, `none` for on demand only).

Connections: `supabase_db` (where `backup_history` lives), `aws_default`, `supabase_backup_drill_db`
(a Postgres server the drill may create and drop databases on, never the production one).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task
from airflow.task.trigger_rule import TriggerRule

from supabase_backup import config
from supabase_backup.airflow import alerting, drill_run
from supabase_backup.airflow.drill_run import run_drill_step
from supabase_backup.restore import drill

RETRY_DELAY = timedelta(seconds=int(os.environ.get("SUPABASE_BACKUP_RETRY_DELAY_SECONDS", "60")))


@dag(
    dag_id=config.DRILL_DAG_ID,
    schedule=config.drill_schedule_from_environment(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["backup", "supabase", "restore-drill"],
    doc_md=__doc__,
    # A failed drill is a loud failure: the same notifiers as a failed backup (when configured).
    on_failure_callback=alerting.backup_alert_notifier("drill"),
    default_args={
        "retries": 2,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=2),
        "on_failure_callback": drill_run.on_task_failure,
    },
    params={
        "backup_run_id": Param(
            None,
            type=["null", "string"],
            title="Backup run id",
            description="Drill this backup (its supabase_backup run id) "
            "instead of the newest successful one.",
        ),
    },
)
def supabase_backup_restore_drill():
    @task(execution_timeout=timedelta(minutes=5))
    def plan_drill(params=None, dag_run=None) -> dict:
        return drill_run.start_drill(dag_run, params)

    @task(execution_timeout=timedelta(hours=4))
    def verify_backup(plan: dict) -> dict:
        return run_drill_step(drill.verify_backup, plan)

    @task(execution_timeout=timedelta(minutes=10))
    def create_scratch_database(plan: dict) -> None:
        run_drill_step(drill.create_scratch_database, plan)

    @task(execution_timeout=timedelta(hours=6))
    def restore_backup(plan: dict) -> dict:
        return run_drill_step(drill.restore_backup, plan)

    @task(execution_timeout=timedelta(hours=4))
    def compare_with_manifest(plan: dict, restored: dict) -> dict:
        return run_drill_step(drill.compare_with_manifest, plan, restored)

    @task(execution_timeout=timedelta(minutes=30))
    def drop_scratch_database(plan: dict) -> None:
        run_drill_step(drill.drop_scratch_database, plan)

    @task(
        trigger_rule=TriggerRule.ALL_DONE,
        retries=3,
        execution_timeout=timedelta(minutes=10),
        on_failure_callback=drill_run.on_outcome_failure,
    )
    def record_drill(
        plan: dict | None, verified: dict | None, compared: dict | None, ti=None, dag_run=None
    ) -> dict:
        return drill_run.finish_drill(plan, verified, compared, ti=ti, dag_run=dag_run)

    plan = plan_drill()
    verified = verify_backup(plan)
    scratch = create_scratch_database(plan)
    verified >> scratch
    restored = restore_backup(plan)
    scratch >> restored
    compared = compare_with_manifest(plan, restored)
    compared >> drop_scratch_database(plan).as_teardown(setups=scratch)
    record_drill(plan, verified, compared)


supabase_backup_restore_drill()
