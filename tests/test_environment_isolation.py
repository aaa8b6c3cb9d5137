"""tests/conftest.py keeps the developer's shell out of the tests: the AIRFLOW_* and
SUPABASE_BACKUP_* settings a shell exports (a sourced .sandbox/env.sh, an AIRFLOW_HOME of its own)
never reach a test, and what one test sets is gone for the next. Checked by a pytest of its own
with such a shell environment, so this run's environment is left alone."""

import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT, isolated_settings

SHELL = {
    "AIRFLOW_HOME": "/home/developer/airflow",
    "AIRFLOW__CORE__DAGS_FOLDER": "/home/developer/airflow/dags",
    "AIRFLOW_CONN_SUPABASE_DB": "postgresql://postgres:shell-secret-123@db.example.com/postgres",
    "AIRFLOW_VAR_SUPABASE_BACKUP_S3_BUCKET": "the-developers-real-bucket",
    "SUPABASE_BACKUP_SCHEDULE": "@weekly",
    "SUPABASE_BACKUP_RETRY_DELAY_SECONDS": "600",
}

TESTS = '''
import os
import subprocess
import sys


def test_the_shell_settings_do_not_reach_a_test():
    for name in ("AIRFLOW_CONN_SUPABASE_DB", "AIRFLOW_VAR_SUPABASE_BACKUP_S3_BUCKET",
                 "SUPABASE_BACKUP_SCHEDULE"):
        assert name not in os.environ, name
    # The test-wide ones are the conftest's own, not the shell's.
    assert os.environ["AIRFLOW_HOME"] != "/home/developer/airflow"
    assert os.environ["AIRFLOW__CORE__DAGS_FOLDER"] == DAGS_FOLDER
    assert os.environ["SUPABASE_BACKUP_RETRY_DELAY_SECONDS"] == "1"
    # Nor a command a test starts with its environment.
    child = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.environ))"],
                           env={**os.environ}, capture_output=True, text=True, check=True)
    assert "SUPABASE_BACKUP_SCHEDULE" not in child.stdout
    assert "AIRFLOW_CONN_SUPABASE_DB" not in child.stdout


def test_one_changes_settings():
    os.environ["SUPABASE_BACKUP_LEFT_BEHIND"] = "1"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = "/changed/by/a/test"
    del os.environ["SUPABASE_BACKUP_RETRY_DELAY_SECONDS"]


def test_the_next_does_not_see_them():
    assert "SUPABASE_BACKUP_LEFT_BEHIND" not in os.environ
    assert os.environ["AIRFLOW__CORE__DAGS_FOLDER"] == DAGS_FOLDER
    assert os.environ["SUPABASE_BACKUP_RETRY_DELAY_SECONDS"] == "1"
'''


def test_the_developers_shell_settings_reach_no_test(tmp_path):
    (tmp_path / "test_in_a_developers_shell.py").write_text(
        f"DAGS_FOLDER = {str(PROJECT_ROOT / 'dags')!r}\n" + TESTS)
    this_run = isolated_settings(os.environ)  # this run's own, set by the conftest
    environment = {**{name: value for name, value in os.environ.items() if name not in this_run},
                   **SHELL,
                   "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "include"), str(PROJECT_ROOT)])}
    # The project's conftest loaded as a plugin: this folder is outside tests/.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout
    # The header names what was ignored, never a value (a connection URI holds a password).
    assert ("ignored from the shell: AIRFLOW_CONN_SUPABASE_DB, AIRFLOW_HOME, "
            "AIRFLOW_VAR_SUPABASE_BACKUP_S3_BUCKET, AIRFLOW__CORE__DAGS_FOLDER, "
            "SUPABASE_BACKUP_RETRY_DELAY_SECONDS, SUPABASE_BACKUP_SCHEDULE") in result.stdout
    assert "shell-secret-123" not in result.stdout + result.stderr
