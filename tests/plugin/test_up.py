"""`make up` / `make down` (tools/up.py): a real sandbox and Airflow on loopback with three logins,
and everything stopped again by process id."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.airflow_services import free_port
from tests.conftest import PROJECT_ROOT


def tool(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.up", *arguments], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)


def command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                pass
    return lines


@pytest.mark.slow
def test_up_prints_the_logins_once_and_down_stops_everything():
    root = Path(tempfile.mkdtemp(prefix="supabase-backup-up-"))
    os.chmod(root, 0o755)  # the sandbox's Postgres runs as the postgres user
    places = ["--sandbox-dir", str(root / "sandbox"), "--state-dir", str(root / "airflow")]
    port = free_port()
    pids: list[int] = []
    try:
        started = tool("up", "--port", str(port), *places)
        assert started.returncode == 0, started.stderr[-3000:]
        logins = dict(re.findall(r"^  (admin|operator|viewer)\s+(\S+)\s", started.stdout, re.M))
        assert set(logins) == {"admin", "operator", "viewer"}
        passwords_file = root / "airflow" / "passwords.json"
        assert json.loads(passwords_file.read_text()) == logins
        assert stat.S_IMODE(passwords_file.stat().st_mode) == 0o600
        assert not any(password in line for line in command_lines()
                       for password in logins.values())
        url = f"http://127.0.0.1:{port}"
        assert f"{url}/plugin/backups" in started.stdout

        token = httpx.post(f"{url}/auth/token", json={"username": "viewer",
                                                      "password": logins["viewer"]}).json()
        me = httpx.get(f"{url}/backup/api/v1/me",
                       headers={"Authorization": f"Bearer {token['access_token']}"})
        assert me.json()["can_trigger"] is False
        assert httpx.get(f"{url}/backup/api/v1/settings", headers={
            "Authorization": f"Bearer {token['access_token']}"}).json() == {"backup_enabled": True}

        admin = httpx.post(f"{url}/auth/token", json={"username": "admin",
                                                      "password": logins["admin"]}).json()
        as_admin = {"Authorization": f"Bearer {admin['access_token']}"}
        # No unasked run: the DAG is unpaused but has no schedule, so nothing is due.
        dag = httpx.get(f"{url}/api/v2/dags/supabase_backup", headers=as_admin).json()
        assert dag["is_paused"] is False and dag["next_dagrun_run_after"] is None, dag
        runs = httpx.get(f"{url}/api/v2/dags/supabase_backup/dagRuns", headers=as_admin).json()
        assert runs["total_entries"] == 0
        assert "schedule: none" in started.stdout
        # The settings are Variables in the metadata database (Admin -> Variables), not
        # AIRFLOW_VAR_* in the services' environment, where they would win over the UI.
        variables = httpx.get(f"{url}/api/v2/variables", headers=as_admin).json()
        keys = {item["key"] for item in variables["variables"]}
        assert {"supabase_backup_s3_bucket", "supabase_backup_staging_root"} <= keys
        for name in ("api-server", "scheduler"):
            pid = int((root / "airflow" / f"{name}.pid").read_text())
            assert b"AIRFLOW_VAR_" not in Path(f"/proc/{pid}/environ").read_bytes()
        # The triggerer runs, so Airflow's home shows no red Triggerer badge.
        health = {}
        for _ in range(60):
            health = httpx.get(f"{url}/api/v2/monitor/health").json()
            if (health.get("triggerer") or {}).get("status") == "healthy":
                break
            time.sleep(1)
        assert health["triggerer"]["status"] == "healthy", health

        again = tool("up", "--port", str(port), *places)
        assert again.returncode == 0 and "Already running" in again.stdout
        assert not any(password in again.stdout for password in logins.values())

        pids = [int((root / "airflow" / f"{name}.pid").read_text())
                for name in ("api-server", "scheduler", "dag-processor", "triggerer")]
    finally:
        stopped = tool("down", *places)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert "Stopped Airflow." in stopped.stdout and "still running" not in stopped.stdout
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or b"airflow" not in Path(
            f"/proc/{pid}/cmdline").read_bytes()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/api/v2/monitor/health", timeout=2)
    status = subprocess.run([sys.executable, "-m", "sandbox", "status", "--state-dir",
                             str(root / "sandbox")], cwd=PROJECT_ROOT, capture_output=True,
                            text=True).stdout
    assert '"running": true' not in status
    subprocess.run([sys.executable, "-m", "sandbox", "down", "--purge", "--state-dir",
                    str(root / "sandbox")], cwd=PROJECT_ROOT, capture_output=True)
