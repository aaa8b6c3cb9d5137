"""The body of every task of the ``supabase_backup`` DAG, one function per task.

The DAG file only wires these together. Each step resolves its connections and Variables at run
time (never at parse time) and hands plain values to the module that owns the work. Results that
travel between tasks are small dicts (XCom); bulk data stays in the run's staging folder.
"""

from __future__ import annotations

import json
import logging
import platform
from datetime import datetime, timezone

from supabase_backup import __version__, config, database, history, settings as enabled_setting
from supabase_backup.errors import BackupError, ConfigurationError, InventoryMismatch
from supabase_backup.staging import StagingArea

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Run-time resolution of connections and Variables


def load_backup_settings() -> config.BackupSettings:
    from airflow.sdk import Variable

    return config.BackupSettings.from_variables(
        lambda name, default: Variable.get(name, default=default)
    )


def database_settings(conn_id: str = config.DATABASE_CONN_ID) -> database.DatabaseSettings:
    """Needs only the connection, not the Variables: a run that fails on a missing Variable can
    still record why in backup_history."""
    from airflow.sdk import BaseHook

    return database.DatabaseSettings.from_connection(BaseHook.get_connection(conn_id))


def api_settings(backup_settings: config.BackupSettings):
    from airflow.sdk import BaseHook

    from supabase_backup.api_client import ApiSettings

    connection = BaseHook.get_connection(backup_settings.api_conn_id)
    host = (connection.host or "").rstrip("/")
    if not host:
        raise ConfigurationError(
            f"connection {backup_settings.api_conn_id} has no host: set it to the project URL, "
            "e.g. https://<project-ref>.supabase.co"
        )
    if "://" not in host:
        scheme = connection.conn_type if connection.conn_type in ("http", "https") else "https"
        host = f"{scheme}://{host}" + (f":{connection.port}" if connection.port else "")
    key = connection.password or (connection.extra_dejson or {}).get("service_role_key")
    if not key:
        raise ConfigurationError(
            f"connection {backup_settings.api_conn_id} has no password: set it to the service "
            "role key (a service_role JWT or an sb_secret_… key)"
        )
    return ApiSettings(url=host, key=key)


def s3_hook(backup_settings: config.BackupSettings):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=backup_settings.aws_conn_id)


def staging_for(backup_settings: config.BackupSettings, run_id: str) -> StagingArea:
    return StagingArea.for_run(backup_settings.staging_root, run_id)


def run_facts(dag_run) -> dict:
    """What the manifest records about the DAG run."""
    return {
        "trigger": trigger_of(dag_run.run_type, dag_run.conf),
        "logical_date": dag_run.logical_date.isoformat() if dag_run.logical_date else None,
        "started_at": (dag_run.start_date or dag_run.run_after).isoformat(),
    }


def trigger_of(run_type: str, conf: dict | None) -> str:
    """scheduled | manual | api | asset. Runs started through the plugin or a REST client that
    passes ``{"trigger": "api"}`` in the conf count as api; every other manual run is manual."""
    run_type = str(getattr(run_type, "value", run_type))
    if run_type == "scheduled":
        return "scheduled"
    if run_type == "asset_triggered":
        return "asset"
    if (conf or {}).get("trigger") == "api":
        return "api"
    return "manual"


# ---------------------------------------------------------------------------------------------
# Tasks


def check_enabled(run_id: str, run_type: str, conf: dict | None, force: bool) -> bool:
    """Record the run as running and go on, or record it skipped and stop everything after."""
    backup_settings = load_backup_settings()  # fails early on a missing Variable
    trigger = trigger_of(run_type, conf)
    with database_settings(backup_settings.database_conn_id).connect(autocommit=True) as connection:
        enabled = enabled_setting.read_backup_enabled(connection)
        if not enabled and not force:
            reason = (
                "backups are disabled (system_settings_kv.backup_enabled = false); "
                "trigger with force=true to back up anyway"
            )
            history.record_skipped(connection, run_id, trigger, reason)
            log.warning("Skipping: %s", reason)
            return False
        history.record_running(connection, run_id, trigger)
    if not enabled:
        log.warning("Backups are disabled, but force=true: backing up anyway")
    return True


