"""End-to-end fixtures: an Airflow metadata database and a helper that runs the real DAG with
``dag.test`` against the sandbox."""

from __future__ import annotations

import os

import pytest

from tests.sandbox_fixtures import Sandbox


@pytest.fixture(scope="session")
def airflow_metadata():
    from airflow.utils import db

    db.resetdb()


def run_dag(dag_id: str, environment: dict[str, str], conf: dict | None = None):
    """Run a DAG of this project once in-process (``dag.test``) with ``environment`` set for the
    run's duration; returns the finished DagRun."""
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        # A freshly parsed DAG for every run: dag.test() leaves one run's Params on the task
        # objects of the next run in the same process (seen with Airflow 3.3.2).
        from airflow.utils.cli import get_bagged_dag

        return get_bagged_dag(None, dag_id).test(run_conf=conf or {})
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def outcome_of(dag_run) -> str | None:
    """The outcome sentence a run's last task handed to the plugin's listener for the run's note
    (``dag.test`` has no scheduler, so no note: this is what the note would say)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        pushed = session.scalars(select(XComModel).where(
            XComModel.dag_run_id == dag_run.id, XComModel.key == "outcome")).first()
        return XComModel.deserialize_value(pushed) if pushed is not None else None


class BackupRunner:
    def __init__(self, staging_root: Path):
        self.staging_root = staging_root

    def run(self, sandbox: Sandbox, conf: dict | None = None, **variables):
        """Run the DAG once against ``sandbox``; returns the finished DagRun."""
        environment = {**sandbox.env,
                       "AIRFLOW_VAR_SUPABASE_BACKUP_STAGING_ROOT": f"file://{self.staging_root}"}
        environment.update({f"AIRFLOW_VAR_{name.upper()}": value for name, value in variables.items()})
        return run_dag("supabase_backup", environment, conf)


@pytest.fixture(scope="session")
def backup_runner(airflow_metadata, tmp_path_factory):
    return BackupRunner(tmp_path_factory.mktemp("staging"))
