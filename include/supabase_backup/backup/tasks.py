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

from supabase_backup.archive import build, manifest, members
from supabase_backup.backup.outcome import settle_ended_runs
from supabase_backup.config import RunPlan
from supabase_backup.destination import encrypted as encrypted_archive
from supabase_backup.destination import s3 as destination
from supabase_backup.errors import (
    ConfigurationError,
    InventoryMismatch,
    StagingCorrupted,
)
from supabase_backup.records import enabled as enabled_setting
from supabase_backup.records import history
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
    """What a task body may use; ``airflow.backup_run.TaskResources`` builds it from Airflow."""

    database: DatabaseSettings
    api: ApiSettings
    s3: Any  # a boto3 S3 client
    staging: StagingArea

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
) -> bool:
    """Record the run as running and go on (True), or record it skipped and stop (False). Rows of
    earlier runs left ``running`` are settled first (``run_has_ended`` asks Airflow)."""
    with resources.database.connect(autocommit=True) as connection:
        settle_ended_runs(connection, plan.run_id, run_has_ended)
        enabled = enabled_setting.read_backup_enabled(connection)
        if not enabled and not plan.forced:
            history.record_skipped(
                connection,
                plan.run_id,
                plan.trigger,
                BACKUPS_DISABLED_REASON,
                triggered_by=plan.triggered_by,
            )
            log.warning("Skipping: %s", BACKUPS_DISABLED_REASON)
            return False
        history.record_running(
            connection, plan.run_id, plan.trigger, plan.triggered_by, attempt=plan.attempt
        )
        history.record_progress(connection, plan.run_id, step="starting")
    # Everything checkable before data moves: a missing or read-only bucket is found now, not
    # after an hour of export.

    destination.check_writable(
        resources.s3,
        plan.s3_bucket,
        plan.s3_prefix,
        server_side_encryption=plan.server_side_encryption,
        kms_key_id=plan.sse_kms_key_id,
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
        pg_dump_path=plan.pg_dump_path,
        exact_figures_max_bytes=plan.exact_figures_max_bytes,
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
    ``plan.shard_max_objects`` objects (shards.py). Read from storage.objects while the dump runs,
    so no export waits for it."""
    with resources.database.connect() as connection:
        units = shards.plan_export_units(connection, list(bucket_ids), plan.shard_max_objects)
    split = {bucket: count for bucket, count in shards.shard_counts(units).items() if count > 1}
    if split:
        log.info(
            "Exporting in shards of at most %d objects: %s",
            plan.shard_max_objects,
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
            concurrency=plan.download_concurrency,
            report_progress=report,
            listing=listing,
        )
    if sharded:
        summary.update(shard=unit["shard"], of=unit["of"])
    with (target.folder / "summary.json").open("w", encoding="utf-8") as output:
        json.dump(summary, output)
    return summary


def _combine_shard_summaries(staging: StagingArea, shard_counts: dict[str, int]) -> None:
    """A sharded bucket's export summary (for the manifest), from its shards' summaries."""
    for bucket_id, count in shard_counts.items():
        if count <= 1:
            continue
        bucket = staging.bucket(bucket_id)
        summaries = []
        for number in range(1, count + 1):
            path = bucket.shard(number).folder / "summary.json"
            if not path.exists():
                raise StagingCorrupted(
                    f"export_bucket[{bucket_id} [{number}/{count}]]",
                    "its staged export is gone or never finished; clear this run's tasks together "
                    "with their upstream tasks (Clear, with Upstream), or trigger a new run",
                )
            summaries.append(json.loads(path.read_text()))
        with (bucket.folder / "summary.json").open("w", encoding="utf-8") as output:
            json.dump(combine_summaries(bucket_id, summaries), output)


def reconcile(
    plan: RunPlan,
    resources: RunResources,
    bucket_ids: list[str],
    database_summary: dict | None,
    units: list[dict] | None = None,
) -> dict:
    """Make the exports agree with the database's storage.objects (see reconcile.py). ``units``
    are the export units (plan_bucket_exports): a bucket exported in shards is merged back into
    one here.

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
        return fetch_objects(resources.api, bucket, keys, concurrency=plan.download_concurrency)

    def keys_still_present(bucket_id, keys):
        return database.current_object_keys(resources.database, bucket_id, keys)

    shard_counts = shards.shard_counts(units or [])
    _combine_shard_summaries(staging, shard_counts)
    result = reconcile_buckets(
        staging,
        bucket_ids,
        have_inventory="inventory_objects" in database_summary,
        fetch_missing=fetch_missing,
        keys_still_present=keys_still_present,
        shards=shard_counts,
    )
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
    buckets, deleted, unreadable = [], [], []
    for bucket_id in bucket_ids:
        bucket = staging.bucket(bucket_id)
        export_summary = json.loads((bucket.folder / "summary.json").read_text())
        buckets.append(
            {
                **export_summary,
                **reconciled.get(bucket_id, {}),
                "settings": bucket_settings.get(bucket_id, {}),
            }
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
    if plan.stream_archive and not plan.age_recipients:  # encryption needs the local zip
        # The zip itself is written by upload_archive, straight into S3: only the manifest (and
        # what is needed to list the members again) is kept here.
        members = {
            "database": _member_source(database_summary),
            "auth": _member_source(auth_summary),
            "bucket_ids": bucket_ids,
        }
        result = build.write_manifest_file(
            staging,
            header,
            database=members["database"],
            auth=members["auth"],
            bucket_ids=bucket_ids,
        )
        expected = (
            sum((part or {}).get("bytes") or 0 for part in (database_summary, auth_summary))
            + ((storage_summary or {}).get("bytes") or 0)
            + result["manifest_bytes"]
            + 200 * (result["manifest_members"] + 1)
        )
        result.update(
            streamed=True,
            created_at=created_at.isoformat(),
            members_source=members,
            expected_bytes=expected,
        )
    else:
        result = build.build_archive(
            staging,
            header,
            database=database_summary,
            auth=auth_summary,
            bucket_ids=bucket_ids,
            created_at=created_at,
        )
    result["storage_buckets"] = len(bucket_ids) if plan.include_storage else None
    return result


def _member_source(summary: dict | None) -> dict | None:
    """What plan_members needs of an export's summary."""
    if not summary:
        return None
    return {
        name: summary.get(name)
        for name in ("included", "bytes", "sha256", "roles")
        if name in summary
    }


def upload_archive(plan: RunPlan, resources: RunResources, archive_summary: dict) -> dict:

    _report_step(plan, resources, "uploading the archive")
    if plan.age_recipients:  # client-side encryption (issue 11): see encrypted_archive
        archive_path = resources.staging.archive
        return encrypted_archive.encrypt_and_upload(
            resources.s3,
            archive_path,
            archive_path.with_name(archive_path.name + ".age"),
            plan.s3_bucket,
            plan.s3_prefix,
            datetime.fromisoformat(plan.started_at).astimezone(UTC),
            recipients=tuple(plan.age_recipients),
            sha256=archive_summary["sha256"],
            size=archive_summary["bytes"],
            server_side_encryption=plan.server_side_encryption,
            kms_key_id=plan.sse_kms_key_id,
        )
    started_at = datetime.fromisoformat(plan.started_at).astimezone(UTC)
    if archive_summary.get("streamed"):
        members = archive_summary["members_source"]
        staging = resources.staging

        def write(output) -> dict:
            return build.write_zip(
                output,
                staging,
                archive_summary,
                database=members["database"],
                auth=members["auth"],
                bucket_ids=members["bucket_ids"],
                created_at=datetime.fromisoformat(archive_summary["created_at"]),
            )

        return destination.stream_archive(
            resources.s3,
            write,
            plan.s3_bucket,
            plan.s3_prefix,
            started_at,
            manifest_sha256=archive_summary["manifest_sha256"],
            expected_bytes=archive_summary.get("expected_bytes") or 0,
            server_side_encryption=plan.server_side_encryption,
            kms_key_id=plan.sse_kms_key_id,
        )
    return destination.upload_archive(
        resources.s3,
        resources.staging.archive,
        plan.s3_bucket,
        plan.s3_prefix,
        started_at,
        sha256=archive_summary["sha256"],
        size=archive_summary["bytes"],
        server_side_encryption=plan.server_side_encryption,
        kms_key_id=plan.sse_kms_key_id,
    )


def verify_upload(
    plan: RunPlan, resources: RunResources, archive_summary: dict, location: dict
) -> dict:

    _report_step(plan, resources, "verifying the uploaded archive")
    if location.get("encrypted"):
        result = encrypted_archive.read_back_and_check(
            resources.s3,
            location["s3_bucket"],
            location["s3_key"],
            size=location["ciphertext_bytes"],
            sha256=location["ciphertext_sha256"],
        )
        result.update(
            members_checked=location["plaintext_members_checked"],
            format_version=location["format_version"],
        )
        with resources.database.connect(autocommit=True) as connection:
            history.record_encryption(connection, plan.run_id, location["recipients"])
        return {
            **location,
            **result,
            "s3_url": f"s3://{location['s3_bucket']}/{location['s3_key']}",
        }
    written = location if location.get("streamed") else archive_summary  # who knows the bytes
    result = destination.read_back_and_verify(
        resources.s3,
        location["s3_bucket"],
        location["s3_key"],
        size=written["bytes"],
        sha256=written["sha256"],
    )
    if plan.attempt:  # a cleared run may have been encrypted before: the row says what is true now
        with resources.database.connect(autocommit=True) as connection:
            history.record_encryption(connection, plan.run_id, None)
    return {**location, **result, "s3_url": f"s3://{location['s3_bucket']}/{location['s3_key']}"}


def cleanup_staging(plan: RunPlan, resources: RunResources) -> None:
    staging = resources.staging
    staging.remove()
    log.info("Removed staging folder %s", staging.uri)


# --- the outcome ------------------------------------------------------------------------------------
