"""Settling the history rows of runs that ended without writing their outcome, from S3's truth.

A run's first task and the Backups plugin (reading the history) both settle through
``settle_ended_runs``: a deployment settles only its own rows; a run that left a verified record
in S3 becomes the ``success`` (or ``incomplete``) it was; one that left none becomes ``failed``,
with a reason its own, should it still come, replaces. The S3 lookup is handed in
(``find_verified``, ``destination.s3.find_verified_record``), so this module stays below the
destination.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from supabase_backup.records import history

log = logging.getLogger(__name__)


def incomplete_reason(count: int, examples: list[dict]) -> str:
    first = "; ".join(f"{item['bucket']}/{item['key']}: {item['reason']}" for item in examples[:3])
    return (
        f"{count} object(s) could not be read and are not in the verified archive (each is "
        f"listed with its reason in manifest.json, storage.unreadable); first: {first}"
    )


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
    if record.get("parts") is not None:
        details[history.PARTS_DETAIL] = record["parts"]
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
