"""The ``supabase_backup`` DAG's runs, read from and started in Airflow's metadata database by the
DAG's id (the plugin never imports the DAG file)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from airflow.api.common.trigger_dag import trigger_dag
from airflow.models import DagModel, DagRun, TaskInstance
from airflow.models.dagbag import DBDagBag
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState, TaskInstanceState
from airflow.utils.types import DagRunTriggeredByType
from sqlalchemy import select

from supabase_backup.config import DAG_ID

log = logging.getLogger(__name__)

ACTIVE_STATES = (DagRunState.QUEUED, DagRunState.RUNNING)
# The conf key the Backups page's own button sets (routes/runs.py), so its runs are named apart
# from other REST API calls: Airflow records both as triggered_by rest_api.
BACKUPS_PAGE_TRIGGER = "backups_page"
# Who started a run, as a person names it, from Airflow's DagRun.triggered_by.
STARTED_BY = {
    "timetable": "Schedule",
    "ui": "Airflow UI",
    "rest_api": "REST API",
    "cli": "CLI",
    "asset": "Asset",
    "backfill": "Backfill",
    "operator": "Another DAG",
    "test": "dag.test()",
}
# The same, from backup_history.trigger, for runs Airflow no longer has.
STARTED_BY_TRIGGER = {"scheduled": "Schedule", "manual": "Manual", "api": "API", "asset": "Asset"}
# The serialized DAGs the api-server reads a task's retry settings from (cached by version).
_DAG_BAG = DBDagBag()

# The check for an active run and the trigger are one step, across every api-server process:
# start_run's transaction first locks the DAG's row in Airflow's `dag` table (FOR NO KEY UPDATE,
# the mode Airflow itself locks dag rows in), then checks, then inserts the run and commits, which
# releases the lock. A second caller waits on the row until the first run is committed, and then
# sees it. Why this lock, and why it is safe:
# - It is short: held for one check and one trigger_dag (the run and its task instances
#   inserted), never across a task or a run. In the race test a cold api-server process held it
#   about 2.6 s, 8 processes sharing 2 cores.
# - The scheduler locks the dag rows of due DAGs with SKIP LOCKED (DagModel.dags_needing_dagruns)
#   and commits as soon as it has created their runs: it never waits on us (it skips the DAG for
#   one loop), and we wait on it only while it creates this DAG's scheduled run, which we then see
#   and refuse to run beside. A Postgres advisory lock, taken by this plugin alone, would not
#   order us with the scheduler. The dag-processor locks the rows it rewrites while it writes one
#   batch of parse results. Nothing holds a dag row across a task or a run.
# - NO KEY UPDATE does not conflict with the KEY SHARE locks of foreign-key checks, so rows that
#   reference the DAG (dag_version, dag_run) are inserted by others without waiting on us.
# - It takes a session of its own, not the thread's scoped session: trigger_dag calls
#   DagRun.find_duplicate, which opens the scoped session and commits it; in that session, the
#   commit would end our transaction, and the lock, between the check and the insert (the race
#   test then starts 5 runs of 8). Airflow's own REST API triggers in a session of its own too.
# SQLite (one writer at a time) ignores FOR UPDATE; there the thread lock keeps the requests one
# api-server process serves at once (FastAPI runs them on a thread pool) from racing.
_TRIGGER_LOCK = threading.Lock()


class DagUnavailable(Exception):
    """The DAG cannot take a run now (unknown to Airflow, or paused); the message says why."""


class RunActive(Exception):
    """A run of the DAG is already queued or running."""

    def __init__(self, run_id: str, state: str):
        super().__init__(f"a backup is already {state}: run {run_id}; wait for it to finish")
        self.run_id = run_id


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _state(value) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def started_by(triggered_by: str | None, conf: dict | None) -> str | None:
    """Who started a run as a person names it ("Schedule", "Airflow UI", "REST API", "Backups
    page"…), from Airflow's ``triggered_by`` and the run's conf; None when Airflow recorded none."""
    if (conf or {}).get("trigger") == BACKUPS_PAGE_TRIGGER:
        return "Backups page"
    if triggered_by is None:
        return None
    return STARTED_BY.get(triggered_by, triggered_by)


def started_by_trigger(trigger: str | None) -> str:
    """Who started a run, from the history row's own trigger column (Airflow no longer has it)."""
    return STARTED_BY_TRIGGER.get(trigger or "", trigger or "–")


def active_runs(session) -> list[tuple[str, str]]:
    active = []
    for run_id, state in session.execute(
        select(DagRun.run_id, DagRun.state)
        .where(DagRun.dag_id == DAG_ID, DagRun.state.in_(ACTIVE_STATES))
        .order_by(DagRun.run_after)
    ):
        active_state = _state(state)
        assert active_state is not None  # the query keeps only runs in one of ACTIVE_STATES
        active.append((run_id, active_state))
    return active


def start_run(conf: dict, user_name: str) -> str:
    """Trigger the DAG as the REST API does (triggered by REST_API, the user recorded as the
    triggering user). Refuses while another run is queued or running: ``max_active_runs=1`` would
    queue it behind, and two backups of one project at once help nobody."""
    with _TRIGGER_LOCK, create_session(scoped=False) as session:
        dag = session.scalar(
            select(DagModel).where(DagModel.dag_id == DAG_ID).with_for_update(key_share=True)
        )
        if dag is None:
            raise DagUnavailable(
                f"Airflow does not know the DAG {DAG_ID}: is its file in the "
                "DAGs folder, and has the dag-processor parsed it?"
            )
        if dag.is_paused:
            raise DagUnavailable(
                f"the DAG {DAG_ID} is paused, so a run would never start; "
                "unpause it in Airflow first"
            )
        if active := active_runs(session):
            raise RunActive(*active[0])
        dag_run = trigger_dag(
            DAG_ID,
            conf=conf,
            triggered_by=DagRunTriggeredByType.REST_API,
            triggering_user_name=user_name,
            session=session,
        )
        # trigger_dag returns the run it created or raises: its `dr if dr else None` never gives
        # None, a DagRun being always true
        assert dag_run is not None
        return dag_run.run_id


def next_try_at(instance: TaskInstance, session) -> str | None:
    """When Airflow tries an ``up_for_retry`` task again: ``next_retry_datetime``, the scheduler's
    own rule (the end of the failed try plus the retry delay, with exponential backoff and its
    per-instance jitter), read with the task's settings from the run's serialized DAG."""
    if instance.state != TaskInstanceState.UP_FOR_RETRY or instance.end_date is None:
        return None
    try:
        if instance.dag_version_id is None:
            raise LookupError("the task instance records no DAG version")
        dag = _DAG_BAG.get_dag(instance.dag_version_id, session=session)
        if dag is None:
            raise LookupError(f"Airflow has no serialized DAG of version {instance.dag_version_id}")
        instance.task = dag.get_task(instance.task_id)
        return _iso(instance.next_retry_datetime())
    except Exception:  # noqa: BLE001 - the page then shows the retry without its time
        log.warning(
            "No next try time for %s of %s", instance.task_id, instance.run_id, exc_info=True
        )
        return None


def _run_facts(run: DagRun) -> dict[str, Any]:
    triggered_by = _state(run.triggered_by)
    return {
        "run_id": run.run_id,
        "state": _state(run.state),
        "run_type": _state(run.run_type),
        "triggered_by": triggered_by,
        "started_by": started_by(triggered_by, run.conf),
        "triggering_user_name": run.triggering_user_name,
        "queued_at": _iso(run.queued_at),
        "start_date": _iso(run.start_date),
        "end_date": _iso(run.end_date),
    }


def run_with_tasks(run_id: str) -> dict[str, Any] | None:
    """The run's state, who started it, and each task instance's state (mapped ones by map index)
    with its try: the number, the last one allowed, and for one waiting to retry the next try's
    time."""
    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == DAG_ID, DagRun.run_id == run_id))
        if run is None:
            return None
        instances = session.scalars(
            select(TaskInstance)
            .where(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id)
            .order_by(TaskInstance.task_id, TaskInstance.map_index)
        ).all()
        return {
            **_run_facts(run),
            "tasks": [
                {
                    "task_id": instance.task_id,
                    "map_index": instance.map_index,
                    "label": instance.rendered_map_index,
                    "state": _state(instance.state),
                    "try_number": instance.try_number,
                    # Airflow retries while try_number <= max_tries: the last try is one more.
                    "last_try_number": (instance.max_tries or 0) + 1,
                    "next_try_at": next_try_at(instance, session),
                }
                for instance in instances
            ],
        }


def runs_by_id(run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Who started each of ``run_ids`` and when it started and ended, for those Airflow still
    has."""
    if not run_ids:
        return {}
    with create_session() as session:
        return {
            run.run_id: _run_facts(run)
            for run in session.scalars(
                select(DagRun).where(DagRun.dag_id == DAG_ID, DagRun.run_id.in_(run_ids))
            )
        }
