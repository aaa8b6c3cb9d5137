"""The body of every task of the ``supabase_backup`` DAG, one function per task, and the run's outcome.

Each task body takes the run plan (``config.RunPlan``, made once by the run's first task) and the
run's resources (``RunResources``: database and API settings, an S3 client, the staging area), plus
the results of earlier tasks as plain arguments. In the DAG ``supabase_backup.airflow`` builds the
resources from Airflow connections; nothing here knows Airflow, task ids or XCom. Results that
travel between tasks are small dicts; bulk data stays in the run's staging folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from supabase_backup.archive import manifest, members
from supabase_backup.backup import outcome
from supabase_backup.config import RunPlan
from supabase_backup.destination import s3 as destination
from supabase_backup.destination.delivery import delivery_for
from supabase_backup.errors import (
    ConfigurationError,
    InventoryMismatch,
    StagingCorrupted,
)
from supabase_backup.records import enabled as enabled_setting
from supabase_backup.records import history, settle
from supabase_backup.sources import database, shards
from supabase_backup.sources.api_client import ApiSettings, open_client
from supabase_backup.sources.auth_users import export_auth_users as export_users
from supabase_backup.sources.database import DatabaseSettings
from supabase_backup.sources.reconcile import (
    UNREADABLE_FINAL_FILE_NAME,
    reconcile_buckets,
)
from supabase_backup.sources.storage_download import (
    combine_summaries,
    fetch_objects,
)
from supabase_backup.sources.storage_download import (
    export_bucket as export_one_bucket,
)
from supabase_backup.sources.storage_listing import ObjectListing
from supabase_backup.sources.storage_listing import list_buckets as list_all_buckets
from supabase_backup.staging import StagingArea, ensure_parent, read_json_lines

log = logging.getLogger(__name__)


class RunResources(Protocol):
    """What a task body may use; ``airflow.backup_run.TaskResources`` builds it from Airflow.
    Read-only: the implementation resolves each on first use."""

    @property
    def database(self) -> DatabaseSettings: ...

    @property
    def api(self) -> ApiSettings: ...

    @property
    def s3(self) -> Any: ...  # a boto3 S3 client

    @property
    def staging(self) -> StagingArea: ...

    def tool_versions(self) -> dict[str, str]: ...


# --- the first task ---------------------------------------------------------------------------------

BACKUPS_DISABLED_REASON = (
    "backups are disabled (system_settings_kv.backup_enabled = false); "
    "trigger with force=true to back up anyway"
)


def start_run(
    plan: RunPlan,
    resources: RunResources,
    run_has_ended: Callable[[str], bool] = lambda run_id: False,
    *,
    deployment: str,
) -> bool:
    """Record the run as running, owned by ``deployment``, and go on (True), or record it skipped
    and stop (False). Rows of this deployment's earlier runs left ``running`` are settled first
    (``run_has_ended`` asks Airflow; S3 says whether they left a verified archive)."""

    def find_verified(row: dict) -> dict | None:
        return destination.find_verified_record(
            resources.s3,
            plan.settings.s3_bucket,
            plan.settings.s3_prefix,
            row["run_id"],
            attempt=row["run_attempt"],
            since=row["started_at"],
        )

    with resources.database.connect(autocommit=True) as connection:
        settle.settle_ended_runs(
            connection,
            plan.run_id,
            run_has_ended,
            deployment=deployment,
            find_verified=find_verified,
        )
        enabled = enabled_setting.read_backup_enabled(connection)
        if not enabled and not plan.forced:
            history.record_skipped(
                connection,
                plan.run_id,
                plan.trigger,
                BACKUPS_DISABLED_REASON,
                triggered_by=plan.triggered_by,
                deployment=deployment,
            )
            log.warning("Skipping: %s", BACKUPS_DISABLED_REASON)
            return False
        history.record_running(
            connection,
            plan.run_id,
            plan.trigger,
            plan.triggered_by,
            attempt=plan.attempt,
            deployment=deployment,
        )
        history.record_progress(connection, plan.run_id, step="starting")
    # Everything checkable before data moves: a missing or read-only bucket is found now, not
    # after an hour of export.

    destination.check_writable(
        resources.s3,
        plan.settings.s3_bucket,
        plan.settings.s3_prefix,
        server_side_encryption=plan.settings.server_side_encryption,
        kms_key_id=plan.settings.sse_kms_key_id,
    )
    if not enabled:
        log.warning("Backups are disabled, but force=true: backing up anyway")
    log.info("Run plan: %s", json.dumps(plan.to_dict(), sort_keys=True))
    return True


def prepare_staging(plan: RunPlan, resources: RunResources) -> None:
    """Create the run's staging folder (the teardown removes it whatever happens)."""
    resources.staging.create()
    log.info("Staging this run's exports in %s", resources.staging.uri)


