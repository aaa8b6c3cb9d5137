"""Throwaway bare Postgres servers for tests: a new cluster from a given bin folder, run as the
postgres OS user from a /tmp folder it can reach (initdb refuses root). Postgres 17's binaries come
from ``tests.postgres_17.reachable_bin()``."""

from __future__ import annotations

import os
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.airflow_services import free_port

DEBIAN_POSTGRES_15 = Path("/usr/lib/postgresql/15/bin")


def as_postgres(*command: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True)


@contextmanager
def bare_server(binaries: Path) -> Iterator[dict]:
    """{"host", "port", "bin"}: a new cluster with trust auth for the postgres user on loopback."""
    folder = Path(tempfile.mkdtemp(prefix="supabase-backup-pg-", dir="/tmp"))
    os.chmod(folder, 0o755)
    subprocess.run(["chown", "postgres", str(folder)], check=True)
    data, port = folder / "data", free_port()
    as_postgres(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        yield {"host": "127.0.0.1", "port": port, "bin": binaries}
    finally:
        as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        subprocess.run(["rm", "-rf", str(folder)], check=True)
