"""Start, stop and describe the sandbox: Postgres 15, the API stand-in and a moto S3 server."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import bulk, seed
from .common import SandboxError, connect, make_jwt

PG_BIN = os.environ.get("SANDBOX_PG_BIN", "/usr/lib/postgresql/15/bin")
PG_USER_OS = "postgres"
S3_BUCKET = "supabase-backups"
PKG_ROOT = Path(__file__).resolve().parent.parent  # the directory holding the sandbox package
SQL_DIR = Path(__file__).resolve().parent / "sql"
DEFAULT_STATE_DIR = "./.sandbox"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie counts as dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _as_postgres(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", PG_USER_OS, "--"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _chown_pg(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, PG_USER_OS, PG_USER_OS)


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _postgres_can_reach(folder: Path) -> bool:
    if os.geteuid() != 0:
        return True  # not root: Postgres runs as this user
    res = subprocess.run(["runuser", "-u", PG_USER_OS, "--", "test", "-x", str(folder)],
                         capture_output=True)
    return res.returncode == 0


def _place_cluster(state_dir: Path) -> None:
    """Choose where the Postgres cluster lives, once per state dir.

    The cluster runs as the postgres OS user, which cannot enter a checkout under a private folder
    (a home folder, or mktemp -d: mode 0700). Rather than loosen the user's folders, the cluster
    then lives in a folder of its own under /tmp, named after the state dir and recorded in
    ``STATE/pg_location``, so down, status and a restart find it; ``down --purge`` removes it.
    """
    marker = state_dir / "pg_location"
    if marker.exists() or _postgres_can_reach(state_dir):
        return
    digest = hashlib.sha1(str(state_dir).encode()).hexdigest()[:12]
    outside = Path(tempfile.gettempdir()) / f"supabase-backup-sandbox-pg-{digest}"
    outside.mkdir(mode=0o700, exist_ok=True)
    marker.write_text(str(outside))


# ------------------------------------------------------------------------------------------------
# settings
# ------------------------------------------------------------------------------------------------
def _cluster_folder(state_dir: Path) -> Path:
    marker = state_dir / "pg_location"
    return Path(marker.read_text().strip()) if marker.exists() else state_dir / "pg"


def _paths(state_dir: Path) -> dict[str, Path]:
    pg = _cluster_folder(state_dir)
    return {
        "settings": state_dir / "settings.json",
        "env": state_dir / "env.sh",
        "pg": pg,
        "pgdata": pg / "data",
        "pgrun": pg / "run",
        "pglog": pg / "postgres.log",
        "blobs": state_dir / "blobs",
        "logs": state_dir / "logs",
        "api_pid": state_dir / "api.pid",
        "s3_pid": state_dir / "s3.pid",
        "seeded": state_dir / "seeded.json",
        "schema": state_dir / "schema.done",
        "faults": state_dir / "faults.json",
    }


def env_vars(s: dict) -> dict[str, str]:
    api_conn = {"conn_type": "generic", "host": s["api_url"], "password": s["service_key"]}
    aws_conn = {"conn_type": "aws", "login": "testing", "password": "testing",
                "extra": {"region_name": "us-east-1", "endpoint_url": s["s3_endpoint"],
                          "config_kwargs": {"signature_version": "s3v4", "s3": {"addressing_style": "path"}}}}
    management_conn = {"conn_type": "generic", "host": s["api_url"], "password": s["management_token"],
                       "extra": {"project_ref": s["project_ref"]}}
    return {
        "AIRFLOW_CONN_SUPABASE_DB": s["db_url"],
        "AIRFLOW_CONN_SUPABASE_API": json.dumps(api_conn, separators=(",", ":")),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws_conn, separators=(",", ":")),
        "AIRFLOW_VAR_SUPABASE_BACKUP_S3_BUCKET": s["s3_bucket"],
        "SANDBOX_CONTROL_URL": s["control_url"],
        "AIRFLOW_CONN_SUPABASE_MANAGEMENT": json.dumps(management_conn, separators=(",", ":")),
    }


def env_lines(s: dict) -> str:
    def q(v: str) -> str:
        return "'" + v.replace("'", "'\"'\"'") + "'"

    return "".join(f"export {k}={q(v)}\n" for k, v in env_vars(s).items())


def _new_settings(state_dir: Path, size: str) -> dict:
    p = _paths(state_dir)
    pg_port, api_port, s3_port = _free_port(), _free_port(), _free_port()
    while len({pg_port, api_port, s3_port}) < 3:
        api_port, s3_port = _free_port(), _free_port()
    jwt_secret = secrets.token_urlsafe(48)
    now = int(time.time())
    s = {
        "state_dir": str(state_dir),
        "size": size,
        "pg_host": "127.0.0.1", "pg_port": pg_port, "pg_user": "postgres",
        "pg_password": secrets.token_urlsafe(24), "pg_dbname": "postgres",
        "pg_socket_dir": str(p["pgrun"]), "pg_bin_dir": PG_BIN, "pg_data_dir": str(p["pgdata"]),
        "api_port": api_port, "api_url": f"http://127.0.0.1:{api_port}",
        "service_key": "sb_secret_" + secrets.token_urlsafe(24),
        "anon_key": "sb_publishable_" + secrets.token_urlsafe(24),
        "jwt_secret": jwt_secret,
        "service_role_jwt": make_jwt(jwt_secret, {"iss": "supabase", "ref": "sandbox", "role": "service_role",
                                                  "iat": now, "exp": now + 10 * 365 * 86400}),
        "anon_jwt": make_jwt(jwt_secret, {"iss": "supabase", "ref": "sandbox", "role": "anon",
                                          "iat": now, "exp": now + 10 * 365 * 86400}),
        "s3_port": s3_port, "s3_endpoint": f"http://127.0.0.1:{s3_port}", "s3_bucket": S3_BUCKET,
        "s3_access_key": "testing", "s3_secret_key": "testing", "s3_region": "us-east-1",
        "blobs_dir": str(p["blobs"]),
        "faults_baseline": {},
    }
    return s


def _management_settings() -> dict:
    """The Management API's side: a personal access token, a 20-letter project ref, and the canary
    that starts every secret value it holds (sandbox/management.py)."""
    return {
        "management_token": "sbp_" + secrets.token_hex(20),
        "project_ref": "".join(secrets.choice(string.ascii_lowercase) for _ in range(20)),
        "management_canary": "canary-" + secrets.token_hex(8),
    }


def _finish_settings(s: dict) -> dict:
    # State dirs made before the Management API stand-in get its settings on their next `up`.
    for key, value in _management_settings().items():
        s.setdefault(key, value)
    s["db_url"] = (f"postgresql://{s['pg_user']}:{s['pg_password']}@{s['pg_host']}:{s['pg_port']}/"
                   f"{s['pg_dbname']}")
    s["control_url"] = f"{s['api_url']}/_sandbox"
    s["env"] = env_vars(s)
    return s


def load_settings(state_dir: str | os.PathLike = DEFAULT_STATE_DIR) -> dict:
    path = _paths(Path(state_dir).resolve())["settings"]
    if not path.exists():
        raise SandboxError(f"no sandbox in {Path(state_dir).resolve()} (run `python -m sandbox up`)")
    return json.loads(path.read_text())


def _save_settings(s: dict) -> None:
    state_dir = Path(s["state_dir"])
    p = _paths(state_dir)
    _write_private(p["settings"], json.dumps(s, indent=2) + "\n")
    _write_private(p["env"], env_lines(s))


# ------------------------------------------------------------------------------------------------
# postgres
# ------------------------------------------------------------------------------------------------
def _pg_running(s: dict) -> bool:
    res = _as_postgres([f"{PG_BIN}/pg_ctl", "-D", s["pg_data_dir"], "status"])
    return res.returncode == 0


def _pg_init(s: dict, p: dict[str, Path]) -> None:
    p["pg"].mkdir(mode=0o700, exist_ok=True)
    _chown_pg(p["pg"])
    p["pgrun"].mkdir(mode=0o700, exist_ok=True)
    _chown_pg(p["pgrun"])
    pwfile = p["pg"] / "pwfile"
    _write_private(pwfile, s["pg_password"] + "\n")
    _chown_pg(pwfile)
    try:
        res = _as_postgres([f"{PG_BIN}/initdb", "-D", s["pg_data_dir"], "-U", "postgres",
                            f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                            "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"])
    finally:
        pwfile.unlink(missing_ok=True)
    if res.returncode != 0:
        raise SandboxError(f"initdb failed:\n{res.stdout}\n{res.stderr}")
    conf = Path(s["pg_data_dir"]) / "postgresql.conf"
    extra = (
        "\n# sandbox\n"
        f"listen_addresses = '127.0.0.1'\nport = {s['pg_port']}\n"
        f"unix_socket_directories = '{s['pg_socket_dir']}'\n"
        "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        "max_connections = 100\nshared_buffers = 128MB\nmax_wal_size = 2GB\n"
        "password_encryption = 'scram-sha-256'\n"
    )
    with open(conf, "a") as fh:
        fh.write(extra)


def _pg_start(s: dict, p: dict[str, Path]) -> None:
    res = _as_postgres([f"{PG_BIN}/pg_ctl", "-D", s["pg_data_dir"], "-l", str(p["pglog"]), "-w",
                        "-t", "60", "start"], start_new_session=True)
    if res.returncode != 0:
        log = p["pglog"].read_text()[-3000:] if p["pglog"].exists() else ""
        raise SandboxError(f"pg_ctl start failed:\n{res.stdout}\n{res.stderr}\n{log}")


def _pg_stop(s: dict) -> None:
    if Path(s["pg_data_dir"]).exists() and _pg_running(s):
        _as_postgres([f"{PG_BIN}/pg_ctl", "-D", s["pg_data_dir"], "-m", "fast", "-w", "stop"])


def _apply_schema(s: dict, p: dict[str, Path]) -> None:
    with connect(s, autocommit=True) as conn:
        conn.execute((SQL_DIR / "roles.sql").read_text())
        conn.execute((SQL_DIR / "schema.sql").read_text())
    p["schema"].write_text("ok\n")


# ------------------------------------------------------------------------------------------------
# background processes
# ------------------------------------------------------------------------------------------------
def _running(pidfile: Path, port: int) -> bool:
    pid = _read_pid(pidfile)
    return bool(pid and pid_alive(pid) and _port_open(port))


def _spawn(cmd: list[str], pidfile: Path, logname: str, p: dict[str, Path], env: dict | None = None) -> int:
    p["logs"].mkdir(exist_ok=True)
    logf = open(p["logs"] / logname, "ab")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=str(PKG_ROOT), env=env, close_fds=True)
    logf.close()
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def _wait_port(port: int, pid: int, what: str, logfile: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _port_open(port):
            return
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    tail = logfile.read_text(errors="replace")[-3000:] if logfile.exists() else ""
    raise SandboxError(f"{what} did not start on port {port}:\n{tail}")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill_group(pidfile: Path, marker: str, timeout: float = 10) -> None:
    pid = _read_pid(pidfile)
    if not pid:
        return
    # only ever signal the process group we started (the pid file may be stale after a reboot)
    if pid_alive(pid) and marker in _cmdline(pid):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.time() + timeout
        while time.time() < deadline and pid_alive(pid):
            time.sleep(0.05)
        if pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    pidfile.unlink(missing_ok=True)


def _start_s3(s: dict, p: dict[str, Path]) -> None:
    if _running(p["s3_pid"], s["s3_port"]):
        return
    moto = Path(sys.executable).parent / "moto_server"
    cmd = [str(moto)] if moto.exists() else [sys.executable, "-m", "moto.server"]
    pid = _spawn(cmd + ["-H", "127.0.0.1", "-p", str(s["s3_port"])], p["s3_pid"], "s3.log", p)
    _wait_port(s["s3_port"], pid, "moto_server", p["logs"] / "s3.log")


def _ensure_s3_bucket(s: dict) -> None:
    # Imported here: boto3 takes about a second to load, and only `up` talks to S3 (not `env`,
    # `status` or `down`, nor the API server, which imports this package).
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=s["s3_endpoint"], aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1",
                          config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if s["s3_bucket"] not in existing:
        client.create_bucket(Bucket=s["s3_bucket"])


def _start_api(s: dict, p: dict[str, Path]) -> None:
    if _running(p["api_pid"], s["api_port"]):
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    pid = _spawn([sys.executable, "-m", "sandbox.server", "--state-dir", s["state_dir"]],
                 p["api_pid"], "api.log", p, env=env)
    _wait_port(s["api_port"], pid, "sandbox API server", p["logs"] / "api.log")


# ------------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------------
def up(state_dir: str | os.PathLike = DEFAULT_STATE_DIR, size: str = "small",
       objects_dir: str | os.PathLike | None = None, users_file: str | os.PathLike | None = None,
       list_v2: bool | None = None, quiet: bool = True, bulk_objects: int | None = None,
       bulk_bucket: str = "bulk", bulk_size: int = 1024, bulk_seed: int = 0) -> dict:
    """Start (or re-use) the sandbox in ``state_dir`` and return its settings dict.

    ``bulk_objects``: also (re)create the synthetic bulk bucket ``bulk_bucket`` with that many
    objects of ``bulk_size`` bytes, made from ``bulk_seed`` (sandbox/bulk.py)."""
    if size not in ("small", "medium"):
        raise SandboxError("size must be 'small' or 'medium'")
    t0 = time.time()
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o711)
    _place_cluster(state_dir)
    p = _paths(state_dir)

    def say(msg: str) -> None:
        if not quiet:
            print(f"[sandbox {time.time() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    if p["settings"].exists():
        s = json.loads(p["settings"].read_text())
        if p["seeded"].exists() and s.get("size") != size:
            say(f"note: state dir was seeded as {s.get('size')!r}; keeping it (use down --purge to reseed)")
    else:
        s = _new_settings(state_dir, size)
    if list_v2 is not None:
        s.setdefault("faults_baseline", {})["list_v2_disabled"] = not list_v2
    s = _finish_settings(s)
    _save_settings(s)
    if list_v2 is not None and p["faults"].exists():
        try:
            faults = json.loads(p["faults"].read_text())
            faults["list_v2_disabled"] = not list_v2
            _write_private(p["faults"], json.dumps(faults, indent=2))
        except (OSError, ValueError):
            pass
    p["blobs"].mkdir(exist_ok=True)

    if not Path(s["pg_data_dir"], "PG_VERSION").exists():
        say("initdb")
        _pg_init(s, p)
    if not _pg_running(s):
        say("starting postgres")
        _pg_start(s, p)
    if not p["schema"].exists():
        say("creating schema")
        _apply_schema(s, p)

    say("starting moto S3 and the API server")
    _start_s3(s, p)
    _start_api(s, p)
    _ensure_s3_bucket(s)

    if not p["seeded"].exists():
        say(f"seeding ({s['size']})")
        summary = seed.seed(s, s["size"], log=say)
        p["seeded"].write_text(json.dumps(summary, indent=2) + "\n")
    if objects_dir:
        say(f"loading objects from {objects_dir}")
        seed.load_objects_dir(s, objects_dir)
    if users_file:
        say(f"loading users from {users_file}")
        seed.load_users_file(s, users_file)
    if bulk_objects is not None:
        bulk.add_bulk_bucket(s, bulk_bucket, bulk_objects, size=bulk_size, seed=bulk_seed, log=say)
    if list_v2 is not None:
        _set_fault_live(s, {"list_v2_disabled": not list_v2})
    say("ready")
    return s


def _set_fault_live(s: dict, update: dict) -> None:
    import httpx  # half a second to load, needed only by `up --list-v2/--no-list-v2`

    try:
        httpx.put(f"{s['control_url']}/faults", json=update, timeout=5)
    except httpx.HTTPError:
        pass


def down(state_dir: str | os.PathLike = DEFAULT_STATE_DIR, purge: bool = False) -> None:
    """Stop the three processes; keep the data unless ``purge``."""
    state_dir = Path(state_dir).resolve()
    p = _paths(state_dir)
    if p["settings"].exists():
        s = json.loads(p["settings"].read_text())
        _kill_group(p["api_pid"], "sandbox.server")
        _kill_group(p["s3_pid"], "moto")
        _pg_stop(s)
    if purge and p["pg"].exists() and p["pg"].parent != state_dir:
        shutil.rmtree(p["pg"])
    if purge and state_dir.exists():
        shutil.rmtree(state_dir)


def stop_part(state_dir: str | os.PathLike, part: str) -> None:
    """Stop one process of a running sandbox, for fault tests: "s3" (moto, whose objects are then
    gone), "api", or "postgres" (immediate shutdown, as a crash). ``up`` starts it again."""
    state_dir = Path(state_dir).resolve()
    p = _paths(state_dir)
    if part == "s3":
        _kill_group(p["s3_pid"], "moto")
    elif part == "api":
        _kill_group(p["api_pid"], "sandbox.server")
    elif part == "postgres":
        s = json.loads(p["settings"].read_text())
        if _pg_running(s):
            _as_postgres([f"{PG_BIN}/pg_ctl", "-D", s["pg_data_dir"], "-m", "immediate", "-w", "stop"])
    else:
        raise SandboxError(f"unknown part {part!r}: s3, api or postgres")


def status(state_dir: str | os.PathLike = DEFAULT_STATE_DIR) -> dict[str, Any]:
    state_dir = Path(state_dir).resolve()
    p = _paths(state_dir)
    if not p["settings"].exists():
        return {"state_dir": str(state_dir), "exists": False}
    s = json.loads(p["settings"].read_text())
    seeded = json.loads(p["seeded"].read_text()) if p["seeded"].exists() else None
    return {
        "state_dir": str(state_dir), "exists": True, "size": s.get("size"),
        "postgres": {"running": _pg_running(s) if Path(s["pg_data_dir"]).exists() else False,
                     "port": s["pg_port"]},
        "api": {"running": _running(p["api_pid"], s["api_port"]), "port": s["api_port"],
                "pid": _read_pid(p["api_pid"])},
        "s3": {"running": _running(p["s3_pid"], s["s3_port"]), "port": s["s3_port"],
               "pid": _read_pid(p["s3_pid"])},
        "seeded": seeded,
    }
