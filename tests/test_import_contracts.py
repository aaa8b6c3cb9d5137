"""The import directions of STYLE.md, as import-linter contracts (pyproject.toml): the library's
floors and no cycle inside it; the library imports no DAG, plugin or sandbox code; the sandbox
imports no library code and its own modules form floors without a cycle; only the boundary package
supabase_backup.airflow imports airflow."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT


def test_import_contracts_hold():
    folders = [PROJECT_ROOT / "include", PROJECT_ROOT, PROJECT_ROOT / "dags",
               PROJECT_ROOT / "plugins"]
    environment = {**os.environ,
                   "PYTHONPATH": os.pathsep.join(str(folder) for folder in folders)}
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=PROJECT_ROOT,
                            env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
