"""The restore drill DAG's adapter: its resources from Airflow, its first and last task, and every
step's failure written on the drill's history row before it is raised."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from supabase_backup.airflow.connections import (
    connection_secrets,
    database_settings,
    project_connection_id,
    s3_client,
    scratch_database_settings,
)
from supabase_backup.airflow.dag_run import (
    failed_task_ids,
    failing_fast,
    final_task_sentence,
    log_failure_reason,
    push_outcome,
    trigger_of,
    triggered_by,
)
from supabase_backup.backup.outcome import failure_sentence, task_failure_message
from supabase_backup.config import AWS_CONN_ID, DATABASE_CONN_ID, DRILL_CONN_ID
from supabase_backup.errors import BackupError, DrillFailed, scrub
from supabase_backup.restore import drill
from supabase_backup.sources.database import DatabaseSettings
from supabase_backup.units import SUCCESS, outcome_sentence

log = logging.getLogger(__name__)


class DrillTaskResources:
    """``drill.DrillResources`` from Airflow, resolved on first use."""

    def __init__(
        self,
        database_conn_id: str | None = None,
        drill_conn_id: str = DRILL_CONN_ID,
        aws_conn_id: str = AWS_CONN_ID,
    ) -> None:
        # No id: the project's supabase connection when the Variable names one, else supabase_db.
        self.conn_ids = {
            "database_conn_id": database_conn_id or project_connection_id() or DATABASE_CONN_ID,
            "drill_conn_id": drill_conn_id,
            "aws_conn_id": aws_conn_id,
        }

    @functools.cached_property
    def database(self) -> DatabaseSettings:
        return database_settings(self.conn_ids["database_conn_id"])

    @functools.cached_property
    def drill_server(self) -> DatabaseSettings:
        return scratch_database_settings(self.conn_ids["drill_conn_id"])

    @functools.cached_property
    def s3(self):
        return s3_client(self.conn_ids["aws_conn_id"])

    def secrets(self) -> list[str]:
        found = connection_secrets()
        try:
            found.append(self.drill_server.password or "")
        except Exception:  # noqa: BLE001 - scrubbing must never mask the original failure
            pass
        return [secret for secret in found if secret]


def _record_drill_failure(
    resources: DrillTaskResources,
    *,
    run_id: str,
    trigger: str,
    triggered_by: str | None,
    step_name: str,
    error: BaseException,
) -> None:
    try:
        message = scrub(f"{step_name}: {error}", resources.secrets())
        drill.record_failure(
            resources.database,
            run_id=run_id,
            trigger=trigger,
            triggered_by=triggered_by,
            message=message,
            step=step_name,
            error=error,
        )
    except Exception:  # noqa: BLE001 - the original failure is the one to raise
        log.exception("Could not record the drill's failure in backup_history")


def start_drill(dag_run: Any, params: dict) -> dict:
    """The drill's first task: record it, choose the backup, name the scratch database."""
    started = dag_run.start_date or dag_run.run_after or datetime.now(UTC)
    resources = DrillTaskResources()
    trigger = trigger_of(dag_run)
    try:
        with failing_fast():
            plan = drill.plan_drill(
                resources,
                dag_run_id=dag_run.run_id,
                trigger=trigger,
                triggered_by=triggered_by(dag_run),
                started_at=started.astimezone(UTC).isoformat(),
                backup_run_id=(params or {}).get("backup_run_id") or None,
                conn_ids=resources.conn_ids,
            )
    except BaseException as error:
        _record_drill_failure(
            resources,
            run_id=drill.history_run_id(dag_run.run_id),
            trigger=trigger,
            triggered_by=triggered_by(dag_run),
            step_name="plan_drill",
            error=error,
        )
        raise
    return plan.to_dict()


def run_drill_step(step: Callable[..., Any], plan: dict, *args: Any) -> Any:
    """Run a drill step; a failure is written on the drill's history row before it is raised."""
    drill_plan = drill.DrillPlan.from_dict(plan)
    resources = DrillTaskResources(
        drill_plan.database_conn_id, drill_plan.drill_conn_id, drill_plan.aws_conn_id
    )
    try:
        with failing_fast():
            return step(drill_plan, resources, *args)
    except BaseException as error:
        _record_drill_failure(
            resources,
            run_id=drill_plan.run_id,
            trigger=drill_plan.trigger,
            triggered_by=drill_plan.triggered_by,
            step_name=step.__name__,
            error=error,
        )
        raise


def finish_drill(
    plan: dict | None, verified: dict | None, compared: dict | None, *, ti: Any, dag_run: Any
) -> dict:
    """The drill's final history row; a failed drill fails the task and so the DAG run."""
    from airflow.sdk.exceptions import AirflowFailException

    conn_id = (plan or {}).get("database_conn_id")  # None: as DrillTaskResources resolves it
    try:
        result = drill.finish_drill(
            database_settings(conn_id),
            run_id=drill.history_run_id(dag_run.run_id),
            trigger=trigger_of(dag_run),
            triggered_by=triggered_by(dag_run),
            plan=plan,
            verified=verified,
            compared=compared,
            failed_tasks=failed_task_ids(ti, dag_run.run_id),
        )
    except BackupError as failure:  # the row says why: retrying cannot change the outcome
        secrets = DrillTaskResources().secrets()
        reason = failure.reason if isinstance(failure, DrillFailed) else str(failure)
        sentence = scrub(failure_sentence(reason), secrets)
        push_outcome(ti, sentence, secrets)
        raise AirflowFailException(sentence) from None
    archive = drill.DrillPlan.from_dict(plan).archive_url if plan else "the backup"
    push_outcome(
        ti,
        outcome_sentence(
            SUCCESS,
            f"restored {archive}; {result.get('tables_compared', 0)} tables and "
            f"{result.get('rows_compared', 0):,} rows equal to the backup's figures",
        ),
        [],
    )
    return result


def on_task_failure(context: dict) -> None:
    """Every drill task's failure callback: the task's log ends on its reason, not on traceback
    frames (run_drill_step already wrote it on the drill's history row)."""
    error = context.get("exception")
    secrets = DrillTaskResources().secrets()
    log_failure_reason(
        failure_sentence(task_failure_message(context["ti"].task_id, error, [])), secrets
    )


def on_outcome_failure(context: dict) -> None:
    """record_drill's failure callback: its exception's text is the drill's reason."""
    log_failure_reason(final_task_sentence(context), DrillTaskResources().secrets())
