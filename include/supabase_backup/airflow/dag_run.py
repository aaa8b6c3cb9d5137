"""The facts of a DAG run (who and what started it, how often it was cleared, whether it ended,
which tasks failed, which Airflow deployment runs it) as plain values, how a task fails
(permanent errors without retries), and how the run's outcome reaches Airflow's own screens: the
run's note and the failed task's last log line."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from typing import Any
from urllib.parse import urlsplit

from airflow.configuration import conf

from supabase_backup.config import DAG_ID
from supabase_backup.errors import BackupError, scrub
from supabase_backup.units import FAILED, outcome_sentence

log = logging.getLogger(__name__)

# conf["trigger"] values recorded as the row's "api" trigger: "backups_page" is the page's button.
API_TRIGGERS = ("api", "backups_page")


# A task cannot write its DAG run's note (the Execution API has no call for it): the run's last
# task pushes its outcome sentence as this XCom, and the plugin's listener, in the scheduler,
# copies it into the note when the run ends (supabase_backup_plugin/run_notes.py).
OUTCOME_XCOM_KEY = "outcome"
# dag_run_note.content is a VARCHAR(1000): a longer note would fail the scheduler's commit.
NOTE_LIMIT = 1000


def shorten(text: str, limit: int = NOTE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def push_outcome(ti: Any, sentence: str, secrets: list[str]) -> None:
    """Hand the run's outcome sentence to the listener that writes it as the run's note. Never
    fails the task: the note repeats what the history row and the log already say."""
    try:
        ti.xcom_push(key=OUTCOME_XCOM_KEY, value=shorten(scrub(sentence, secrets)))
    except Exception:  # noqa: BLE001 - the outcome is already recorded; the note is a courtesy
        log.warning("Could not hand the run's outcome to its note", exc_info=True)


def log_failure_reason(sentence: str, secrets: list[str]) -> None:
    """A failure callback's last word: the task log ends on the reason, not on traceback frames
    (Airflow runs the callback after it logged the traceback)."""
    # Airflow runs failure callbacks inside its "Post Execute" log group, which its log view shows
    # collapsed: closing the group first makes the reason the last line a person sees. The view
    # ignores the unmatched ::endgroup:: Airflow writes after the callback.
    log.info("::endgroup::")
    log.error("%s", scrub(sentence, secrets))


def trigger_of(dag_run: Any) -> str:
    """scheduled | manual | api | asset (the values backup_history's CHECK allows). A run started
    by the Backups page's button (conf ``{"trigger": "backups_page"}``) or by a REST client that
    passes ``{"trigger": "api"}`` counts as api; every other manual run is manual. The page names
    who started a run from Airflow's own ``triggered_by`` instead; this column is its fallback for
    runs Airflow no longer has."""
    run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
    if run_type == "scheduled":
        return "scheduled"
    if run_type == "asset_triggered":
        return "asset"
    if (dag_run.conf or {}).get("trigger") in API_TRIGGERS:
        return "api"
    return "manual"


def triggered_by(dag_run: Any) -> str | None:
    """The Airflow user who triggered the run (None for scheduled runs)."""
    return getattr(dag_run, "triggering_user_name", None) or None


DEPLOYMENT_ENVIRONMENT_VARIABLE = "SUPABASE_BACKUP_DEPLOYMENT"


def deployment_id() -> str:
    """The identity of this Airflow deployment, recorded on every history row it writes: a
    deployment settles only its own rows, since it alone can tell whether their runs are live
    (another deployment's run ids are unknown to it, which would read as "ended").

    ``SUPABASE_BACKUP_DEPLOYMENT`` when set (in the environment of every worker). Otherwise
    ``airflow-`` and a hash of the address of this deployment's API server as its tasks reach it
    (``[core] execution_api_server_url``, else ``[api] base_url``), without any user or password:
    Airflow 3 has no public instance id, and a task cannot see the metadata database (its
    supervisor replaces ``sql_alchemy_conn`` with a placeholder), but every task of a deployment
    reports to the same Execution API and two deployments do not share one. Set the variable
    where workers name that server differently (another host name per worker): a task whose
    identity differs cannot settle the deployment's rows, and a row it leaves running then stays
    so until a task with the deployment's identity settles it."""
    explicit = os.environ.get(DEPLOYMENT_ENVIRONMENT_VARIABLE, "").strip()
    if explicit:
        return explicit
    address = (
        conf.get("core", "execution_api_server_url", fallback=None)
        or conf.get("api", "base_url", fallback=None)
        or "http://localhost:8080"
    )
    parts = urlsplit(address.strip())
    # Never a user or password, and one spelling of the same server: lower-case host, no slash.
    identity = f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{parts.port or ''}"
    identity += parts.path.rstrip("/")
    return "airflow-" + hashlib.sha256(identity.encode()).hexdigest()[:16]


def attempt_of(dag_run: Any) -> int:
    """How many times the run was cleared: a cleared run's outcome replaces the earlier one's."""
    return int(getattr(dag_run, "clear_number", 0) or 0)


@contextlib.contextmanager
def failing_fast():
    """Permanent errors (a configuration error, a missing migration, a missing or too old pg_dump,
    a refused key) fail the task at once: retrying them only keeps the run ``running`` for minutes.
    Other errors are raised as they are, for the task's retries."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except BackupError as error:
        if error.permanent:
            raise AirflowFailException(str(error)) from error
        raise


def dag_run_has_ended(run_id: str, dag_id: str = DAG_ID) -> bool:
    """Whether Airflow says the DAG run is over (or no longer knows it), asked from a task."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    try:
        state = RuntimeTaskInstance.get_dagrun_state(dag_id, run_id)
    except Exception:  # noqa: BLE001 - a run Airflow no longer has cannot still be running
        log.info("Airflow has no run %s of %s: treating it as ended", run_id, dag_id)
        return True
    return str(getattr(state, "value", state)) not in ("queued", "running")


def task_label(ti: Any) -> str:
    """The task as the grid names it: ``export_bucket [avatars]`` for a mapped task."""
    label = getattr(ti, "rendered_map_index", None)
    map_index = getattr(ti, "map_index", None)
    if label and map_index is not None and map_index >= 0:
        return f"{ti.task_id} [{label}]"
    return ti.task_id


def final_task_sentence(context: dict) -> str:
    """Why a run's last task (record_history, record_drill) failed, as the run's outcome sentence:
    the AirflowFailException it raises carries that sentence; any other error is the task's own."""
    from airflow.sdk.exceptions import AirflowFailException

    error = context.get("exception")
    if isinstance(error, AirflowFailException) and str(error):
        return str(error)
    cause = "failed" if error is None else str(error) or type(error).__name__
    return outcome_sentence(FAILED, f"{task_label(context['ti'])}: {cause}")


def failed_task_ids(ti: Any, run_id: str) -> list[str]:
    """Tasks of the run that failed themselves (not those that only could not run because of them)."""
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
    return sorted(task_id for task_id, state in states.items() if state == "failed")
