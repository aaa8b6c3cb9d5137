"""`make demo`: start the sandbox, apply the migration, run one complete backup through Airflow
(`airflow dags test`), then print a summary, the archive's S3 location and a downloaded copy.

Everything runs on loopback: the sandbox's Postgres, Storage/Auth API and S3 (moto).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MIGRATION = PROJECT_ROOT / "include" / "sql" / "001_backup_system.sql"


def sandbox_exports(sandbox_dir: Path, size: str) -> dict[str, str]:
    """Start the sandbox (idempotent) and return the variables it prints as `export` lines."""
    started = subprocess.run(
        [sys.executable, "-m", "sandbox", "up", "--size", size, "--state-dir", str(sandbox_dir)],
        cwd=PROJECT_ROOT, capture_output=True, text=True,
    )
    if started.returncode != 0:
        # The sandbox says why it could not start; show that, not a Python traceback.
        raise DemoError("the sandbox could not start:\n" +
                        (started.stderr.strip() or started.stdout.strip() or "(no message)"))
    output = started.stdout
    exports = {}
    for line in output.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            exports[name] = shlex.split(value)[0] if value else ""
    return exports


class DemoError(Exception):
    pass


def libpq_environment(database_url: str) -> dict[str, str]:
    parts = urlsplit(database_url)
    return {
        "PGHOST": parts.hostname or "127.0.0.1", "PGPORT": str(parts.port or 5432),
        "PGUSER": unquote(parts.username or "postgres"),
        "PGPASSWORD": unquote(parts.password or ""),
        "PGDATABASE": parts.path.lstrip("/") or "postgres",
    }


def apply_migration(environment: dict[str, str]) -> None:
    subprocess.run(
        ["psql", "--quiet", "-v", "ON_ERROR_STOP=1", "-f", str(MIGRATION)],
        env={**os.environ, **environment}, check=True, stdout=subprocess.DEVNULL,
    )


def airflow_environment(exports: dict[str, str], airflow_home: Path) -> dict[str, str]:
    return {
        **os.environ,
        **exports,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "include"), str(PROJECT_ROOT)]),
        "AIRFLOW_VAR_SUPABASE_BACKUP_STAGING_ROOT": f"file://{airflow_home / 'staging'}",
    }


def download(exports: dict[str, str], bucket: str, key: str, target: Path) -> None:
    import boto3

    connection = json.loads(exports["AIRFLOW_CONN_AWS_DEFAULT"])
    client = boto3.client(
        "s3", endpoint_url=connection["extra"]["endpoint_url"],
        aws_access_key_id=connection["login"], aws_secret_access_key=connection["password"],
        region_name=connection["extra"]["region_name"],
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    client.download_file(bucket, key, str(target))


def main() -> int:
    try:
        return run_demo()
    except DemoError as error:
        print(f"make demo: {error}", file=sys.stderr)
        return 1


def run_demo() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="small", choices=["small", "medium"])
    parser.add_argument("--sandbox-dir", default=".sandbox")
    arguments = parser.parse_args()
    started = time.monotonic()
    sandbox_dir = (PROJECT_ROOT / arguments.sandbox_dir).resolve()
    print(f"Starting the sandbox ({arguments.size}) in {sandbox_dir} …", flush=True)
    exports = sandbox_exports(sandbox_dir, arguments.size)
    database_environment = libpq_environment(exports["AIRFLOW_CONN_SUPABASE_DB"])
    apply_migration(database_environment)
    print("Migration applied: system_settings_kv, backup_history", flush=True)

    airflow_home = PROJECT_ROOT / ".airflow"
    environment = airflow_environment(exports, airflow_home)
    airflow = str(Path(sys.executable).parent / "airflow")
    if not (airflow_home / "airflow.db").exists():
        print("Creating the Airflow metadata database (SQLite) …", flush=True)
        subprocess.run([airflow, "db", "migrate"], env=environment, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log_path = PROJECT_ROOT / ".demo" / f"backup-{time.strftime('%Y%m%dT%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"Running the supabase_backup DAG (log: {log_path.relative_to(PROJECT_ROOT)}) …",
          flush=True)
    backup_started = time.monotonic()
    with log_path.open("w") as log_file:
        result = subprocess.run(
            [airflow, "dags", "test", "supabase_backup", "--conf", "{}"],
            env=environment, stdout=log_file, stderr=subprocess.STDOUT,
        )
    backup_seconds = time.monotonic() - backup_started
    row = latest_row(database_environment)
    print()
    print(f"DAG run finished in {backup_seconds:.1f} s (exit status {result.returncode})")
    if not row:
        print("No backup_history row was written; see the log above.")
        return 1
    print(f"history:  run {row['run_id']}  status={row['status']}  trigger={row['trigger']}")
    if row["status"] != "success":
        print(f"error:    {row.get('error')}")
        return 1
    print(f"database: {row['database_bytes']:,} bytes of SQL")
    print(f"auth:     {row['auth_users']:,} users")
    print(f"storage:  {row['storage_objects']:,} objects in {row['storage_buckets']} buckets, "
          f"{row['storage_bytes']:,} bytes (after snapshot: {row['objects_created_after_snapshot']}"
          f" created, {row['objects_changed_after_snapshot']} changed, "
          f"{row['objects_deleted_after_snapshot']} deleted)")
    print(f"archive:  {row['size_bytes']:,} bytes, sha256 {row['sha256']} (verified after upload)")
    local_copy = PROJECT_ROOT / ".demo" / Path(row["s3_key"]).name
    download(exports, row["s3_bucket"], row["s3_key"], local_copy)
    checked = subprocess.run([sys.executable, "-m", "supabase_backup", "verify", str(local_copy)],
                             env=environment, capture_output=True, text=True)
    print(f"verify:   {(checked.stdout or checked.stderr).strip()}")
    print(f"total:    {time.monotonic() - started:.1f} s")
    print(f"archive: s3://{row['s3_bucket']}/{row['s3_key']}")
    print(f"local copy: {local_copy}")
    return 0


def latest_row(environment: dict[str, str]) -> dict:
    output = subprocess.run(
        ["psql", "-At", "-c",
         "SELECT row_to_json(h) FROM public.backup_history h ORDER BY id DESC LIMIT 1"],
        env={**os.environ, **environment}, check=True, capture_output=True, text=True,
    ).stdout.strip()
    return json.loads(output) if output else {}


if __name__ == "__main__":
    sys.exit(main())