# --- exports ----------------------------------------------------------------------------------------


def _report_step(plan: RunPlan, resources: RunResources, step: str) -> None:
    """Tell the history row which step is running (for the Backups page); never fails a task."""
    try:
        with resources.database.connect(autocommit=True) as connection:
            history.record_progress(connection, plan.run_id, step=step)
    except Exception:  # noqa: BLE001 - progress is a courtesy
        log.warning("Could not record step %r in backup_history", step, exc_info=True)


def dump_database(plan: RunPlan, resources: RunResources) -> dict:
    """pg_dump and, when storage is included, the storage inventory from the same snapshot."""
    _report_step(plan, resources, "dumping the database")
    return database.dump_database(
        resources.database,
        resources.staging,
        include_dump=True,
        include_inventory=plan.include_storage,
        inventory_buckets=list(plan.buckets) if plan.buckets else None,
        pg_dump_path=plan.settings.pg_dump_path,
        exact_figures_max_bytes=plan.settings.exact_figures_max_bytes,
    )


def export_auth_users(plan: RunPlan, resources: RunResources) -> dict:
    _report_step(plan, resources, "exporting Auth users")
    summary = export_users(resources.api, ensure_parent(resources.staging.auth_users))
    return {"included": True, "member": members.AUTH_USERS_MEMBER, **summary}


def list_buckets(plan: RunPlan, resources: RunResources) -> list[str]:
    """The bucket ids to export: the plan's selection, else every bucket. Their settings (public,
    size limit, MIME types) are staged for the manifest, so a restore can recreate them."""
    with open_client(resources.api) as client:
        records = list_all_buckets(client)
    existing = [bucket["id"] for bucket in records]
    wanted = list(plan.buckets or existing)
    unknown = [bucket for bucket in wanted if bucket not in existing]
    if unknown:
        raise ConfigurationError(
            f"bucket(s) {', '.join(map(repr, unknown))} do not exist in the project "
            f"(it has {', '.join(map(repr, existing)) or 'no buckets'})"
        )
    bucket_list = ensure_parent(resources.staging.bucket_list)
    bucket_list.write_text(json.dumps([bucket for bucket in records if bucket["id"] in wanted]))
    log.info("Backing up %d bucket(s): %s", len(wanted), ", ".join(wanted) or "none")
    try:
        with resources.database.connect(autocommit=True) as connection:
            history.record_buckets_pending(connection, plan.run_id, wanted)
    except Exception:  # noqa: BLE001 - progress is a courtesy
        log.warning("Could not record the buckets to export in backup_history", exc_info=True)
    return wanted


