"""One api-server process's part in ``test_airflow_runs.py``'s race: run as
``python -m tests.plugin.trigger_race_worker USER OUTCOME_FILE`` with the Airflow environment of the
metadata database under test. It connects, prints ``ready``, waits for a line on stdin (the
test's starting signal, sent to every worker at once), calls ``start_run`` once and writes the
outcome to OUTCOME_FILE as JSON: ``{"started": run_id}`` or ``{"refused": the active run's id}``,
with ``"seconds"`` the call took."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(PROJECT_ROOT / "include"), str(PROJECT_ROOT / "plugins")]

from sqlalchemy import text  # noqa: E402

from airflow.utils.session import create_session  # noqa: E402
from supabase_backup_plugin import airflow_runs  # noqa: E402
from supabase_backup_plugin.schemas import TriggerRequest  # noqa: E402


def main(user: str, outcome_file: str) -> None:
    with create_session() as session:  # the connection is made before the race, not in it
        session.execute(text("SELECT 1"))
    print("ready", flush=True)
    sys.stdin.readline()
    began = time.monotonic()
    try:
        outcome = {"started": airflow_runs.start_run(
            {**TriggerRequest().model_dump(), "trigger": "api"}, user)}
    except airflow_runs.RunActive as refusal:
        outcome = {"refused": refusal.run_id}
    outcome["seconds"] = round(time.monotonic() - began, 3)
    Path(outcome_file).write_text(json.dumps(outcome))


if __name__ == "__main__":
    main(*sys.argv[1:])
