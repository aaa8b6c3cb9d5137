"""A run's outcome: its final history row, a task's failure (or retry) on that row, and the one
sentence that says the outcome and its cause (the DAG run's note in Airflow, the failed task's last
log line).

A verified archive's outcome is written twice: beside the archive in S3 (the verified record,
``verified_record``, written by verify_upload) and in the history row (``finish_run``). When the
database is down as the run ends, the row stays ``running``; a later settle by the same deployment
reads the record and writes the row the run would have written (``records.settle``), so a verified
archive is never recorded as failed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from supabase_backup.errors import RunFailed, scrub
from supabase_backup.records import history
from supabase_backup.records.settle import record_verified
from supabase_backup.sources.database import DatabaseSettings
from supabase_backup.units import FAILED, INCOMPLETE, SUCCESS, format_bytes, outcome_sentence

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
        # The parts the archive holds: retention keeps the newest copy of each (retention_rules).
        "parts": history.parts_of_run(
            summaries.get("database"), summaries.get("auth"), summaries.get("storage")
        ),
        "verified": verified,
    }


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
    message = task_failure_message(task_id, error, secrets)
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


def record_task_retry(
    database_settings: DatabaseSettings,
    *,
    run_id: str,
    task_id: str,
    map_index: int | None,
    try_number: int,
    error: BaseException | None,
    secrets: list[str],
) -> str:
    """A task's retry callback: put the failed try's reason on the running row (its status stays
    running: the next try may succeed). Returns the message."""
    if error is None:
        message = "failed"
    else:
        message = scrub(str(error) or type(error).__name__, secrets)
    with database_settings.connect(autocommit=True) as connection:
        history.record_retry(
            connection,
            run_id,
            history.task_key(task_id, map_index),
            try_number=try_number,
            reason=message,
        )
    return message


def task_failure_message(task_id: str, error: BaseException | None, secrets: list[str]) -> str:
    """``task: what went wrong``, without secrets: the reason a history row and a log line give."""
    message = (
        f"{task_id}: {error}"
        if error is not None and str(error)
        else f"{task_id}: {type(error).__name__ if error else 'failed'}"
    )
    return scrub(message, secrets)


INCOMPLETE_PREFIX = "incomplete: "  # RunFailed's text for a verified archive that lacks objects


def success_sentence(summary: dict) -> str:
    """What a verified backup holds, from its success row's columns (``history.summarise_success``)."""
    held = [f"verified s3://{summary['s3_bucket']}/{summary['s3_key']}"]
    if summary.get("auth_users") is not None:
        held.append(f"{summary['auth_users']} users")
    if summary.get("storage_objects") is not None:
        held.append(f"{summary['storage_objects']} objects")
    held.append(format_bytes(summary["size_bytes"]))
    return outcome_sentence(SUCCESS, ", ".join(held))


def failure_sentence(reason: str) -> str:
    """A failed run's reason (RunFailed's text, an incomplete run's included) as its sentence."""
    if reason.startswith(INCOMPLETE_PREFIX):
        return outcome_sentence(INCOMPLETE, reason.removeprefix(INCOMPLETE_PREFIX))
    return outcome_sentence(FAILED, reason)


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
                raise RunFailed(f"{INCOMPLETE_PREFIX}{reason}")
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
