"""Test-wide isolation: a private AIRFLOW_HOME, the library on sys.path, fast retries.

Set before anything imports airflow, so no test touches a developer's Airflow set-up.
"""

import os
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="supabase-backup-airflow-")

os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_ROOT / "plugins")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["SUPABASE_BACKUP_RETRY_DELAY_SECONDS"] = "1"
for path in (PROJECT_ROOT / "include", PROJECT_ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


from tests.sandbox_fixtures import small_sandbox  # noqa: E402,F401  (session fixture for all tests)
