"""A run's outcome: its final history row, a task's failure on that row, and the one sentence that
says the outcome and its cause (the DAG run's note in Airflow, the failed task's last log line)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from supabase_backup.errors import RunFailed, scrub
from supabase_backup.records import history
from supabase_backup.sources.database import DatabaseSettings
from supabase_backup.units import FAILED, INCOMPLETE, SUCCESS, format_bytes, outcome_sentence

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
    message = task_failure_message(task_id, error, secrets)
    with database_settings.connect(autocommit=True) as connection:
        history.record_failed(
            connection, run_id, message, trigger=trigger, triggered_by=triggered_by, attempt=attempt
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
                raise RunFailed(f"{INCOMPLETE_PREFIX}{reason}")
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
