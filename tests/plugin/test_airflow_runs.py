"""``start_run`` against a Postgres metadata database, as production runs it: api-server processes
that trigger at the same moment start exactly one run between them."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from tests.airflow_services import AirflowServices
from tests.conftest import PROJECT_ROOT
from tests.plugin.conftest import DAG_ID
from tests.postgres_servers import DEBIAN_POSTGRES_15, bare_server

PROCESSES = 8


@pytest.fixture(scope="module")
def postgres_airflow(tmp_path_factory):
    """(environment, server): the Airflow environment of a migrated Postgres metadata database on a
    throwaway cluster, the DAG serialized into it and unpaused; no Airflow service runs."""
    with bare_server(DEBIAN_POSTGRES_15) as server:
        with psycopg.connect(host=server["host"], port=server["port"], user="postgres",
                             dbname="postgres", autocommit=True) as connection:
            connection.execute("CREATE DATABASE airflow")
        # The environment of the other plugin tests' real Airflow, on Postgres instead of SQLite
        # (the cluster trusts loopback, so the URL carries no password).
        services = AirflowServices(tmp_path_factory.mktemp("postgres-airflow-home"),
                                   {"SUPABASE_BACKUP_SCHEDULE": "none"})
        services.environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = (
            f"postgresql+psycopg2://postgres@{server['host']}:{server['port']}/airflow")
        services.airflow("db", "migrate")
        services.airflow("dags", "reserialize")
        services.airflow("dags", "unpause", DAG_ID)
        yield services.environment, server


def dag_runs(server) -> list[tuple[str, str]]:
    with psycopg.connect(host=server["host"], port=server["port"], user="postgres",
                         dbname="airflow") as connection:
        return connection.execute("SELECT run_id, state FROM dag_run WHERE dag_id = %s",
                                  (DAG_ID,)).fetchall()


def race(environment: dict, folder) -> list[dict]:
    """Each worker's outcome, after PROCESSES worker processes called start_run at once."""
    workers = []
    try:
        for number in range(PROCESSES):
            with open(folder / f"worker-{number}.log", "wb") as log:
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "tests.plugin.trigger_race_worker", f"user-{number}",
                     str(folder / f"outcome-{number}.json")],
                    cwd=PROJECT_ROOT, env=environment, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=log))
        for number, worker in enumerate(workers):
            while (line := worker.stdout.readline()) != b"ready\n":
                assert line, f"worker {number} ended early: see {folder}/worker-{number}.log"
        for worker in workers:  # each waits on its stdin: one line to each is the starting signal
            worker.stdin.write(b"go\n")
            worker.stdin.flush()
        for number, worker in enumerate(workers):
            assert worker.wait(timeout=120) == 0, f"see {folder}/worker-{number}.log"
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return [json.loads((folder / f"outcome-{number}.json").read_text())
            for number in range(PROCESSES)]


@pytest.mark.slow
def test_triggers_from_separate_processes_at_once_start_exactly_one_run(postgres_airflow,
                                                                        tmp_path):
    environment, server = postgres_airflow
    assert dag_runs(server) == []

    outcomes = race(environment, tmp_path)
    print("start_run took (s):", sorted(outcome["seconds"] for outcome in outcomes))

    started = [outcome["started"] for outcome in outcomes if "started" in outcome]
    assert len(started) == 1, outcomes
    assert [outcome["refused"] for outcome in outcomes if "refused" in outcome] == (
        started * (PROCESSES - 1)), outcomes
    assert dag_runs(server) == [(started[0], "queued")]
