"""A real Airflow on loopback for tests: api-server, scheduler and dag-processor with the
LocalExecutor and SQLite, SimpleAuthManager users (an admin by default), and a small REST client.

Runs the DAG the way a deployment does (a process per task, the Execution API between them),
which `dag.test()` does not."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AirflowServices:
    def __init__(self, home: Path, extra_environment: dict[str, str],
                 users: dict[str, str] | None = None):
        """``users``: name → SimpleAuthManager role (viewer, user, op, admin); each gets a random
        password, written to a file only the api-server reads."""
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.users = users or {"admin": "admin"}
        self.passwords = {name: secrets.token_urlsafe(16) for name in self.users}
        self.password = self.passwords.get("admin")
        passwords = home / "passwords.json"
        home.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps(self.passwords))
        self.environment = {
            **os.environ,
            **extra_environment,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{name}:{role}" for name, role in self.users.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "include"), str(PROJECT_ROOT)]),
        }
        self.processes: list[subprocess.Popen] = []
        self._tokens: dict[str, str] = {}

    def airflow(self, *arguments: str) -> None:
        subprocess.run([str(Path(sys.executable).parent / "airflow"), *arguments],
                       env=self.environment, check=True, capture_output=True)

    def start(self) -> "AirflowServices":
        self.airflow("db", "migrate")
        airflow = str(Path(sys.executable).parent / "airflow")
        for name, arguments in (("api-server", ["api-server", "--port", str(self.port)]),
                                ("scheduler", ["scheduler", "--skip-serve-logs"]),
                                ("dag-processor", ["dag-processor"])):
            log = open(self.home / f"{name}.log", "wb")
            self.processes.append(subprocess.Popen([airflow, *arguments], env=self.environment,
                                                   stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the Airflow api-server did not start; see {self.home}/api-server.log")

    def stop(self) -> None:
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def token(self, user: str = "admin") -> str:
        if user not in self._tokens:
            reply = httpx.post(f"{self.url}/auth/token",
                               json={"username": user, "password": self.passwords[user]})
            reply.raise_for_status()
            self._tokens[user] = reply.json()["access_token"]
        return self._tokens[user]

    def api(self, method: str, path: str, *, user: str = "admin", **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", timeout=30,
                             headers={"Authorization": f"Bearer {self.token(user)}"}, **kwargs)

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api("GET", f"/api/v2/dags/{dag_id}").status_code == 200:
                return
            time.sleep(1)
        raise RuntimeError(f"DAG {dag_id} never appeared; see {self.home}/dag-processor.log")

    def trigger(self, dag_id: str, conf: dict) -> str:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", params={"update_mask": "is_paused"},
                 json={"is_paused": False}).raise_for_status()
        reply = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                         json={"logical_date": None, "conf": conf})
        reply.raise_for_status()
        return reply.json()["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(1)
        raise RuntimeError(f"run {run_id} did not finish in {timeout} s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                        params={"limit": 100}).json()["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict:
        reply = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                         params={"limit": 100}).json()
        return {(item["task_id"], item["map_index"]): item["state"]
                for item in reply["task_instances"]}
