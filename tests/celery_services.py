"""A real scale-out Airflow on loopback for tests: redis as the Celery broker, api-server, scheduler
and dag-processor with the CeleryExecutor, and several `airflow celery worker` processes.

Each worker stands in for a separate machine: its own AIRFLOW_HOME (logs), its own private TMPDIR,
its own name (reported as the task instance's `hostname`), and nothing on local disk shared with
the others, so a run only succeeds when staging lives on an object store. Everything binds to
127.0.0.1; every process is started in its own session and killed by process group.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from tests.airflow_services import AirflowServices, free_port

REDIS_SERVER = "redis-server"  # the Debian package redis-server (.ci/run installs it)


def stop_process_group(process: subprocess.Popen, timeout: float = 20) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class RedisServer:
    """redis-server on 127.0.0.1 with a generated password, kept in a 0600 config file (never argv)
    and nothing persisted to disk."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.password = secrets.token_urlsafe(24)
        self.process: subprocess.Popen | None = None

    def url(self, database: int) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> "RedisServer":
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "redis.conf"
        config.touch(mode=0o600)
        config.write_text("\n".join([
            "bind 127.0.0.1", f"port {self.port}", "protected-mode yes", "daemonize no",
            'save ""', "appendonly no", f"dir {self.folder}",
            f"logfile {self.folder / 'redis.log'}", f"requirepass {self.password}", "",
        ]))
        self.process = subprocess.Popen([REDIS_SERVER, str(config)], start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if client.ping():
                    return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)


class CeleryAirflowServices(AirflowServices):
    """AirflowServices with the CeleryExecutor and ``worker_names`` celery workers."""

    def __init__(self, home: Path, extra_environment: dict[str, str], broker: RedisServer,
                 worker_names: tuple[str, ...] = ("worker-a", "worker-b"),
                 worker_concurrency: int = 2):
        super().__init__(home, extra_environment)
        self.environment.update({
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CELERY__BROKER_URL": broker.url(0),
            "AIRFLOW__CELERY__RESULT_BACKEND": broker.url(1),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
            # One message reserved per worker process: a busy worker leaves the queued tasks to
            # the idle one instead of hoarding them.
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.celery_worker_hostname.worker_hostname",
        })
        self.worker_names = worker_names
        self.worker_concurrency = worker_concurrency
        self.worker_folders: dict[str, Path] = {}

    def worker_environment(self, name: str) -> dict[str, str]:
        folder = self.home / "workers" / name
        temporary = folder / "tmp"
        temporary.mkdir(parents=True, exist_ok=True)
        self.worker_folders[name] = folder
        return {
            **self.environment,
            "AIRFLOW_HOME": str(folder),
            "TMPDIR": str(temporary),
            "SUPABASE_BACKUP_TEST_WORKER_NAME": name,
        }

    def start(self) -> "CeleryAirflowServices":
        super().start()
        airflow = str(Path(sys.executable).parent / "airflow")
        for name in self.worker_names:
            environment = self.worker_environment(name)
            log = open(self.worker_folders[name] / "worker.log", "wb")
            self.processes.append(subprocess.Popen(
                [airflow, "celery", "worker", "--concurrency", str(self.worker_concurrency),
                 "--celery-hostname", f"{name}@127.0.0.1", "--skip-serve-logs",
                 "--without-gossip", "--without-mingle"],
                env=environment, cwd=self.worker_folders[name], stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True))
        self.wait_for_workers()
        return self

    def wait_for_workers(self, timeout: float = 120) -> None:
        """Until every worker answers a Celery ping through the broker."""
        from celery import Celery

        expected = {f"{name}@127.0.0.1" for name in self.worker_names}
        app = Celery(broker=self.environment["AIRFLOW__CELERY__BROKER_URL"])
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for process in self.processes:
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"an Airflow process exited early; see the logs under {self.home}")
                replies = app.control.ping(timeout=1) or []
                answered = {name for reply in replies for name in reply}
                if expected <= answered:
                    return
                time.sleep(0.5)
        finally:
            app.close()
        raise RuntimeError(f"celery workers did not answer; see {self.home}/workers/*/worker.log")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        reply = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                         params={"limit": 100})
        reply.raise_for_status()
        return reply.json()["task_instances"]

    def stop(self) -> None:
        # Workers first (they were started last), so none picks a task while the rest goes down.
        for process in reversed(self.processes):
            stop_process_group(process)
