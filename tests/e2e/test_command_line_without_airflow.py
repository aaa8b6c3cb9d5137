"""`pip install .` in a fresh venv with the core dependencies only (no apache-airflow) gives a
working `supabase-backup` command: verify on a local file and on an s3:// URL (ranged reads)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.unit.test_verify import MEMBERS, write_zip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("core-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Built from a copy of what the package is made of: an in-tree build would leave build/ in
    # the checkout and could reuse stale files from it.
    source = tmp_path_factory.mktemp("package-source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    shutil.copytree(PROJECT_ROOT / "include" / "supabase_backup",
                    source / "include" / "supabase_backup",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # The pinned versions as constraints: the same wheels as the project's venv (pip's cache).
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                    "-c", str(PROJECT_ROOT / "requirements.txt"), str(source)],
                   check=True, capture_output=True, text=True)
    return venv


def command(venv: Path, *arguments: str, environment: dict | None = None):
    return subprocess.run([str(venv / "bin" / "supabase-backup"), *arguments], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": "", **(environment or {})},
                          cwd=venv)


def test_the_venv_has_no_airflow(core_venv):
    probe = subprocess.run([str(core_venv / "bin" / "python"), "-c", "import airflow"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert probe.returncode != 0 and "No module named 'airflow'" in probe.stderr


def test_verify_a_local_archive_and_one_on_s3(core_venv, small_sandbox, tmp_path):
    good = write_zip(tmp_path / "good.zip", MEMBERS)
    bad = write_zip(tmp_path / "bad.zip", {**MEMBERS, "stranger": b"x"})

    result = command(core_venv, "verify", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK {good}: 2 members")
    assert command(core_venv, "verify", str(bad)).returncode == 1

    s3 = small_sandbox.s3()
    bucket = small_sandbox.settings["s3_bucket"]
    s3.upload_file(str(good), bucket, "cli-test/good.zip")
    s3.upload_file(str(bad), bucket, "cli-test/bad.zip")
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": small_sandbox.settings["s3_endpoint"]}
    result = command(core_venv, "verify", "--json", f"s3://{bucket}/cli-test/good.zip", environment=aws)
    assert result.returncode == 0, result.stderr
    assert '"members_checked": 2' in result.stdout
    damaged = command(core_venv, "verify", f"s3://{bucket}/cli-test/bad.zip", environment=aws)
    assert damaged.returncode == 1 and "stranger" in damaged.stderr
    missing = command(core_venv, "verify", f"s3://{bucket}/cli-test/none.zip", environment=aws)
    assert missing.returncode == 9 and "does not exist" in missing.stderr
