"""
### Supabase backup

A complete, verifiable backup of one Supabase project: the Postgres database (`pg_dump`), every
Auth user and every object of every Storage bucket, packed into one zip on S3
(`backup-YYYY-MM-DD-HH-mm-UTC.zip`, layout in `include/supabase_backup/FORMAT.md`) and recorded in
the `backup_history` table.

- **Enabled setting**: `system_settings_kv.backup_enabled`. When it is false the run records a
  `skipped` row and stops; trigger with `force` to back up anyway.
- **Consistency**: the dump and the storage inventory come from one database snapshot; `reconcile`
  fetches what the Storage listing missed and marks objects created, changed or deleted after it.
- **Success** means the archive was read back from S3 and every member's sha256 matched.

Connections: `supabase_db`, `supabase_api`, `aws_default`. Variables: `supabase_backup_s3_bucket`
(required) and the optional ones in the README.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, task
from airflow.task.trigger_rule import TriggerRule

from supabase_backup import config, steps

ARCHIVE_ASSET = Asset(name="supabase_backup_archive", uri="supabase-backup://archive")
RETRY_DELAY = timedelta(seconds=int(os.environ.get("SUPABASE_BACKUP_RETRY_DELAY_SECONDS", "60")))


@dag(
    dag_id=config.DAG_ID,
    schedule=config.schedule_from_environment(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["backup", "supabase"],
    doc_md=__doc__,
    default_args={
        "retries": 2,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=2),
        "on_failure_callback": steps.on_task_failure,
    },
    params={
        "force": Param(False, type="boolean", title="Force",
                       description="Back up even when backup_enabled is false."),
        "buckets": Param(None, type=["null", "array"], items={"type": "string"},
                         title="Buckets",
                         description="Only these buckets (default: the configured list, or all)."),
        "include_database": Param(True, type="boolean", title="Database",
                                  description="Include the pg_dump of the database."),
        "include_auth": Param(True, type="boolean", title="Auth users",
                              description="Include auth/users.json."),
        "include_storage": Param(True, type="boolean", title="Storage",
                                 description="Include the Storage buckets."),
    },
)
def supabase_backup():
    @task.short_circuit(execution_timeout=timedelta(minutes=5))
    def check_enabled(params=None, run_id=None, dag_run=None) -> bool:
        return steps.check_enabled(run_id, dag_run.run_type, dag_run.conf, params["force"])

    @task(execution_timeout=timedelta(hours=6))
    def dump_database(params=None, run_id=None) -> dict:
        return steps.dump_database(run_id, params["include_database"], params["include_storage"],
                                   params["buckets"])

    @task(execution_timeout=timedelta(hours=2))
    def export_auth_users(params=None, run_id=None) -> dict:
        return steps.export_auth_users(run_id, params["include_auth"])

    @task(execution_timeout=timedelta(minutes=10))
    def list_buckets(params=None, run_id=None) -> list[str]:
        return steps.list_buckets(run_id, params["include_storage"], params["buckets"])

    @task(execution_timeout=timedelta(hours=6), max_active_tis_per_dagrun=4)
    def export_bucket(bucket: str, run_id=None) -> dict:
        return steps.export_bucket(run_id, bucket)

    @task(trigger_rule=TriggerRule.NONE_FAILED, execution_timeout=timedelta(hours=2))
    def reconcile(bucket_ids: list[str], database_summary: dict, params=None,
                  run_id=None) -> dict | None:
        return steps.reconcile(run_id, bucket_ids, database_summary, params["include_storage"])

    @task(execution_timeout=timedelta(hours=4))
    def build_archive(database_summary: dict, auth_summary: dict, storage_summary: dict,
                      bucket_ids: list[str], params=None, run_id=None, dag_run=None) -> dict:
        return steps.build_archive(run_id, steps.run_facts(dag_run), database_summary, auth_summary,
                                   storage_summary, bucket_ids, params["include_storage"])

    @task(execution_timeout=timedelta(hours=4))
    def upload_archive(archive_summary: dict, dag_run=None) -> dict:
        return steps.upload_archive(steps.run_facts(dag_run)["started_at"], archive_summary)

    @task(outlets=[ARCHIVE_ASSET], execution_timeout=timedelta(hours=4))
    def verify_upload(archive_summary: dict, location: dict, outlet_events=None) -> dict:
        verified = steps.verify_upload(archive_summary, location)
        outlet_events[ARCHIVE_ASSET].extra = {
            "s3_bucket": verified["s3_bucket"], "s3_key": verified["s3_key"],
            "sha256": verified["sha256"], "bytes": verified["bytes"],
        }
        return verified

    @task(trigger_rule=TriggerRule.ALL_DONE, on_failure_callback=None, retries=3,
          execution_timeout=timedelta(minutes=10))
    def record_history(ti=None, run_id=None) -> dict:
        return steps.record_history(ti, run_id)

    @task(execution_timeout=timedelta(minutes=30), on_failure_callback=None)
    def cleanup_staging(run_id=None) -> None:
        steps.cleanup_staging(run_id)

    enabled = check_enabled()
    database_summary = dump_database()
    auth_summary = export_auth_users()
    bucket_ids = list_buckets()
    exports = export_bucket.expand(bucket=bucket_ids)
    storage_summary = reconcile(bucket_ids, database_summary)
    enabled >> [database_summary, auth_summary, bucket_ids]
    exports >> storage_summary
    archive = build_archive(database_summary, auth_summary, storage_summary, bucket_ids)
    location = upload_archive(archive)
    verified = verify_upload(archive, location)
    verified >> record_history() >> cleanup_staging().as_teardown(setups=enabled)


supabase_backup()
