"""
### Supabase backup

A complete, verifiable backup of one Supabase project: the Postgres database (`pg_dump`), every
Auth user and every object of every Storage bucket, packed into one zip on S3
(`backup-YYYY-MM-DD-HH-mm-UTC.zip`, layout in `include/supabase_backup/archive/FORMAT.md`) and recorded in
the `backup_history` table.

- **Run plan**: `plan_run` resolves the Variables and this form's Params once and hands the plan to
  every later task, so editing a Variable mid-run cannot split the run.
- **Enabled setting**: `system_settings_kv.backup_enabled`. When it is false the run records a
  `skipped` row and stops; trigger with `force` to back up anyway.
- **Parts**: a part left out (`include_database`, `include_auth`, `include_storage`) shows its
  tasks as skipped.
- **Consistency**: the dump and the storage inventory come from one database snapshot; `reconcile`
  fetches what the Storage listing missed and marks objects created, changed or deleted after it.
- **Big buckets**: a bucket with more objects than `supabase_backup_shard_max_objects` is exported
  by several `export_bucket` tasks over disjoint key ranges (`media [2/4]`), which `reconcile`
  merges back into one bucket: the archive is the same as a one-task export's.
- **Success** means the archive was read back from S3 and every member's sha256 matched; tasks
  after `verify_upload` can never turn a verified backup into a failed one.

Connections: `supabase_db`, `supabase_api`, `aws_default`. Variables: `supabase_backup_s3_bucket`
(required) and the optional ones in the README.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, task
from airflow.task.trigger_rule import TriggerRule

from supabase_backup import config, trigger_form
from supabase_backup.airflow import alerting, backup_run
from supabase_backup.airflow.backup_run import run_step
from supabase_backup.backup import tasks
from supabase_backup.destination import retention

ARCHIVE_ASSET = Asset(name="supabase_backup_archive", uri="supabase-backup://archive")
BACKUPS_PAGE = "/plugin/backups"  # the Backups page of the plugin, on this Airflow's own address
RETRY_DELAY = timedelta(seconds=int(os.environ.get("SUPABASE_BACKUP_RETRY_DELAY_SECONDS", "60")))


def part_included(part: str):
    """A run_if condition: the task runs only when the trigger form includes ``part``."""
    return lambda context: bool(context["params"][part])


@dag(
    dag_id=config.DAG_ID,
    schedule=config.schedule_from_environment(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["backup", "supabase"],
    doc_md=__doc__,
    # A failed or incomplete run (record_history fails) or a failed retention fails the DAG run:
    # one alert per failed run, naming the cause from its backup_history row.
    on_failure_callback=alerting.backup_alert_notifier(),
    default_args={
        "retries": 2,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=2),
        "on_failure_callback": backup_run.on_task_failure,
        "on_retry_callback": backup_run.on_task_retry,
    },
    params={field.name: Param(**field.param_arguments()) for field in trigger_form.FIELDS},
)
def supabase_backup():
    @task.short_circuit(execution_timeout=timedelta(minutes=5))
    def plan_run(params=None, dag_run=None, ti=None) -> dict | None:
        return backup_run.start_run(dag_run, params, ti)

    @task(execution_timeout=timedelta(minutes=10))
    def prepare_staging(plan: dict) -> None:
        run_step(tasks.prepare_staging, plan)

    @task.run_if(part_included("include_database"), skip_message="include_database is false")
    @task(execution_timeout=timedelta(hours=6))
    def dump_database(plan: dict) -> dict:
        return run_step(tasks.dump_database, plan)

    @task.run_if(part_included("include_auth"), skip_message="include_auth is false")
    @task(execution_timeout=timedelta(hours=2))
    def export_auth_users(plan: dict) -> dict:
        return run_step(tasks.export_auth_users, plan)

    @task.run_if(part_included("include_storage"), skip_message="include_storage is false")
    @task(execution_timeout=timedelta(minutes=10))
    def list_buckets(plan: dict) -> list[str]:
        return run_step(tasks.list_buckets, plan)

    @task(execution_timeout=timedelta(minutes=30))
    def plan_bucket_exports(plan: dict, bucket_ids: list[str]) -> list[dict]:
        return run_step(tasks.plan_bucket_exports, plan, list(bucket_ids))

    # One task per bucket, or per shard of a bucket bigger than supabase_backup_shard_max_objects;
    # the grid shows "media" or "media [2/4]".
    @task(
        execution_timeout=timedelta(hours=6),
        max_active_tis_per_dagrun=4,
        map_index_template="{{ task.op_kwargs['unit']['label'] }}",
    )
    def export_bucket(plan: dict, unit: dict) -> dict:
        return run_step(tasks.export_bucket, plan, unit)

    @task.run_if(part_included("include_storage"), skip_message="include_storage is false")
    @task(trigger_rule=TriggerRule.NONE_FAILED, execution_timeout=timedelta(hours=2))
    def reconcile(
        plan: dict,
        bucket_ids: list[str],
        database_summary: dict | None,
        units: list[dict],
        export_summaries: list[dict],
    ) -> dict:
        return run_step(
            tasks.reconcile,
            plan,
            list(bucket_ids),
            database_summary,
            list(units),
            list(export_summaries),  # the mapped results come as a lazy sequence
        )

    @task(trigger_rule=TriggerRule.NONE_FAILED, execution_timeout=timedelta(hours=4))
    def build_archive(
        plan: dict,
        database_summary: dict | None,
        auth_summary: dict | None,
        storage_summary: dict | None,
        bucket_ids: list[str] | None,
    ) -> dict:
        return run_step(
            tasks.build_archive,
            plan,
            database_summary,
            auth_summary,
            storage_summary,
            list(bucket_ids) if bucket_ids else None,
        )

    @task(execution_timeout=timedelta(hours=4))
    def upload_archive(plan: dict, archive: dict) -> dict:
        return run_step(tasks.upload_archive, plan, archive)

    @task(outlets=[ARCHIVE_ASSET], execution_timeout=timedelta(hours=4))
    def verify_upload(plan: dict, archive: dict, location: dict, outlet_events=None) -> dict:
        verified = run_step(tasks.verify_upload, plan, archive, location)
        outlet_events[ARCHIVE_ASSET].extra = {
            "s3_url": verified["s3_url"],
            "s3_bucket": verified["s3_bucket"],
            "s3_key": verified["s3_key"],
            "sha256": verified["sha256"],
            "bytes": verified["bytes"],
            "run_id": plan["run_id"],
            "backups_page": BACKUPS_PAGE,
        }
        return verified

    # Its failure callback only ends the log on the run's reason: this task wrote the row itself.
    @task(
        trigger_rule=TriggerRule.ALL_DONE,
        on_failure_callback=backup_run.on_outcome_failure,
        retries=3,
        execution_timeout=timedelta(minutes=10),
    )
    def record_history(
        plan: dict | None,
        verified: dict | None,
        archive: dict | None,
        database_summary: dict | None,
        auth_summary: dict | None,
        storage_summary: dict | None,
        ti=None,
        dag_run=None,
    ) -> dict:
        return backup_run.record_history(
            plan,
            verified,
            {
                "archive": archive,
                "database": database_summary,
                "auth": auth_summary,
                "storage": storage_summary,
            },
            ti=ti,
            dag_run=dag_run,
        )

    # After a verified run. Its failure callback only alerts (with the exception): it never writes
    # the history row, so a failed retention cannot turn the verified success row into a failed one.
    @task(
        execution_timeout=timedelta(minutes=30),
        on_failure_callback=alerting.backup_alert_notifier(after_verification=True),
    )
    def apply_retention(plan: dict, verified: dict) -> dict:
        if not plan.get("retention"):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(
                "supabase_backup_retention is not set: every archive is kept"
            )
        return run_step(retention.apply_after_run, plan, verified)

    @task(execution_timeout=timedelta(minutes=30), on_failure_callback=None)
    def cleanup_staging(plan: dict | None) -> None:
        if plan:
            run_step(tasks.cleanup_staging, plan)

    plan = plan_run()
    staging = prepare_staging(plan)
    database_summary = dump_database(plan)
    auth_summary = export_auth_users(plan)
    bucket_ids = list_buckets(plan)
    staging >> [database_summary, auth_summary, bucket_ids]
    units = plan_bucket_exports(plan, bucket_ids)
    export_summaries = export_bucket.partial(plan=plan).expand(unit=units)
    storage_summary = reconcile(plan, bucket_ids, database_summary, units, export_summaries)
    archive = build_archive(plan, database_summary, auth_summary, storage_summary, bucket_ids)
    location = upload_archive(plan, archive)
    verified = verify_upload(plan, archive, location)
    finished = record_history(
        plan, verified, archive, database_summary, auth_summary, storage_summary
    )
    finished >> cleanup_staging(plan).as_teardown(setups=staging)
    finished >> apply_retention(plan, verified)


supabase_backup()
