"""`make up` / `make down`: the sandbox and a real Airflow on loopback, to use the Backups page.

`up` starts the sandbox (Postgres, Storage/Auth API, S3), applies the migration, starts Airflow's
api-server, scheduler, dag-processor and triggerer (LocalExecutor, SQLite metadata, 127.0.0.1
only), unpauses the DAG and prints the URL and three logins: admin (admin role), operator (op: may
trigger, download and switch backups) and viewer (viewer: may only look). Their passwords are
random, written once to STATE/passwords.json (mode 0600) and printed once, by the `up` that created
them.

The settings the sandbox needs are created as Variables in Airflow's metadata database (Admin ->
Variables shows them, and an edit there is what the next run uses), never as ``AIRFLOW_VAR_*``
environment variables, which would silently win over the UI. A Variable that already exists is kept,
so an edit survives the next ``make up``. The backup DAG has no schedule here unless
``SUPABASE_BACKUP_SCHEDULE`` says otherwise: unpausing a daily DAG would start a run at once, and
``make up`` starts nothing nobody asked for.

`down` stops what `up` started, by the process ids in STATE/*.pid (each a process group), and the
sandbox if `up` started it; a sandbox started by something else (``make demo``, ``make sandbox``)
is left running and `down` says so and how to stop it. Data is kept; `make clean` removes it.
"""

from __future__ import annotations

import argparse
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

from sandbox.runtime import pid_alive  # a zombie counts as dead
from tools.demo import PROJECT_ROOT, airflow_environment, apply_migration, libpq_environment, \
    sandbox_exports

SERVICES = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    # Deferrable operators need it, and without it Airflow's home page shows a red Triggerer badge.
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
VARIABLE_PREFIX = "AIRFLOW_VAR_"
USERS = {"admin": "admin", "operator": "op", "viewer": "viewer"}
DAG_ID = "supabase_backup"


def write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def our_process(pid: int, name: str) -> bool:
    """The pid still belongs to the Airflow process we started (pids are reused)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    # Airflow retitles its processes ("airflow api_server -- host:…"), so both spellings count.
    return "airflow" in command and (name in command or name.replace("-", "_") in command)


def running_services(state: Path) -> dict[str, int]:
    found = {}
    for name in SERVICES:
        pid_file = state / f"{name}.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            if pid_alive(pid) and our_process(pid, name):
                found[name] = pid
    return found


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def split_variables(environment: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the environment without AIRFLOW_VAR_*, those Variables by their Airflow names)."""
    variables = {name[len(VARIABLE_PREFIX):].lower(): value
                 for name, value in environment.items() if name.startswith(VARIABLE_PREFIX)}
    rest = {name: value for name, value in environment.items()
            if not name.startswith(VARIABLE_PREFIX)}
    return rest, variables


def environment_for(exports: dict[str, str], state: Path, port: int) -> dict[str, str]:
    jwt_secret_file = state / "jwt_secret"
    if not jwt_secret_file.exists():
        write_private(jwt_secret_file, secrets.token_urlsafe(64))
    url = f"http://127.0.0.1:{port}"
    environment, _ = split_variables(airflow_environment(exports, state))
    return {
        "SUPABASE_BACKUP_SCHEDULE": "none",
        **environment,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{state}/airflow.db",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret_file.read_text(),
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(state / "passwords.json"),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
    }


