"""The outcome of a backup or drill run, written as the DAG run's note: the first thing Airflow's own
run view shows. Without it a skipped run is a plain green "Success" and a failed one says nothing.

A task cannot write its run's note (the Execution API has no such call), so the run's last task
pushes its one-sentence outcome as an XCom (``supabase_backup.airflow.dag_run.push_outcome``) and
this listener, which runs where the DAG run's state is set (the scheduler; the API server when a
person marks a run by hand), copies it into the note in the same database session.

It must never break the scheduler: everything is caught and logged, it touches only this
project's DAGs, and a note a person wrote is left as it is.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

from supabase_backup.airflow.dag_run import OUTCOME_XCOM_KEY, shorten
from supabase_backup.config import DAG_ID, DRILL_DAG_ID
from supabase_backup.units import FAILED, outcome_sentence

log = logging.getLogger(__name__)

NOTED_DAG_IDS = frozenset({DAG_ID, DRILL_DAG_ID})
# How patch_dag_run_state (Airflow's REST API) says a person set the state.
MARKED_BY_HAND = "manually set"


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    note_outcome(dag_run, msg)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    note_outcome(dag_run, msg)


def note_outcome(dag_run: Any, msg: str | None) -> None:
    """Write the run's outcome as its note. Never raises."""
    try:
        if dag_run.dag_id not in NOTED_DAG_IDS:
            return
        # The ORM session and models are imported here, not at the top: every task process loads
        # this plugin, and only the scheduler and the API server ever call a DAG run listener.
        from sqlalchemy.orm import object_session

        session = object_session(dag_run)
        if session is None:
            log.warning("DAG run %s is outside a session: its note is left as it is", dag_run)
            return
        existing = dag_run.dag_run_note
        if existing is not None and existing.user_id and existing.content:
            log.info("DAG run %s has a note a person wrote: it is left as it is", dag_run.run_id)
            return
        note = outcome_note(session, dag_run, msg)
        if note:
            dag_run.note = shorten(note)
    except Exception:  # noqa: BLE001 - a listener must never break the scheduler
        log.exception("Could not write the outcome of DAG run %s as its note", dag_run)


def outcome_note(session: Any, dag_run: Any, msg: str | None) -> str | None:
    """The note for a run that just ended: the outcome its last task pushed; for a failed run
    without one (its last task could not run), the tasks that failed."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    state = str(getattr(dag_run.state, "value", dag_run.state))
    if msg and MARKED_BY_HAND in msg:
        return (
            f"Marked {state} by hand in Airflow; backup_history keeps the run's own outcome "
            "(the Backups page shows it)."
        )
    pushed = session.scalars(
        select(XComModel)
        .where(XComModel.dag_run_id == dag_run.id, XComModel.key == OUTCOME_XCOM_KEY)
        .order_by(XComModel.timestamp.desc())
        .limit(1)
    ).first()
    if pushed is not None:
        value = XComModel.deserialize_value(pushed)
        if isinstance(value, str) and value:
            return value
    if state != DagRunState.FAILED.value:
        return None
    failed = sorted(
        session.scalars(
            select(TaskInstance.task_id).where(
                TaskInstance.dag_id == dag_run.dag_id,
                TaskInstance.run_id == dag_run.run_id,
                TaskInstance.state == TaskInstanceState.FAILED,
            )
        ).unique()
    )
    return outcome_sentence(
        FAILED,
        f"task(s) {', '.join(failed) or 'unknown'} failed; each failed task's log ends on its reason",
    )