def plan_bucket_exports(
    plan: RunPlan, resources: RunResources, bucket_ids: list[str]
) -> list[dict]:
    """The export units: one per bucket, several (key-range shards) for a bucket with more than
    ``plan.settings.shard_max_objects`` objects (shards.py). Read from storage.objects while the
    dump runs, so no export waits for it."""
    with resources.database.connect() as connection:
        units = shards.plan_export_units(
            connection, list(bucket_ids), plan.settings.shard_max_objects
        )
    split = {bucket: count for bucket, count in shards.shard_counts(units).items() if count > 1}
    if split:
        log.info(
            "Exporting in shards of at most %d objects: %s",
            plan.settings.shard_max_objects,
            ", ".join(f"{bucket} in {count}" for bucket, count in split.items()),
        )
        try:
            with resources.database.connect(autocommit=True) as connection:
                history.record_buckets_pending(connection, plan.run_id, list(bucket_ids), split)
        except Exception:  # noqa: BLE001 - progress is a courtesy
            log.warning("Could not record the shards to export in backup_history", exc_info=True)
    return units


def export_bucket(plan: RunPlan, resources: RunResources, unit: dict | str) -> dict:
    """Every object of one export unit into staging: a whole bucket (``unit`` may be its id), or
    one shard of it (plan_bucket_exports), in the shard's own folder. Progress goes to the history
    row as it runs. A retry starts the unit again from nothing, and touches no other shard."""
    unit = shards.whole_bucket_unit(unit) if isinstance(unit, str) else unit
    bucket_id, sharded = unit["bucket"], unit["of"] > 1
    bucket = resources.staging.bucket(bucket_id)
    target = bucket.shard(unit["shard"]) if sharded else bucket
    with contextlib.ExitStack() as resources_held:
        connection = resources_held.enter_context(resources.database.connect(autocommit=True))
        history.record_progress(connection, plan.run_id, step="exporting storage")

        def report(progress: dict) -> None:
            history.record_progress(
                connection,
                plan.run_id,
                bucket=bucket_id,
                counts=progress,
                shard=unit["shard"] if sharded else None,
            )

        listing = None
        if sharded:
            key_range = shards.KeyRange(unit["start"], unit["stop"])
            spool = resources_held.enter_context(
                tempfile.TemporaryFile("w+", encoding="utf-8", prefix="supabase-backup-shard-")
            )
            with resources.database.connect() as listing_connection:
                count = shards.spool_objects_in_range(
                    listing_connection, bucket_id, key_range, spool
                )
            log.info(
                "%s: %d objects in keys from %r up to %r (storage.objects)",
                unit["label"],
                count,
                key_range.start,
                key_range.stop,
            )
            listing = ObjectListing(bucket_id, shards.LISTING_DATABASE, shards.read_spool(spool))
        summary = export_one_bucket(
            resources.api,
            target,
            concurrency=plan.settings.download_concurrency,
            report_progress=report,
            listing=listing,
        )
    if sharded:
        summary.update(shard=unit["shard"], of=unit["of"])
    # For a person reading a run's staging; no step reads it back: reconcile gets the summary as
    # this task's result.
    with (target.folder / "summary.json").open("w", encoding="utf-8") as output:
        json.dump(summary, output)
    return summary


def _bucket_export_summaries(
    bucket_ids: list[str], units: list[dict], export_summaries: list[dict]
) -> dict[str, dict]:
    """Each bucket's export summary (for the manifest), from the export_bucket results: a whole
    bucket's as it is, a sharded bucket's combined from its shards' in range order."""
    by_unit = {
        (summary["bucket"], summary.get("shard", 1)): summary for summary in export_summaries
    }
    exported = {}
    for bucket_id in bucket_ids:
        bucket_units = [unit for unit in units if unit["bucket"] == bucket_id] or [
            shards.whole_bucket_unit(bucket_id)
        ]
        summaries = []
        for unit in bucket_units:
            summary = by_unit.get((bucket_id, unit["shard"]))
            if summary is None:
                raise StagingCorrupted(
                    f"export_bucket[{unit['label']}]",
                    "its export result is missing (the task did not run to the end); clear "
                    "this run's tasks together with their upstream tasks (Clear, with Upstream), "
                    "or trigger a new run",
                )
            summaries.append(summary)
        exported[bucket_id] = (
            combine_summaries(bucket_id, summaries) if len(bucket_units) > 1 else summaries[0]
        )
    return exported