def wait_until(check, what: str, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{what} did not happen within {timeout:.0f} s; see {log}")


def up(arguments) -> int:
    state = (PROJECT_ROOT / arguments.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    sandbox_dir = (PROJECT_ROOT / arguments.sandbox_dir).resolve()
    record_file = state / "up.json"
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    url = f"http://127.0.0.1:{record.get('port', arguments.port)}"
    if running := running_services(state):
        print(f"Already running ({', '.join(f'{n} {p}' for n, p in running.items())}): {url}")
        print(f"Logins: admin, operator, viewer; passwords in {state / 'passwords.json'}")
        return 0

    sandbox_was_running = sandbox_is_running(sandbox_dir)
    print(f"Starting the sandbox ({arguments.size}) in {sandbox_dir} …", flush=True)
    exports = sandbox_exports(sandbox_dir, arguments.size)
    # Recorded at once, so a `down` after an `up` that failed further on still stops this sandbox.
    write_private(record_file, json.dumps({"port": arguments.port,
                                           "sandbox_dir": str(sandbox_dir),
                                           # a sandbox an earlier, failed up started stays ours
                                           "started_sandbox": not sandbox_was_running
                                           or bool(record.get("started_sandbox"))}))
    apply_migration({**libpq_environment(exports["AIRFLOW_CONN_SUPABASE_DB"]),
                     "PGOPTIONS": "-c client_min_messages=warning"})
    print("Migration applied.", flush=True)

    if not port_free(arguments.port):
        raise SystemExit(f"port {arguments.port} on 127.0.0.1 is taken; pass PORT=<another>")
    url = f"http://127.0.0.1:{arguments.port}"
    new_passwords = None
    passwords_file = state / "passwords.json"
    if not passwords_file.exists():
        new_passwords = {user: secrets.token_urlsafe(12) for user in USERS}
        write_private(passwords_file, json.dumps(new_passwords))
    passwords = json.loads(passwords_file.read_text())
    environment = environment_for(exports, state, arguments.port)
    _, variables = split_variables(airflow_environment(exports, state))
    airflow = str(Path(sys.executable).parent / "airflow")
    print("Migrating the Airflow metadata database (SQLite) …", flush=True)
    subprocess.run([airflow, "db", "migrate"], env=environment, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    created = create_variables(airflow, environment, variables, state)
    for name, command in SERVICES.items():
        with open(state / f"{name}.log", "ab") as log:
            process = subprocess.Popen([airflow, *command], env=environment, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       cwd=state)
        (state / f"{name}.pid").write_text(str(process.pid))
    print("Starting Airflow (api-server, scheduler, dag-processor, triggerer) …", flush=True)
    wait_until(lambda: httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200,
               "the api-server answering", state / "api-server.log")
    token = httpx.post(f"{url}/auth/token", json={"username": "admin",
                                                   "password": passwords["admin"]}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    wait_until(lambda: httpx.get(f"{url}/api/v2/dags/{DAG_ID}", headers=headers,
                                 timeout=5).status_code == 200,
               f"the DAG {DAG_ID} being parsed", state / "dag-processor.log")
    httpx.patch(f"{url}/api/v2/dags/{DAG_ID}", params={"update_mask": "is_paused"},
                json={"is_paused": False}, headers=headers, timeout=10).raise_for_status()

    print()
    schedule = environment["SUPABASE_BACKUP_SCHEDULE"]
    print(f"Airflow:       {url}  (the DAG {DAG_ID} is unpaused; schedule: {schedule}"
          + (", so nothing runs until you trigger it: SUPABASE_BACKUP_SCHEDULE=@daily make up for "
             "the daily schedule)" if schedule == "none" else ")"))
    print(f"Variables:     {', '.join(sorted(variables))} in Admin -> Variables"
          + (f" (created: {', '.join(created)})" if created else " (kept as they were)"))
    print(f"Backups page:  {url}/plugin/backups   API docs: {url}/backup/docs")
    if new_passwords:
        print(f"Logins (printed this once; kept in {passwords_file}):")
        for user, role in USERS.items():
            print(f"  {user:<9} {new_passwords[user]:<18} ({role})")
    else:
        print(f"Logins: admin, operator, viewer; passwords in {passwords_file}")
    print(f"Logs: {state}/*.log.  Stop with: make down")
    return 0


def create_variables(airflow: str, environment: dict[str, str], variables: dict[str, str],
                     state: Path) -> list[str]:
    """Create the Variables that do not exist yet in the metadata database; existing ones (maybe
    edited in the UI) are kept. Returns the names created."""
    variables_file = state / "variables.json"
    # `variables export` writes a JSON object of every Variable (the list command's output has
    # log lines around its JSON).
    subprocess.run([airflow, "variables", "export", str(variables_file)], env=environment,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    existing = set(json.loads(variables_file.read_text() or "{}"))
    variables_file.unlink(missing_ok=True)
    wanted = {name: value for name, value in variables.items() if name not in existing}
    if wanted:
        write_private(variables_file, json.dumps(wanted))
        try:
            subprocess.run([airflow, "variables", "import", "--action-on-existing-key", "skip",
                            str(variables_file)], env=environment, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            variables_file.unlink(missing_ok=True)
    return sorted(wanted)


def sandbox_left_running(record: dict, sandbox_running: bool) -> str | None:
    """What `down` says of a sandbox it does not stop (None when there is nothing to say)."""
    if record.get("started_sandbox") or not sandbox_running:
        return None
    where = record.get("sandbox_dir", ".sandbox")
    return (f"The sandbox in {where} is still running: make up did not start it (make demo or "
            f"make sandbox did). Stop it with: make sandbox-down SANDBOX_DIR={where}")


def stop_group(pid: int, timeout: float = 20) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.3)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def down(arguments) -> int:
    state = (PROJECT_ROOT / arguments.state_dir).resolve()
    for name, pid in running_services(state).items():
        print(f"Stopping {name} (process group {pid}) …", flush=True)
        stop_group(pid)
    for name in SERVICES:
        pid_file = state / f"{name}.pid"
        if pid_file.exists() and pid_alive(int(pid_file.read_text())) and \
                our_process(int(pid_file.read_text()), name):
            raise SystemExit(f"{name} (pid {pid_file.read_text()}) did not stop; its pid file is "
                             "kept")
        pid_file.unlink(missing_ok=True)
    record_file = state / "up.json"
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    if record.get("started_sandbox"):
        print("Stopping the sandbox …", flush=True)
        subprocess.run([sys.executable, "-m", "sandbox", "down", "--state-dir",
                        record["sandbox_dir"]], cwd=PROJECT_ROOT, check=True)
    record_file.unlink(missing_ok=True)
    sandbox_dir = record.get("sandbox_dir") or str((PROJECT_ROOT / arguments.sandbox_dir).resolve())
    note = sandbox_left_running({**record, "sandbox_dir": sandbox_dir},
                                sandbox_is_running(Path(sandbox_dir)))
    print("Stopped Airflow." + (f"\n{note}" if note else ""))
    return 0


def sandbox_is_running(sandbox_dir: Path) -> bool:
    if not (sandbox_dir / "settings.json").exists():
        return False
    status = subprocess.run([sys.executable, "-m", "sandbox", "status", "--state-dir",
                             str(sandbox_dir)], cwd=PROJECT_ROOT, capture_output=True, text=True)
    return '"running": true' in status.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the sandbox and Airflow")
    start.add_argument("--size", default="small", choices=["small", "medium"])
    start.add_argument("--port", type=int, default=8080)
    stop = commands.add_parser("down", help="stop what up started")
    for command in (start, stop):
        command.add_argument("--sandbox-dir", default=".sandbox")
        command.add_argument("--state-dir", default=".airflow-up")
    arguments = parser.parse_args(argv)
    return up(arguments) if arguments.command == "up" else down(arguments)


if __name__ == "__main__":
    sys.exit(main())
