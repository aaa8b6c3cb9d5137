"""TODO"""

from __future__ import annotations

import logging
from collections.abc import Callable

from supabase_backup.errors import RunFailed, scrub
from supabase_backup.records import history
from supabase_backup.sources.database import DatabaseSettings

log = logging.getLogger(__name__)


def settle_ended_runs(
    connection, current_run_id: str, run_has_ended: Callable[[str], bool]
) -> list[str]:
    """Rows of earlier runs still marked ``running`` whose DAG run has ended (its outcome could not
    be written: the database was down at the time, or the worker died) become ``failed``, with a
    reason pointing to the Airflow run. The candidates are read before Airflow is asked, so a row
    recorded meanwhile is never settled by mistake."""
    candidates = [
        run_id for run_id in history.running_run_ids(connection) if run_id != current_run_id
    ]
    settled = history.settle_ended_runs(
        connection, [run_id for run_id in candidates if run_has_ended(run_id)]
    )
    for run_id in settled:
        log.warning(
            "Settled the history row of run %s: it ended without recording its outcome", run_id
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
) -> str:
    """A task's failure callback: put its reason on the history row (the first reason of this
    attempt stays; ``attempt`` counts the times the run was cleared). Returns the message."""
    message = (
        f"{task_id}: {error}"
        if error is not None and str(error)
        else f"{task_id}: {type(error).__name__ if error else 'failed'}"
    )
    message = scrub(message, secrets)
    with database_settings.connect(autocommit=True) as connection:
        history.record_failed(
            connection, run_id, message, trigger=trigger, triggered_by=triggered_by, attempt=attempt
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
) -> dict:
    """Write the final history row and return the success summary.

    A run is a success exactly when its archive was uploaded and verified (``verified`` is
    verify_upload's result); tasks after verification cannot change that. Otherwise the row is
    ``failed`` with the first reason recorded (a task's failure callback wrote it), and RunFailed
    carries that reason so the run's last log line names the outcome and the cause.
    """
    with database_settings.connect(autocommit=True) as connection:
        if verified:
            summary = history.summarise_success(
                verified,
                summaries.get("archive") or {},
                summaries.get("database"),
                summaries.get("auth"),
                summaries.get("storage"),
            )
            unreadable = summary.get("objects_unreadable") or 0
            if unreadable:
                reason = incomplete_reason(
                    unreadable, (summaries.get("storage") or {}).get("unreadable_examples") or []
                )
                history.record_success(
                    connection,
                    run_id,
                    summary,
                    status="incomplete",
                    error=reason,
                    details={"verified": verified},
                    attempt=attempt,
                )
                log.error("Backup incomplete (archive verified, objects missing): %s", reason)
                raise RunFailed(f"incomplete: {reason}")
            history.record_success(
                connection, run_id, summary, details={"verified": verified}, attempt=attempt
            )
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
            connection, run_id, reason, trigger=trigger, triggered_by=triggered_by, attempt=attempt
        )
        row = history.get_by_run_id(connection, run_id) or {}
    raise RunFailed(row.get("error") or reason)