def reconcile(
    plan: RunPlan,
    resources: RunResources,
    bucket_ids: list[str],
    database_summary: dict | None,
    units: list[dict],
    export_summaries: list[dict],
) -> dict:
    """Make the exports agree with the database's storage.objects (see reconcile.py). ``units``
    are the export units (plan_bucket_exports) and ``export_summaries`` their export_bucket
    results: a bucket exported in shards is merged back into one here. Each bucket's entry of the
    result holds its export summary under the reconciled counts, as the manifest records it.

    When the database dump was left out, the inventory is read now instead of in the dump's
    snapshot: it still finds what the listing missed, and the manifest records no snapshot.
    """
    _report_step(plan, resources, "reconciling storage with the database")
    staging = resources.staging
    if database_summary is None:
        database_summary = database.dump_database(
            resources.database,
            staging,
            include_dump=False,
            include_inventory=True,
            inventory_buckets=list(plan.buckets) if plan.buckets else None,
        )
        database_summary["snapshot"] = None  # the transaction that held it has ended
    # The inventory covers the same selection as list_buckets, so a bucket only the database
    # knows would silently go missing from the archive: refuse that.
    not_exported = sorted(set(database_summary.get("inventory_by_bucket", {})) - set(bucket_ids))
    if not_exported:
        raise InventoryMismatch(
            f"bucket(s) {', '.join(map(repr, not_exported))} hold objects in the snapshot's "
            "storage.objects but the Storage API did not list them: either they were deleted "
            "during the run (run again) or the service key cannot see them (check the key)"
        )

    def fetch_missing(bucket, keys):
        return fetch_objects(
            resources.api, bucket, keys, concurrency=plan.settings.download_concurrency
        )

    def keys_still_present(bucket_id, keys):
        return database.current_object_keys(resources.database, bucket_id, keys)

    exported = _bucket_export_summaries(bucket_ids, units, export_summaries)
    shard_counts = shards.shard_counts(units)
    result = reconcile_buckets(
        staging,
        bucket_ids,
        have_inventory="inventory_objects" in database_summary,
        fetch_missing=fetch_missing,
        keys_still_present=keys_still_present,
        shards=shard_counts,
    )
    result["buckets"] = [{**exported[bucket["bucket"]], **bucket} for bucket in result["buckets"]]
    result["snapshot"] = database_summary.get("snapshot")
    return result


# --- archive, upload, verification ------------------------------------------------------------------


def _storage_section(staging: StagingArea, bucket_ids: list[str], storage_summary: dict) -> dict:
    bucket_settings = {}
    if staging.bucket_list.exists():
        bucket_settings = {
            bucket.pop("id"): bucket for bucket in json.loads(staging.bucket_list.read_text())
        }
    reconciled = {item["bucket"]: item for item in storage_summary.get("buckets", [])}
    buckets: list[dict] = []
    deleted: list[dict] = []
    unreadable: list[dict] = []
    for bucket_id in bucket_ids:
        bucket = staging.bucket(bucket_id)
        buckets.append(
            {**reconciled.get(bucket_id, {}), "settings": bucket_settings.get(bucket_id, {})}
        )
        deleted.extend(
            {"bucket": bucket_id, **row} for row in read_json_lines(bucket.folder / "deleted.jsonl")
        )
        unreadable.extend(
            {"bucket": bucket_id, **row}
            for row in read_json_lines(bucket.folder / UNREADABLE_FINAL_FILE_NAME)
        )
    return manifest.storage_section(
        buckets, storage_summary, storage_summary.get("snapshot"), deleted, unreadable
    )


