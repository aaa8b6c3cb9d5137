"""Test-wide isolation: a private AIRFLOW_HOME, the library on sys.path, fast retries, and none of
the developer's AIRFLOW_* or SUPABASE_BACKUP_* settings.

Set before anything imports airflow, so no test touches a developer's Airflow set-up.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="supabase-backup-airflow-")
ISOLATED_PREFIXES = ("AIRFLOW_", "SUPABASE_BACKUP_")


def isolated_settings(environment) -> dict[str, str]:
    return {name: value for name, value in environment.items() if name.startswith(ISOLATED_PREFIXES)}


# A developer's shell may export a sourced .sandbox/env.sh, an AIRFLOW_HOME or a schedule of its
# own: none of it reaches a test, nor the Airflow processes and commands the tests start with this
# environment. Stripped here, before the settings below are set and before airflow is imported
# (it reads them at import). Only the names are kept, for the report header: values may be secrets.
SHELL_SETTINGS_IGNORED = sorted(isolated_settings(os.environ))
for _name in SHELL_SETTINGS_IGNORED:
    del os.environ[_name]

os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_ROOT / "plugins")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["SUPABASE_BACKUP_RETRY_DELAY_SECONDS"] = "1"
for path in (PROJECT_ROOT / "include", PROJECT_ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def pytest_report_header(config) -> str | None:
    if SHELL_SETTINGS_IGNORED:
        return "ignored from the shell: " + ", ".join(SHELL_SETTINGS_IGNORED)
    return None


@pytest.fixture(autouse=True)
def undo_settings_changed_by_the_test():
    """What a test sets or removes among AIRFLOW_* and SUPABASE_BACKUP_* (Airflow's task context
    included) is put back after it, so no test runs with another's settings. What fixtures of a
    wider scope set stays: it is in place before this snapshot."""
    before = isolated_settings(os.environ)
    yield
    for name in isolated_settings(os.environ).keys() - before.keys():
        del os.environ[name]
    os.environ.update(before)


from tests.sandbox_fixtures import medium_sandbox, small_sandbox  # noqa: E402,F401  (session fixtures)
