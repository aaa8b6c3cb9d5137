"""The backups made so far, and a short-lived download URL for one of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Path, Query

from supabase_backup.airflow import connections
from supabase_backup.destination import s3 as destination
from supabase_backup.records import history
from supabase_backup_plugin import airflow_runs
from supabase_backup_plugin.dependencies import (
    CanRead,
    CanTrigger,
    CurrentUser,
    Database,
    ReadOnlyDatabase,
    ServiceUnavailable,
    safe_message,
)
from supabase_backup_plugin.schemas import DownloadUrl, HistoryPage, HistoryRow, HistoryStatus

router = APIRouter(tags=["history"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No Airflow user"},
    403: {"description": "Not permitted"},
}
# Postgres bigint, the type of OFFSET and of backup_history.id: a larger number is the caller's
# mistake (422, as FastAPI answers any bound), not a database that refused the request (503).
POSTGRES_BIGINT_MAX = 2**63 - 1


def with_airflow_facts(rows: list[dict]) -> list[dict]:
    """Each row with who started its run (``started_by``) and the DAG run's own start and end, read
    from Airflow for the runs it still has: the tasks cannot read ``triggered_by`` (the Task SDK's
    DagRun has no such field), and the row's times are those of its first and last task."""
    runs = airflow_runs.runs_by_id([row["run_id"] for row in rows])
    enriched = []
    for row in rows:
        run = runs.get(row["run_id"])
        enriched.append(
            {
                **row,
                "started_by": (run and run["started_by"])
                or airflow_runs.started_by_trigger(row.get("trigger")),
                "run_started_at": run and run["start_date"],
                "run_ended_at": run and run["end_date"],
            }
        )
    return enriched


@router.get("/history", response_model=HistoryPage, dependencies=[CanRead], responses=ERRORS)
def list_history(
    connection: ReadOnlyDatabase,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=POSTGRES_BIGINT_MAX),
    status: HistoryStatus | None = Query(None, description="Only rows with this status."),
) -> HistoryPage:
    """Backups, newest first, as recorded: reading never writes. A row whose run ended without
    recording its outcome stays ``running`` until the next run's first task settles it."""
    return HistoryPage(
        items=[
            HistoryRow.model_validate(row)
            for row in with_airflow_facts(
                history.list_history(connection, limit=limit, offset=offset, status=status)
            )
        ],
        total=history.count_history(connection, status),
        limit=limit,
        offset=offset,
    )


@router.post(
    "/history/{history_id}/download-url",
    response_model=DownloadUrl,
    dependencies=[CanTrigger],
    responses={
        **ERRORS,
        404: {"description": "No such history row, or its archive is gone"},
        409: {"description": "The row is not a successful backup"},
    },
)
def create_download_url(
    user: CurrentUser,
    connection: Database,
    history_id: int = Path(ge=1, le=POSTGRES_BIGINT_MAX),
) -> DownloadUrl:
    """A presigned GET URL, valid 15 minutes, for a successful backup's own archive. Every URL
    minted is recorded in ``backup_downloads`` (who, when, which archive): an archive holds the
    whole database."""
    row = history.get_by_id(connection, history_id)
    if row is None:
        raise HTTPException(404, f"no backup with history id {history_id}")
    if row["status"] != "success" or not row["s3_bucket"] or not row["s3_key"]:
        raise HTTPException(
            409,
            f"backup {history_id} is {row['status']}, not success: only a "
            "verified archive can be downloaded",
        )
    if row.get("deleted_at"):
        raise HTTPException(
            404,
            f"the archive of backup {history_id} was deleted by retention "
            f"({row.get('deleted_by')}) on {row['deleted_at']:%Y-%m-%d %H:%M} UTC",
        )
    try:
        client = connections.s3_client()
        if destination.head_object(client, row["s3_bucket"], row["s3_key"]) is None:
            raise HTTPException(
                404,
                f"the archive of backup {history_id} is no longer in "
                f"s3://{row['s3_bucket']}/{row['s3_key']}",
            )
        url = destination.presigned_download_url(client, row["s3_bucket"], row["s3_key"])
    except HTTPException:
        raise
    except Exception as error:  # noqa: BLE001 - S3 unreachable, the aws_default connection missing or refused
        raise ServiceUnavailable(
            f"S3 cannot be used: {type(error).__name__}: {safe_message(error)}"
        ) from None
    if not url:
        raise ServiceUnavailable("S3 did not sign a download URL")
    expires_in = destination.PRESIGNED_URL_SECONDS
    # Recorded before the URL is handed out: no URL leaves without its record.
    history.record_download(
        connection, row, requested_by=user.get_name(), expires_in_seconds=expires_in
    )
    return DownloadUrl(
        url=url,
        expires_in=expires_in,
        expires_at=(datetime.now(UTC) + timedelta(seconds=expires_in)).isoformat(),
        history_id=history_id,
        s3_bucket=row["s3_bucket"],
        s3_key=row["s3_key"],
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
    )
