"""The plugin's failures are JSON and never carry a password: the app in process, with the
permission checks stood in for (the real ones are tested on a real api-server in test_access)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airflow.api_fastapi.core_api.security import get_user
from supabase_backup_plugin import dependencies
from supabase_backup_plugin.app import create_app
from tests.airflow_services import free_port

PASSWORD = "Pl41n-Password-Never-Shown"


@pytest.fixture
def client():
    app = create_app()
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="admin",
                                                                       role="admin")
    for check in (dependencies.CanRead, dependencies.CanReadDag, dependencies.CanTrigger,
                  dependencies.CanEditDag):
        app.dependency_overrides[check.dependency] = lambda: None
    return TestClient(app, raise_server_exceptions=False)


def use_database(monkeypatch, url: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_DB", url)


def test_an_unreachable_database_is_503_without_the_password(client, monkeypatch):
    use_database(monkeypatch, f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/postgres")
    reply = client.get("/api/v1/settings")
    assert reply.status_code == 503
    assert "cannot be reached" in reply.json()["detail"] and PASSWORD not in reply.text


def test_a_refused_password_is_503_without_the_password(client, monkeypatch, small_sandbox):
    sandbox = small_sandbox.settings
    use_database(monkeypatch, f"postgresql://{sandbox['pg_user']}:{PASSWORD}@{sandbox['pg_host']}"
                              f":{sandbox['pg_port']}/{sandbox['pg_dbname']}")
    reply = client.get("/api/v1/history")
    assert reply.status_code == 503 and PASSWORD not in reply.text
    assert "password authentication failed" in reply.json()["detail"]


def test_an_unexpected_error_is_500_naming_only_its_type(client, monkeypatch):
    def broken():
        raise RuntimeError(f"connection string postgresql://postgres:{PASSWORD}@db/postgres")

    client.app.dependency_overrides[dependencies.open_database] = broken
    reply = client.get("/api/v1/settings")
    assert reply.status_code == 500
    assert reply.json() == {
        "detail": "internal error (RuntimeError); see the Airflow api-server log"}


def test_an_undefined_connection_is_503(client, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_SUPABASE_DB", raising=False)
    reply = client.get("/api/v1/settings")
    assert reply.status_code == 503
    assert reply.json()["detail"].startswith("the Airflow connection supabase_db cannot be read")


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/history?offset=9223372036854775808"),
    ("GET", "/api/v1/history?offset=-1"),
    ("GET", "/api/v1/history?limit=501"),
    ("POST", "/api/v1/history/9223372036854775808/download-url"),
])
def test_a_number_out_of_bounds_is_the_callers_422(client, monkeypatch, small_sandbox, method,
                                                    path):
    sandbox = small_sandbox.settings
    use_database(monkeypatch, sandbox["db_url"])  # a working database: only the number is wrong
    reply = client.request(method, path)
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"][0]["type"] in ("less_than_equal", "greater_than_equal")
    assert client.get("/api/v1/history?offset=9223372036854775807").status_code == 200