def _require_staged_exports(
    staging: StagingArea,
    database_summary: dict | None,
    auth_summary: dict | None,
    bucket_ids: list[str],
) -> None:
    """Every export this archive needs is still staged. A failed run's teardown removes its
    staging; clearing only the failed tasks then re-runs this step without the exports that had
    succeeded, and the fix is to re-run them too."""
    needed = []
    if database_summary and database_summary.get("included"):
        needed.append(("dump_database", staging.database_dump))
    if auth_summary and auth_summary.get("included"):
        needed.append(("export_auth_users", staging.auth_users))
    needed.extend(
        (f"export_bucket[{bucket_id}]", staging.bucket(bucket_id).folder / "reconciled.jsonl")
        for bucket_id in bucket_ids
    )
    gone = [task for task, path in needed if not path.exists()]
    if gone:
        raise StagingCorrupted(
            ", ".join(gone),
            "its staged export is gone (a failed run's cleanup removes staging); "
            "clear this run's tasks together with their upstream tasks (Clear, with Upstream), "
            "or trigger a new run",
        )


def build_archive(
    plan: RunPlan,
    resources: RunResources,
    database_summary: dict | None,
    auth_summary: dict | None,
    storage_summary: dict | None,
    bucket_ids: list[str] | None,
) -> dict:
    """manifest.json and the zip, from what the included parts staged."""
    _report_step(plan, resources, "building the archive")
    staging = resources.staging
    bucket_ids = list(bucket_ids or []) if plan.include_storage else []
    _require_staged_exports(staging, database_summary, auth_summary, bucket_ids)
    created_at = datetime.now(UTC)
    header = manifest.build_header(
        plan=plan.to_dict(),
        created_at=created_at,
        project={"api_url": resources.api.url, "database": resources.database.describe()},
        tool_versions=resources.tool_versions(),
        database=database_summary,
        auth=auth_summary,
        storage=_storage_section(staging, bucket_ids, storage_summary or {})
        if plan.include_storage
        else None,
    )
    result = delivery_for(plan).build(
        staging,
        header,
        database=database_summary,
        auth=auth_summary,
        storage=storage_summary,
        bucket_ids=bucket_ids,
        created_at=created_at,
    )
    result["storage_buckets"] = len(bucket_ids) if plan.include_storage else None
    # Carried to verify_upload, which writes the run's outcome beside the archive.
    result["parts"] = outcome.part_summaries(database_summary, auth_summary, storage_summary)
    return result


def upload_archive(plan: RunPlan, resources: RunResources, archive_summary: dict) -> dict:
    _report_step(plan, resources, "uploading the archive")
    return delivery_for(plan).upload(resources.s3, resources.staging, archive_summary)


def verify_upload(
    plan: RunPlan, resources: RunResources, archive_summary: dict, location: dict
) -> dict:
    """Read the archive back from S3 and check it (through the run's delivery: plain, streamed or
    encrypted); then write the run's outcome beside it (the verified record), so it survives a
    database that is down when the run ends. Nothing here needs the database: the history row,
    encryption columns included, is written by record_history (or a later settle)."""
    _report_step(plan, resources, "verifying the uploaded archive")
    verified = delivery_for(plan).verify(resources.s3, archive_summary, location)
    parts = archive_summary.get("parts") or {}
    record = outcome.verified_record(
        plan.run_id, plan.attempt, verified, {"archive": archive_summary, **parts}
    )
    record_key = destination.write_verified_record(
        resources.s3,
        verified["s3_bucket"],
        verified["s3_key"],
        record,
        server_side_encryption=plan.settings.server_side_encryption,
        kms_key_id=plan.settings.sse_kms_key_id,
    )
    log.info("Recorded the verified outcome in s3://%s/%s", verified["s3_bucket"], record_key)
    return verified


def cleanup_staging(plan: RunPlan, resources: RunResources) -> None:
    staging = resources.staging
    staging.remove()
    log.info("Removed staging folder %s", staging.uri)


# --- the outcome ------------------------------------------------------------------------------------
