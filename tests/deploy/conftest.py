"""Deployment checks: the compose file, .env.example, the Dockerfile's requirements, pg_dump 17, and
scale-out on a real CeleryExecutor. None needs a Docker engine."""

import pytest

from tests.e2e.conftest import BackupRunner, airflow_metadata  # noqa: F401  (fixture)


def pytest_configure(config):
    # For selecting (`-m slow` / `-m "not slow"`); CI runs these like every other test.
    config.addinivalue_line("markers", "slow: a long test (minutes); selectable, never skipped")


@pytest.fixture(scope="session")
def deploy_backup_runner(airflow_metadata, tmp_path_factory):  # noqa: F811
    return BackupRunner(tmp_path_factory.mktemp("deploy-staging"))
