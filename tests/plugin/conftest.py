"""One real Airflow (api-server, scheduler, dag-processor; LocalExecutor, SQLite) for all plugin
tests, with three SimpleAuthManager users, against the session's small sandbox."""

from __future__ import annotations

import sys
import time

import httpx
import pytest

from tests.airflow_services import AirflowServices
from tests.conftest import PROJECT_ROOT

# Airflow puts the plugins folder on sys.path when it is imported; the in-process tests import the
# plugin package before that may have happened.
if str(PROJECT_ROOT / "plugins") not in sys.path:
    sys.path.append(str(PROJECT_ROOT / "plugins"))

USERS = {"admin": "admin", "operator": "op", "viewer": "viewer"}
DAG_ID = "supabase_backup"


class PluginClient:
    """The plugin's API as a user sees it."""

    def __init__(self, services: AirflowServices):
        self.services = services
        self.url = f"{services.url}/backup"

    def call(self, method: str, path: str, *, user: str | None = "admin",
             **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.services.token(user)}"} if user else {}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def wait_for_run(self, run_id: str, *, user: str = "viewer",
                     timeout: float = 600) -> list[dict]:
        """Poll the run until Airflow says it ended; every status seen, last one last."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self.call("GET", f"/api/v1/runs/{run_id}", user=user)
            reply.raise_for_status()
            seen.append(reply.json())
            if seen[-1]["state"] in ("success", "failed"):
                return seen
            time.sleep(1)
        raise AssertionError(f"run {run_id} did not end in {timeout} s: {seen[-1]}")


@pytest.fixture(scope="session")
def plugin_airflow(small_sandbox, tmp_path_factory):
    home = tmp_path_factory.mktemp("plugin-airflow-home")
    services = AirflowServices(home, {
        **small_sandbox.env,
        "AIRFLOW_VAR_SUPABASE_BACKUP_STAGING_ROOT": f"file://{home / 'staging'}",
        "SUPABASE_BACKUP_SCHEDULE": "none",
        # Long enough that a task waiting to retry is seen by the page, which polls every 2 s.
        "SUPABASE_BACKUP_RETRY_DELAY_SECONDS": "3",
    }, users=USERS)
    services.start()
    try:
        services.wait_for_dag(DAG_ID)
        services.api("PATCH", f"/api/v2/dags/{DAG_ID}", params={"update_mask": "is_paused"},
                     json={"is_paused": False}).raise_for_status()
        yield services
    finally:
        services.stop()


@pytest.fixture(scope="session")
def plugin(plugin_airflow) -> PluginClient:
    return PluginClient(plugin_airflow)
