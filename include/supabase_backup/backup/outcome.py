"""A run's outcome in ``backup_history``: the final row, the failure callback's reason, and the
settling of rows whose runs ended without writing theirs.

A verified archive's outcome is written twice: beside the archive in S3 (the verified record,
``verified_record``, written by verify_upload) and in the history row (``finish_run``). When the
database is down as the run ends, the row stays ``running``; a later settle by the same deployment
reads the record and writes the row the run would have written (``settle_ended_runs``), so a
verified archive is never recorded as failed, and retention sees it as the success it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from supabase_backup.errors import RunFailed, scrub
from supabase_backup.records import history
from supabase_backup.sources.database import DatabaseSettings

log = logging.getLogger(__name__)


# The storage summary's fields an outcome needs (the rest, per bucket, can be large).
STORAGE_OUTCOME_FIELDS = (
    "objects",
    "bytes",
    "created_after_snapshot",
    "changed_after_snapshot",
    "deleted_after_snapshot",
    "unreadable",
)
UNREADABLE_EXAMPLES_KEPT = 3


def part_summaries(
    database_summary: dict | None, auth_summary: dict | None, storage_summary: dict | None
) -> dict:
    """What the outcome needs of each part's summary, small enough to travel with the archive's
    summary (build_archive) into the verified record."""
    storage = None
    if storage_summary:
        storage = {name: storage_summary.get(name) for name in STORAGE_OUTCOME_FIELDS}
        storage["unreadable_examples"] = (storage_summary.get("unreadable_examples") or [])[
            :UNREADABLE_EXAMPLES_KEPT
        ]
    return {
        "database": {"bytes": database_summary.get("bytes")} if database_summary else None,
        "auth": {"users": auth_summary.get("users")} if auth_summary else None,
        "storage": storage,
    }


def verified_record(run_id: str, attempt: int, verified: dict, summaries: dict) -> dict:
    """Everything the run's final row needs once its archive is verified (``verified``:
    verify_upload's result; ``summaries``: the archive's and each part's), for the record written
    beside the archive."""
    storage = summaries.get("storage") or {}
    return {
        "run_id": run_id,
        "attempt": attempt,
        "s3_bucket": verified["s3_bucket"],
        "s3_key": verified["s3_key"],
        "verified_at": datetime.now(UTC).isoformat(),
        "summary": history.summarise_success(
            verified,
            summaries.get("archive") or {},
            summaries.get("database"),
            summaries.get("auth"),
            storage,
        ),
        "unreadable_examples": (storage.get("unreadable_examples") or [])[
            :UNREADABLE_EXAMPLES_KEPT
        ],
        "encryption_recipients": verified.get("recipients") if verified.get("encrypted") else None,
        "verified": verified,
    }


def record_verified(
    connection, record: dict, *, attempt: int, settled_by: str | None = None
) -> tuple[bool, str | None]:
    """Write a verified archive's row from its ``record``: ``success``, or ``incomplete`` when
    objects could not be read. (written, the incomplete reason or None). A settle
    (``settled_by``) writes only a row still ``running``."""
    summary = record["summary"]
    unreadable = summary.get("objects_unreadable") or 0
    reason = (
        incomplete_reason(unreadable, record.get("unreadable_examples") or [])
        if unreadable
        else None
    )
    details = {"verified": record["verified"]}
    if record.get("record_key"):
        details["settled_from"] = f"s3://{record['s3_bucket']}/{record['record_key']}"
    written = history.record_success(
        connection,
        record["run_id"],
        summary,
        status="incomplete" if reason else "success",
        error=reason,
        details=details,
        attempt=attempt,
        settled_by=settled_by,
    )
    if written:
        # Written here, not by verify_upload: verification must not depend on the database.
        history.record_encryption(connection, record["run_id"], record.get("encryption_recipients"))
    return written, reason


# (row) -> the run's verified record in S3 or None; raises when S3 cannot be asked.
FindVerified = Callable[[dict], dict | None]


def settle_ended_runs(
    connection,
    current_run_id: str | None,
    run_has_ended: Callable[[str], bool],
    *,
    deployment: str,
    find_verified: FindVerified | None = None,
) -> list[str]:
    """Rows of earlier runs of this ``deployment`` still marked ``running`` whose DAG run has ended
    (its outcome could not be written: the database was down at the time, or the worker died).

    Settled from S3's truth: a run whose verified record ``find_verified`` finds becomes the
    ``success`` (or ``incomplete``) it was, with its key, size and sha256; one that left none
    becomes ``failed``, with a reason pointing to the Airflow run that its own reason, should it
    still come, replaces. When S3 cannot be asked the row stays ``running`` for a later settle:
    "no record found" must never be guessed. Rows of other deployments are never touched. The
    candidates are read before Airflow is asked, so a row recorded meanwhile is never settled by
    mistake."""
    candidates = [
        row
        for row in history.running_rows(connection, deployment)
        if row["run_id"] != current_run_id
    ]
    ended = [row for row in candidates if run_has_ended(row["run_id"])]
    settled, without_archive = [], []
    for row in ended:
        run_id = row["run_id"]
        record = None
        if find_verified is not None:
            try:
                record = find_verified(row)
            except Exception as error:  # noqa: BLE001 - any failure to ask S3 leaves the row as it is
                log.warning(
                    "Run %s ended without recording its outcome, and S3 could not be asked "
                    "whether it left a verified archive (%s: %s); its row stays running until a "
                    "later run can ask",
                    run_id,
                    type(error).__name__,
                    error,
                )
                continue
        if record is None:
            without_archive.append(run_id)
            continue
        written, reason = record_verified(
            connection, record, attempt=row["run_attempt"], settled_by=deployment
        )
        if written:
            settled.append(run_id)
            log.warning(
                "Settled the history row of run %s from S3: its archive s3://%s/%s was verified "
                "(%s), but the run could not record it",
                run_id,
                record["s3_bucket"],
                record["s3_key"],
                f"incomplete: {reason}" if reason else "success",
            )
    for run_id in history.settle_ended_runs(connection, without_archive, settled_by=deployment):
        settled.append(run_id)
        log.warning(
            "Settled the history row of run %s as failed: it ended without recording its outcome "
            "and left no verified archive",
            run_id,
        )
    return settled


def record_task_failure(
    database_settings: DatabaseSettings,
    *,
    run_id: str,
    task_id: str,
    error: BaseException | None,
    trigger: str,
    triggered_by: str | None,
    secrets: list[str],
    attempt: int = 0,
    deployment: str | None = None,
) -> str:
    """A task's failure callback: put its reason on the history row (the first reason of this
    attempt stays, and replaces one a settle wrote; ``attempt`` counts the times the run was
    cleared). Returns the message."""
    message = (
        f"{task_id}: {error}"
        if error is not None and str(error)
        else f"{task_id}: {type(error).__name__ if error else 'failed'}"
    )
    message = scrub(message, secrets)
    with database_settings.connect(autocommit=True) as connection:
        history.record_failed(
            connection,
            run_id,
            message,
            trigger=trigger,
            triggered_by=triggered_by,
            attempt=attempt,
            deployment=deployment,
        )
    return message


def incomplete_reason(count: int, examples: list[dict]) -> str:
    first = "; ".join(f"{item['bucket']}/{item['key']}: {item['reason']}" for item in examples[:3])
    return (
        f"{count} object(s) could not be read and are not in the verified archive (each is "
        f"listed with its reason in manifest.json, storage.unreadable); first: {first}"
    )


def finish_run(
    database_settings: DatabaseSettings,
    *,
    run_id: str,
    trigger: str,
    triggered_by: str | None,
    verified: dict | None,
    summaries: dict,
    failed_tasks: list[str],
    attempt: int = 0,
    deployment: str | None = None,
) -> dict:
    """Write the final history row and return the success summary.

    A run is a success exactly when its archive was uploaded and verified (``verified`` is
    verify_upload's result); tasks after verification cannot change that. Otherwise the row is
    ``failed`` with the first reason recorded (a task's failure callback wrote it; a reason a
    settle wrote is replaced), and RunFailed carries that reason so the run's last log line names
    the outcome and the cause.
    """
    with database_settings.connect(autocommit=True) as connection:
        if verified:
            record = verified_record(run_id, attempt, verified, summaries)
            summary = record["summary"]
            _, reason = record_verified(connection, record, attempt=attempt)
            if reason:
                log.error("Backup incomplete (archive verified, objects missing): %s", reason)
                raise RunFailed(f"incomplete: {reason}")
            log.info(
                "Backup succeeded and was verified: %s (%d bytes, sha256 %s)",
                verified.get("s3_url") or f"s3://{summary['s3_bucket']}/{summary['s3_key']}",
                summary["size_bytes"],
                summary["sha256"],
            )
            return summary
        if failed_tasks:
            reason = (
                f"no verified archive: task(s) {', '.join(failed_tasks)} failed (see their logs)"
            )
        else:
            reason = (
                "no verified archive, although no task failed: a required task was "
                "skipped or cleared; run the backup again"
            )
        history.record_failed(
            connection,
            run_id,
            reason,
            trigger=trigger,
            triggered_by=triggered_by,
            attempt=attempt,
            deployment=deployment,
        )
        row = history.get_by_run_id(connection, run_id) or {}
    raise RunFailed(row.get("error") or reason)
