"""Start a backup and follow it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from supabase_backup.records import history
from supabase_backup_plugin import airflow_runs
from supabase_backup_plugin.dependencies import CanRead, CanTrigger, CurrentUser, ReadOnlyDatabase
from supabase_backup_plugin.routes.history import with_airflow_facts
from supabase_backup_plugin.schemas import (
    AirflowRun,
    Counts,
    HistoryRow,
    Progress,
    RunStatus,
    TriggerRequest,
    TriggerResponse,
)

router = APIRouter(tags=["runs"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No Airflow user"},
    403: {"description": "Not permitted"},
}


@router.post(
    "/runs",
    response_model=TriggerResponse,
    dependencies=[CanTrigger],
    responses={
        **ERRORS,
        409: {"description": "A run is already queued or running, or the DAG is paused"},
    },
)
def trigger_run(user: CurrentUser, request: TriggerRequest | None = None) -> TriggerResponse:
    """Trigger the ``supabase_backup`` DAG with these Params; the run counts as triggered through
    the REST API by the calling user, and its conf names the Backups page as the starter."""
    conf = {
        **(request or TriggerRequest()).model_dump(),
        "trigger": airflow_runs.BACKUPS_PAGE_TRIGGER,
    }
    try:
        run_id = airflow_runs.start_run(conf, user.get_name())
    except (airflow_runs.RunActive, airflow_runs.DagUnavailable) as refusal:
        raise HTTPException(409, str(refusal)) from None
    return TriggerResponse(run_id=run_id)


@router.get(
    "/runs/{run_id}",
    response_model=RunStatus,
    dependencies=[CanRead],
    responses={**ERRORS, 404: {"description": "No such run"}},
)
def get_run(run_id: str, connection: ReadOnlyDatabase) -> RunStatus:
    """The DAG run's state, each task's state, its history row and its progress (per bucket and
    in total: objects and bytes done of those known so far, and the step running now). Reading
    never writes: the Airflow state says whether a row still ``running`` belongs to a live run."""
    airflow_run = airflow_runs.run_with_tasks(run_id)
    row = history.get_by_run_id(connection, run_id)
    if airflow_run is None and row is None:
        raise HTTPException(404, f"no run {run_id} of the supabase_backup DAG")
    if airflow_run:
        airflow_run["tasks"] = [with_last_failure(task, row) for task in airflow_run["tasks"]]
    return RunStatus(
        run_id=run_id,
        state=airflow_run["state"] if airflow_run else None,
        airflow=AirflowRun.model_validate(airflow_run) if airflow_run is not None else None,
        history=HistoryRow.model_validate(with_airflow_facts([row])[0]) if row else None,
        progress=progress_of(row),
    )


def with_last_failure(task: dict, row: dict | None) -> dict:
    """The task with what its last failed try met, from the row (Airflow keeps no failure text):
    a try Airflow retries is in ``progress.retries`` (the retry callback's), so it is shown while
    the task waits and while the next try runs."""
    retries = ((row or {}).get("progress") or {}).get("retries") or {}
    failure = retries.get(history.task_key(task["task_id"], task["map_index"]))
    if not failure:
        return task
    return {**task, "error": failure.get("error"), "failed_at": failure.get("failed_at")}


COUNTED = ("objects_done", "objects_known", "bytes_done", "missing")


def _counts(recorded: dict) -> Counts:
    return Counts(
        **{
            key: value
            for key, value in recorded.items()
            if key in Counts.model_fields and key != "shards" and value is not None
        }
    )


def bucket_counts(recorded: dict) -> Counts:
    """One bucket's counts; for a bucket exported in shards, all its shards' together (its listing
    is done when every shard's is)."""
    shards = recorded.get("shards")
    if not shards:
        return _counts(recorded)
    parts = [_counts(counts) for counts in shards.values()]
    return Counts(
        **{name: sum(getattr(part, name) for part in parts) for name in COUNTED},
        listing_done=all(part.listing_done for part in parts),
        shards=len(parts),
    )


def progress_of(row: dict | None) -> Progress:
    recorded = (row or {}).get("progress") or {}
    buckets = {
        name: bucket_counts(counts) for name, counts in (recorded.get("buckets") or {}).items()
    }
    total = Counts(
        **{name: sum(getattr(counts, name) for counts in buckets.values()) for name in COUNTED},
        listing_done=bool(buckets) and all(counts.listing_done for counts in buckets.values()),
    )
    return Progress(
        step=recorded.get("step"),
        updated_at=recorded.get("updated_at"),
        buckets=buckets,
        total=total,
    )