def dump_database(run_id: str, include_database: bool, include_storage: bool,
                  buckets: list[str] | None) -> dict:
    backup_settings = load_backup_settings()
    staging = staging_for(backup_settings, run_id)
    selected = list(buckets) if buckets else (list(backup_settings.buckets or []) or None)
    if not include_database and not include_storage:
        return {"included": False}
    return database.dump_database(
        database_settings(backup_settings.database_conn_id),
        staging,
        include_dump=include_database,
        include_inventory=include_storage,
        inventory_buckets=selected,
        pg_dump_path=backup_settings.pg_dump_path,
    )


def export_auth_users(run_id: str, include_auth: bool) -> dict:
    if not include_auth:
        return {"included": False}
    from supabase_backup.auth_users import export_auth_users as export_users
    from supabase_backup.staging import ensure_parent

    backup_settings = load_backup_settings()
    staging = staging_for(backup_settings, run_id)
    summary = export_users(api_settings(backup_settings), ensure_parent(staging.auth_users))
    return {"included": True, "member": "auth/users.json", **summary}


def list_buckets(run_id: str, include_storage: bool, requested: list[str] | None) -> list[str]:
    """The bucket ids to export: the Param, else the Variable, else every bucket. Their settings
    (public, size limit, MIME types) are staged for the manifest, so a restore can recreate them."""
    if not include_storage:
        return []
    from supabase_backup.api_client import open_client
    from supabase_backup.staging import ensure_parent
    from supabase_backup.storage import list_buckets as list_all_buckets

    backup_settings = load_backup_settings()
    with open_client(api_settings(backup_settings)) as client:
        records = list_all_buckets(client)
    existing = [bucket["id"] for bucket in records]
    wanted = list(requested or backup_settings.buckets or existing)
    unknown = [bucket for bucket in wanted if bucket not in existing]
    if unknown:
        raise ConfigurationError(
            f"bucket(s) {', '.join(map(repr, unknown))} do not exist in the project "
            f"(it has {', '.join(map(repr, existing)) or 'no buckets'})"
        )
    bucket_list = ensure_parent(staging_for(backup_settings, run_id).bucket_list)
    bucket_list.write_text(json.dumps([bucket for bucket in records if bucket["id"] in wanted]))
    log.info("Backing up %d bucket(s): %s", len(wanted), ", ".join(wanted))
    return wanted


def export_bucket(run_id: str, bucket_id: str) -> dict:
    from supabase_backup.storage import export_bucket as export_one_bucket

    backup_settings = load_backup_settings()
    staging = staging_for(backup_settings, run_id)
    bucket = staging.bucket(bucket_id)
    summary = export_one_bucket(  # a retry starts the bucket again from nothing
        api_settings(backup_settings), bucket,
        concurrency=backup_settings.download_concurrency,
    )
    with (bucket.folder / "summary.json").open("w", encoding="utf-8") as output:
        json.dump(summary, output)
    return summary


def reconcile(run_id: str, bucket_ids: list[str], database_summary: dict,
              include_storage: bool = True) -> dict | None:
    if not include_storage:
        return None
    from supabase_backup import reconcile as reconciler
    from supabase_backup.storage import fetch_objects

    backup_settings = load_backup_settings()
    staging = staging_for(backup_settings, run_id)
    api = api_settings(backup_settings)
    db = database_settings(backup_settings.database_conn_id)
    have_inventory = "inventory_objects" in (database_summary or {})
    # The inventory covers the same selection as list_buckets, so a bucket only the database
    # knows would silently go missing from the archive: refuse that.
    in_inventory = set((database_summary or {}).get("inventory_by_bucket", {}))
    not_exported = sorted(in_inventory - set(bucket_ids))
    if not_exported:
        raise InventoryMismatch(
            f"bucket(s) {', '.join(map(repr, not_exported))} hold objects in the snapshot's "
            "storage.objects but the Storage API did not list them: either they were deleted "
            "during the run (run again) or the service key cannot see them (check the key)"
        )

    def fetch_missing(bucket, keys):
        return fetch_objects(api, bucket, keys, concurrency=backup_settings.download_concurrency)

    def keys_still_present(bucket_id, keys):
        return database.current_object_keys(db, bucket_id, keys)

    return reconciler.reconcile_buckets(
        staging, bucket_ids, have_inventory=have_inventory,
        fetch_missing=fetch_missing, keys_still_present=keys_still_present,
    )


