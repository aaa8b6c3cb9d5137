"""Sandboxes for the tests, all started by ``running_sandbox``: the session's small and medium
sandboxes (each started once per test run, on first use) and the few a module needs of its own
because it stops, rewrites or empties one. Each runs on loopback (Postgres, Storage/Auth API, S3),
with the migration applied, and is read back as ground truth through ``Sandbox``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import psycopg
import pytest

import sandbox as sandbox_package
from tests.conftest import PROJECT_ROOT

MIGRATION = PROJECT_ROOT / "include" / "sql" / "001_backup_system.sql"


class Sandbox:
    """Ground truth read straight from the sandbox's database and blob files, not through the
    library or the API the library uses."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.env = settings["env"]

    def connect(self, dbname: str | None = None, **options) -> psycopg.Connection:
        options.setdefault("autocommit", True)
        return psycopg.connect(
            host=self.settings["pg_host"], port=self.settings["pg_port"],
            user=self.settings["pg_user"], password=self.settings["pg_password"],
            dbname=dbname or self.settings["pg_dbname"], **options,
        )

    def libpq_environment(self, dbname: str | None = None) -> dict:
        return {**os.environ, "PGHOST": self.settings["pg_host"],
                "PGPORT": str(self.settings["pg_port"]), "PGUSER": self.settings["pg_user"],
                "PGPASSWORD": self.settings["pg_password"],
                "PGDATABASE": dbname or self.settings["pg_dbname"]}

    def objects(self) -> dict:
        """{(bucket, key): (size, sha256)} of every object, hashed from the blob files."""
        with self.connect() as connection:
            rows = connection.execute("SELECT bucket_id, name, id FROM storage.objects").fetchall()
        truth = {}
        for bucket, key, object_id in rows:
            data = Path(self.settings["blobs_dir"], str(object_id)).read_bytes()
            truth[(bucket, key)] = (len(data), hashlib.sha256(data).hexdigest())
        return truth

    def user_ids(self) -> set[str]:
        with self.connect() as connection:
            return {str(row[0]) for row in connection.execute("SELECT id FROM auth.users")}

    def set_faults(self, **faults) -> None:
        httpx.put(f"{self.settings['control_url']}/faults", json=faults).raise_for_status()

    def held(self, point: str) -> int:
        """How many requests wait at a hold right now ("listing" or "download")."""
        return httpx.get(f"{self.settings['control_url']}/faults").json()["held"][point]

    def clear_faults(self) -> None:
        httpx.delete(f"{self.settings['control_url']}/faults").raise_for_status()

    def set_backup_enabled(self, enabled: bool) -> None:
        with self.connect() as connection:
            connection.execute(
                "UPDATE public.system_settings_kv SET value = %s::jsonb WHERE key = 'backup_enabled'",
                (json.dumps(enabled),),
            )

    def history_row(self, run_id: str) -> dict | None:
        with self.connect() as connection:
            row = connection.execute(
                "SELECT row_to_json(h) FROM public.backup_history h WHERE run_id = %s", (run_id,)
            ).fetchone()
        return row[0] if row else None

    def s3(self):
        return boto3.client(
            "s3", endpoint_url=self.settings["s3_endpoint"], region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    def archive_keys(self) -> set[str]:
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=self.settings["s3_bucket"])
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def download_archive(self, key: str, target: Path) -> Path:
        self.s3().download_file(self.settings["s3_bucket"], key, str(target))
        return target


def new_state_dir(name: str) -> Path:
    """A fresh, empty sandbox state dir under /tmp (``up`` opens it to the postgres OS user)."""
    return Path(tempfile.mkdtemp(prefix=f"supabase-backup-sandbox-{name}-", dir="/tmp"))


@contextlib.contextmanager
def running_sandbox(name: str, size: str = "small", *, backup_tables: bool = True,
                    postgres_bin: Path | None = None) -> Iterator[Sandbox]:
    """Start a sandbox on a fresh state dir, yield it, then stop it and delete its data.

    ``backup_tables``: apply the product's migration (backup_history and the other tables the DAG
    writes); the sandbox's own tests leave it out, they test the stand-in alone.
    ``postgres_bin``: run its Postgres from these binaries instead of Debian's 15. The sandbox reads
    SANDBOX_PG_BIN once, when it is imported, so such a sandbox is driven through ``python -m
    sandbox`` in a process of its own."""
    state_dir = new_state_dir(name)
    environment = {**os.environ, "SANDBOX_PG_BIN": str(postgres_bin)} if postgres_bin else None

    def sandbox_command(*arguments: str) -> None:
        # Its standard output holds the sandbox's passwords: kept out of the test log.
        subprocess.run([sys.executable, "-m", "sandbox", *arguments, "--state-dir", str(state_dir)],
                       env=environment, cwd=PROJECT_ROOT, check=True, stdout=subprocess.DEVNULL)

    try:
        if postgres_bin:
            sandbox_command("up", "--size", size)
            started = Sandbox(sandbox_package.load_settings(str(state_dir)))
        else:
            started = Sandbox(sandbox_package.up(str(state_dir), size=size))
        if backup_tables:
            psql = str(postgres_bin / "psql") if postgres_bin else "psql"
            subprocess.run([psql, "--quiet", "-v", "ON_ERROR_STOP=1", "-f", str(MIGRATION)],
                           env=started.libpq_environment(), check=True, stdout=subprocess.DEVNULL)
        yield started
    finally:
        if postgres_bin:
            sandbox_command("down", "--purge")
        else:
            sandbox_package.down(str(state_dir), purge=True)


@pytest.fixture(scope="session")
def small_sandbox():
    """The small sandbox most tests share."""
    with running_sandbox("small") as started:
        yield started


@pytest.fixture(scope="session")
def medium_sandbox():
    """The medium sandbox (2,600 users, a 200 MiB object, about 190k rows), started once per run:
    its tests only read it and back it up."""
    with running_sandbox("medium", "medium") as started:
        yield started
