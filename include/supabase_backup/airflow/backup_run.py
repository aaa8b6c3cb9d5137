"""The backup DAG's adapter: the run's resources from Airflow, its first task (the plan), every
task's body run with the plan and resources, the failure callback and the final history row."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from supabase_backup.airflow.connections import (
    airflow_version,
    api_settings,
    connection_secrets,
    database_settings,
    read_backup_settings,
    s3_client,
    staging_area,
)
from supabase_backup.airflow.dag_run import (
    attempt_of,
    dag_run_has_ended,
    deployment_id,
    failed_task_ids,
    failing_fast,
    final_task_sentence,
    log_failure_reason,
    push_outcome,
    task_label,
    trigger_of,
    triggered_by,
)
from supabase_backup.backup import outcome, tasks
from supabase_backup.config import RunPlan
from supabase_backup.errors import RunFailed, scrub
from supabase_backup.sources.api_client import ApiSettings
from supabase_backup.sources.database import DatabaseSettings
from supabase_backup.staging import StagingArea
from supabase_backup.units import SKIPPED, outcome_sentence

log = logging.getLogger(__name__)


class TaskResources:
    """What one task of a run may need, resolved from Airflow on first use (``tasks.RunResources``).

    Connections are resolved lazily: a task that needs only the database never reads the API
    connection, so its failure to resolve cannot fail the wrong task.
    """

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan

    @functools.cached_property
    def database(self) -> DatabaseSettings:
        return database_settings(self.plan.settings.database_conn_id)

    @functools.cached_property
    def api(self) -> ApiSettings:
        return api_settings(self.plan.settings.api_conn_id)

    @functools.cached_property
    def s3(self):
        return s3_client(self.plan.settings.aws_conn_id)

    @functools.cached_property
    def staging(self) -> StagingArea:
        return staging_area(self.plan)

    def tool_versions(self) -> dict[str, str]:
        return {"airflow": airflow_version()}


# --- the DAG run ----------------------------------------------------------------------------------


def plan_run(dag_run: Any, params: dict) -> RunPlan:
    """Resolve the Variables and the trigger form's Params once, for the whole run."""
    started = dag_run.start_date or dag_run.run_after or datetime.now(UTC)
    return RunPlan.create(
        read_backup_settings(),
        run_id=dag_run.run_id,
        trigger=trigger_of(dag_run),
        triggered_by=triggered_by(dag_run),
        started_at=started.astimezone(UTC).isoformat(),
        logical_date=dag_run.logical_date.isoformat() if dag_run.logical_date else None,
        params=dict(params),
        attempt=attempt_of(dag_run),
    )


def run_step(step: Callable[..., Any], plan: dict | RunPlan, *args: Any, **kwargs: Any) -> Any:
    """Run a library step with this run's plan and resources."""
    run_plan = RunPlan.from_dict(plan)
    with failing_fast():
        return step(run_plan, TaskResources(run_plan), *args, **kwargs)


def start_run(dag_run: Any, params: dict, ti: Any = None) -> dict | None:
    """The first task: make the plan, record the run; the plan for every later task, or None when
    backups are disabled (the run is recorded as skipped, says so in its note, and stops)."""
    with failing_fast():
        plan = plan_run(dag_run, params)
        started = tasks.start_run(
            plan, TaskResources(plan), run_has_ended=dag_run_has_ended, deployment=deployment_id()
        )
    if not started and ti is not None:
        # Without this, Airflow shows a skipped run as a plain green success.
        push_outcome(ti, outcome_sentence(SKIPPED, tasks.BACKUPS_DISABLED_REASON), [])
    return plan.to_dict() if started else None


def on_task_failure(context: dict) -> None:
    """Every task's failure callback: put the reason on the history row as soon as it happens, and
    end the task's log on that reason. It never raises: the run's last task writes the row again."""
    task = task_label(context["ti"])
    secrets = connection_secrets()
    message = outcome.task_failure_message(task, context.get("exception"), secrets)
    try:
        dag_run = context["dag_run"]
        outcome.record_task_failure(
            database_settings(),
            run_id=context["run_id"],
            task_id=task,
            error=context.get("exception"),
            trigger=trigger_of(dag_run),
            triggered_by=triggered_by(dag_run),
            secrets=secrets,
            attempt=attempt_of(dag_run),
            deployment=deployment_id(),
        )
    except Exception:  # noqa: BLE001
        log.exception("Could not record the failure in backup_history")
    log_failure_reason(outcome.failure_sentence(message), secrets)


def on_outcome_failure(context: dict) -> None:
    """record_history's failure callback: it never writes the row (record_history did, or could
    not); it only ends the task's log on the run's reason."""
    log_failure_reason(final_task_sentence(context), connection_secrets())


def on_task_retry(context: dict) -> None:
    """Every task's retry callback: put the failed try's reason on the running row, so the page
    shows what a retrying task met while Airflow waits to try again. It never raises."""
    try:
        instance = context["ti"]
        outcome.record_task_retry(
            database_settings(),
            run_id=context["run_id"],
            task_id=instance.task_id,
            map_index=getattr(instance, "map_index", None),
            try_number=instance.try_number,
            error=context.get("exception"),
            secrets=connection_secrets(),
        )
    except Exception:  # noqa: BLE001
        log.exception("Could not record the retry in backup_history")


def record_history(
    plan: dict | None, verified: dict | None, summaries: dict, *, ti: Any, dag_run: Any
) -> dict:
    """The final history row. Success exactly when the archive was uploaded and verified; otherwise
    a failed row, and the task fails so the DAG run does."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        summary = outcome.finish_run(
            database_settings(RunPlan.from_dict(plan).settings.database_conn_id if plan else None),
            run_id=dag_run.run_id,
            trigger=trigger_of(dag_run),
            triggered_by=triggered_by(dag_run),
            verified=verified,
            summaries=summaries,
            failed_tasks=failed_task_ids(ti, dag_run.run_id),
            attempt=attempt_of(dag_run),
            deployment=deployment_id(),
        )
    except RunFailed as failure:  # the row says why: retrying cannot change the outcome
        secrets = connection_secrets()
        sentence = scrub(outcome.failure_sentence(failure.reason), secrets)
        push_outcome(ti, sentence, secrets)
        raise AirflowFailException(sentence) from None
    push_outcome(ti, outcome.success_sentence(summary), [])
    return summary


# --- the restore drill ----------------------------------------------------------------------------


# --- alerts (issue 11) ----------------------------------------------------------------------------