def build_archive(run_id: str, dag_run: dict, database_summary: dict, auth_summary: dict,
                  storage_summary: dict | None, bucket_ids: list[str],
                  include_storage: bool = True) -> dict:
    from supabase_backup import archive
    from supabase_backup.reconcile import read_json_lines

    backup_settings = load_backup_settings()
    staging = staging_for(backup_settings, run_id)
    created_at = datetime.now(timezone.utc)
    bucket_settings = {}
    if include_storage and staging.bucket_list.exists():
        bucket_settings = {bucket.pop("id"): bucket
                           for bucket in json.loads(staging.bucket_list.read_text())}
    buckets = []
    deleted = []
    for bucket_id in bucket_ids:
        bucket = staging.bucket(bucket_id)
        export_summary = json.loads((bucket.folder / "summary.json").read_text())
        reconciled = next(
            (item for item in (storage_summary or {}).get("buckets", [])
             if item["bucket"] == bucket_id), {},
        )
        buckets.append({**export_summary, **reconciled,
                        "settings": bucket_settings.get(bucket_id, {})})
        deleted.extend({"bucket": bucket_id, **row}
                       for row in read_json_lines(bucket.folder / "deleted.jsonl"))
    database_section = dict(database_summary or {})
    database_section.pop("pg_dump", None)  # a worker path, not a fact about the backup
    database_section.pop("inventory_by_bucket", None)
    storage_section = None
    if include_storage:
        storage_section = {
            "buckets": buckets,
            "objects": (storage_summary or {}).get("objects", 0),
            "bytes": (storage_summary or {}).get("bytes", 0),
            "consistency": {
                "snapshot": database_section.get("snapshot"),
                "created_after_snapshot": (storage_summary or {}).get("created_after_snapshot", 0),
                "changed_after_snapshot": (storage_summary or {}).get("changed_after_snapshot", 0),
                "deleted_after_snapshot": (storage_summary or {}).get("deleted_after_snapshot", 0),
                "deleted": deleted,
            },
        }
    auth_section = dict(auth_summary or {})
    if auth_section.get("included"):
        auth_section["password_hashes"] = (
            "not in this file: the Auth admin API never returns them. They are in "
            "db/backup.sql, table auth.users, column encrypted_password."
        )
    header = {
        "created_at": created_at.isoformat(),
        "project": {"api_url": api_settings(backup_settings).url,
                    "database": database_settings(backup_settings.database_conn_id).describe()},
        "run": {"dag_id": config.DAG_ID, "run_id": run_id, **dag_run},
        "tools": {
            "supabase_backup": __version__,
            "python": platform.python_version(),
            "airflow": _airflow_version(),
            "pg_dump": database_section.get("client_version"),
        },
        "database": database_section if database_section.get("included") else None,
        "auth": auth_section if auth_section.get("included") else None,
        "storage": storage_section,
    }
    result = archive.build_archive(
        staging, header, database=database_summary, auth=auth_summary, bucket_ids=bucket_ids,
        created_at=created_at,
    )
    result["storage_buckets"] = len(bucket_ids) if include_storage else None
    return result


def upload_archive(started_at: str, archive_summary: dict) -> dict:
    from airflow.sdk import ObjectStoragePath

    from supabase_backup import destination

    backup_settings = load_backup_settings()
    hook = s3_hook(backup_settings)
    started = datetime.fromisoformat(started_at).astimezone(timezone.utc)
    key, already_there = destination.choose_archive_key(
        hook, backup_settings.s3_bucket, backup_settings.s3_prefix, started,
        archive_summary["sha256"],
    )
    if already_there:
        log.info("s3://%s/%s already holds this archive (a retried upload)",
                 backup_settings.s3_bucket, key)
        return {"s3_bucket": backup_settings.s3_bucket, "s3_key": key}
    return destination.upload_archive(
        hook, ObjectStoragePath(archive_summary["path"]), backup_settings.s3_bucket, key,
        sha256=archive_summary["sha256"], size=archive_summary["bytes"],
        server_side_encryption=backup_settings.server_side_encryption,
        kms_key_id=backup_settings.sse_kms_key_id,
    )


def verify_upload(archive_summary: dict, location: dict) -> dict:
    from supabase_backup import destination

    backup_settings = load_backup_settings()
    result = destination.read_back_and_verify(
        s3_hook(backup_settings), location["s3_bucket"], location["s3_key"],
        size=archive_summary["bytes"], sha256=archive_summary["sha256"],
    )
    return {**location, **result}


def history_summary(verified: dict, archive_summary: dict, database_summary: dict,
                    auth_summary: dict, storage_summary: dict | None) -> dict:
    storage_summary = storage_summary or {}
    return {
        "s3_bucket": verified["s3_bucket"],
        "s3_key": verified["s3_key"],
        "size_bytes": verified["bytes"],
        "sha256": verified["sha256"],
        "database_bytes": (database_summary or {}).get("bytes"),
        "auth_users": (auth_summary or {}).get("users"),
        "storage_buckets": archive_summary.get("storage_buckets"),
        "storage_objects": storage_summary.get("objects"),
        "storage_bytes": storage_summary.get("bytes"),
        "objects_created_after_snapshot": storage_summary.get("created_after_snapshot"),
        "objects_changed_after_snapshot": storage_summary.get("changed_after_snapshot"),
        "objects_deleted_after_snapshot": storage_summary.get("deleted_after_snapshot"),
    }


def record_history(ti, run_id: str) -> dict:
    """The run's last task (it runs whatever happened before): gathers the outcome from the other
    tasks' states and results and writes the final history row."""
    from airflow.sdk.exceptions import AirflowFailException

    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
    failed = sorted(task_id for task_id, state in states.items()
                    if state in ("failed", "upstream_failed"))
    verified = ti.xcom_pull(task_ids="verify_upload")
    summary = None
    if verified:
        summary = history_summary(
            verified, ti.xcom_pull(task_ids="build_archive"),
            ti.xcom_pull(task_ids="dump_database"), ti.xcom_pull(task_ids="export_auth_users"),
            ti.xcom_pull(task_ids="reconcile"),
        )
    try:
        return finish_run(run_id, verified, summary, failed)
    except BackupError as error:  # the run failed and the row says why: no point retrying
        raise AirflowFailException(str(error)) from None


def finish_run(run_id: str, verified: dict | None, summary: dict | None,
               failed_tasks: list[str]) -> dict:
    """Write the final history row. Success only with a verified archive; otherwise failed, and
    the step raises so the DAG run is failed too."""
    with database_settings().connect(autocommit=True) as connection:
        if verified and summary and not failed_tasks:
            history.record_success(connection, run_id, summary, details={"verified": verified})
            log.info("Backup succeeded: s3://%s/%s (%d bytes, sha256 %s)", summary["s3_bucket"],
                     summary["s3_key"], summary["size_bytes"], summary["sha256"])
            return summary
        reason = (
            f"the run ended without a verified archive; failed task(s): "
            f"{', '.join(failed_tasks) or 'none recorded'} (see their logs)"
        )
        history.record_failed(connection, run_id, reason, keep_first_reason=True)
    raise BackupError(reason)


def on_task_failure(context) -> None:
    """Every task's failure callback. It must never raise: record_history writes the row again at
    the end of the run."""
    try:
        record_task_failure(context["run_id"], context["ti"].task_id, context.get("exception"),
                            connection_secrets())
    except Exception:  # noqa: BLE001
        log.exception("Could not record the failure in backup_history")


def record_task_failure(run_id: str, task_id: str, error: BaseException | None,
                        secrets: list[str]) -> None:
    """Failure callback: put the first actionable reason on the history row."""
    message = f"{task_id}: {type(error).__name__ if error else 'failed'}"
    if error is not None and str(error):
        message = f"{task_id}: {error}"
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    with database_settings().connect(autocommit=True) as connection:
        history.record_failed(connection, run_id, message, keep_first_reason=True)


def connection_secrets() -> list[str]:
    """Passwords and keys of our connections, so a callback can scrub them from a message."""
    secrets = []
    for read_secret in (lambda: database_settings().password,
                        lambda: api_settings(config.BackupSettings(s3_bucket="-")).key):
        try:
            secrets.append(read_secret() or "")
        except Exception:  # noqa: BLE001 - scrubbing must never mask the original failure
            pass
    return [secret for secret in secrets if secret]


def cleanup_staging(run_id: str) -> None:
    backup_settings = load_backup_settings()
    staging = staging_for(backup_settings, run_id)
    staging.remove()
    log.info("Removed staging folder %s", staging.uri)


def _airflow_version() -> str | None:
    try:
        import airflow

        return airflow.__version__
    except Exception:  # noqa: BLE001
        return None
