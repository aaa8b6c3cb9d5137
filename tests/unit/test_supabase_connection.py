"""The ``supabase`` connection type (supabase_backup.airflow.supabase_hook, .provider) and how
``connections`` chooses between it and the old ``supabase_db`` / ``supabase_api`` pair."""

import importlib
import json
import re
from pathlib import Path

import airflow
import jsonschema
import pytest

from supabase_backup.airflow import connections, provider
from supabase_backup.airflow.supabase_hook import SupabaseHook
from supabase_backup.config import BackupSettings
from supabase_backup.errors import ConfigurationError

SERVICE_KEY = "sb_secret_unit-test-service-key"
DATABASE_PASSWORD = "pa:ss/w@rd"  # characters a URL must quote
DATABASE_URL = (
    "postgresql://postgres.abcdefghijklmnop:pa%3Ass%2Fw%40rd"
    "@aws-0-eu-central-1.pooler.supabase.com:5432/postgres?sslmode=require"
)
MANAGEMENT_TOKEN = "sbp_unit-test-management-token"


def supabase_connection(**overrides) -> str:
    connection = {
        "conn_type": "supabase",
        "host": "https://abcdefghijklmnop.supabase.co",
        "password": SERVICE_KEY,
        "extra": {"database_url": DATABASE_URL, "management_token": MANAGEMENT_TOKEN},
    }
    connection.update(overrides)
    return json.dumps(connection)


@pytest.fixture
def one_project(monkeypatch):
    """Only a supabase connection: no supabase_db, no supabase_api."""
    monkeypatch.delenv("AIRFLOW_CONN_SUPABASE_DB", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SUPABASE_API", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE", supabase_connection())
    monkeypatch.setenv("AIRFLOW_VAR_SUPABASE_BACKUP_CONNECTION_ID", "supabase")


# --- the form the Airflow UI draws ----------------------------------------------------------------


def test_provider_info_follows_airflows_schema():
    schema_file = Path(airflow.__file__).parent / "provider_info.schema.json"
    info = provider.get_provider_info()
    jsonschema.validate(info, json.loads(schema_file.read_text()))
    assert info["package-name"] == "supabase-backup"
    assert info["connection-types"][0]["connection-type"] == SupabaseHook.conn_type == "supabase"
    assert info["connection-types"][0]["hook-class-name"] == (
        f"{SupabaseHook.__module__}.{SupabaseHook.__qualname__}"
    )


def test_the_form_asks_for_project_url_service_key_database_url_and_a_token():
    (connection_type,) = provider.get_provider_info()["connection-types"]
    behaviour = connection_type["ui-field-behaviour"]
    assert behaviour["relabeling"] == {"host": "Project URL", "password": "Service key"}
    assert set(behaviour["hidden-fields"]) == {"schema", "login", "port"}
    fields = connection_type["conn-fields"]
    assert list(fields) == ["database_url", "management_token"]
    # Both hold secrets: Airflow masks fields whose schema format is password.
    assert {field["schema"]["format"] for field in fields.values()} == {"password"}
    assert "session pooler" in fields["database_url"]["label"]
    assert fields["management_token"]["description"].startswith("Optional.")


def test_airflow_reads_the_form_from_the_provider_info():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    manager._add_customized_fields(
        "supabase-backup",
        "supabase",
        provider.get_provider_info()["connection-types"][0]["ui-field-behaviour"],
    )
    placeholders = manager._field_behaviours["supabase"]["placeholders"]
    assert placeholders["host"] == "https://<project-ref>.supabase.co"
    assert placeholders["extra__supabase__database_url"].startswith("postgresql://")


def test_the_notifier_named_in_the_provider_info_imports():
    from airflow.sdk import BaseNotifier

    (notifier_path,) = provider.get_provider_info()["notifications"]
    module_name, _, class_name = notifier_path.rpartition(".")
    # How Airflow imports it (import_string): the module, then getattr.
    assert issubclass(getattr(importlib.import_module(module_name), class_name), BaseNotifier)


# --- settings from one connection -----------------------------------------------------------------


def test_the_hook_gives_api_database_and_management_settings(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_DEFAULT", supabase_connection())
    hook = SupabaseHook()

    api = hook.api_settings()
    assert (api.url, api.key) == ("https://abcdefghijklmnop.supabase.co", SERVICE_KEY)
    database = hook.database_settings()
    assert database.describe() == (
        "postgres.abcdefghijklmnop@aws-0-eu-central-1.pooler.supabase.com:5432/postgres"
    )
    assert (database.password, database.sslmode) == (DATABASE_PASSWORD, "require")
    management = hook.management_settings()
    assert management.api_url == "https://api.supabase.com"
    assert (management.project_ref, management.access_token) == (
        "abcdefghijklmnop",
        MANAGEMENT_TOKEN,
    )
    for settings in (api, database, management):
        assert SERVICE_KEY not in repr(settings)
        assert DATABASE_PASSWORD not in repr(settings)
        assert MANAGEMENT_TOKEN not in repr(settings)


def test_the_management_token_is_optional(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SUPABASE_DEFAULT", supabase_connection(extra={"database_url": DATABASE_URL})
    )
    assert SupabaseHook().management_settings() is None


def test_fields_saved_by_an_airflow_2_form_are_read_too(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SUPABASE_DEFAULT",
        supabase_connection(extra={"extra__supabase__database_url": DATABASE_URL}),
    )
    assert SupabaseHook().database_settings().password == DATABASE_PASSWORD


def test_a_missing_database_url_says_what_to_set_without_any_secret(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_DEFAULT", supabase_connection(extra={}))
    with pytest.raises(ConfigurationError, match="supabase_default.*has no database_url") as caught:
        SupabaseHook().database_settings()
    assert SERVICE_KEY not in str(caught.value)


def test_the_transaction_pooler_is_refused_without_showing_the_password(monkeypatch):
    transaction_pooler = DATABASE_URL.replace(":5432/", ":6543/")
    monkeypatch.setenv(
        "AIRFLOW_CONN_SUPABASE_DEFAULT",
        supabase_connection(extra={"database_url": transaction_pooler}),
    )
    with pytest.raises(ConfigurationError, match="transaction pooler.*port 5432") as caught:
        SupabaseHook().database_settings()
    assert "pa%3Ass" not in str(caught.value) and DATABASE_PASSWORD not in str(caught.value)


def test_a_missing_service_key_names_the_field(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_DEFAULT", supabase_connection(password=None))
    with pytest.raises(ConfigurationError, match="has no password: set it to the service role key"):
        SupabaseHook().api_settings()


# --- connections: the Variable chooses the supabase connection; unset, nothing changes ------------


def test_with_the_variable_set_every_setting_comes_from_the_supabase_connection(one_project):
    assert connections.project_connection_id() == "supabase"
    assert connections.api_settings().key == SERVICE_KEY
    assert connections.database_settings().password == DATABASE_PASSWORD
    assert connections.management_settings().access_token == MANAGEMENT_TOKEN
    # The run plan names it for both roles, so each task resolves the same connection.
    settings = BackupSettings.from_variables(
        lambda name, default: {
            "supabase_backup_s3_bucket": "archives",
            "supabase_backup_connection_id": "supabase",
        }.get(name, default)
    )
    assert (settings.database_conn_id, settings.api_conn_id) == ("supabase", "supabase")
    assert connections.database_settings(settings.database_conn_id).password == DATABASE_PASSWORD
    assert connections.api_settings(settings.api_conn_id).key == SERVICE_KEY


def test_failure_messages_are_scrubbed_of_every_secret_of_the_connection(one_project):
    secrets = connections.connection_secrets()
    assert set(secrets) == {SERVICE_KEY, DATABASE_PASSWORD, MANAGEMENT_TOKEN}


def test_a_plan_naming_a_supabase_connection_works_without_the_variable(monkeypatch):
    # What one DAG per project needs: the plan's conn id alone picks the connection's type.
    monkeypatch.delenv("AIRFLOW_VAR_SUPABASE_BACKUP_CONNECTION_ID", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_CLIENT_A", supabase_connection())
    assert connections.database_settings("client_a").password == DATABASE_PASSWORD
    assert connections.api_settings("client_a").url == "https://abcdefghijklmnop.supabase.co"


def test_without_the_variable_the_old_connections_still_resolve(monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_SUPABASE_BACKUP_CONNECTION_ID", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE", supabase_connection(password="not-this-one"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_SUPABASE_DB",
        "postgresql://postgres.ref:old-db-secret@pooler.example:5432/postgres",
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SUPABASE_API",
        json.dumps({"conn_type": "https", "host": "ref.supabase.co", "password": "old-api-key"}),
    )
    assert connections.project_connection_id() is None
    assert connections.database_settings().password == "old-db-secret"
    assert connections.api_settings().key == "old-api-key"
    assert connections.management_settings() is None
    settings = BackupSettings.from_variables(
        lambda name, default: {"supabase_backup_s3_bucket": "archives"}.get(name, default)
    )
    assert (settings.database_conn_id, settings.api_conn_id) == ("supabase_db", "supabase_api")
    assert set(connections.connection_secrets()) == {"old-db-secret", "old-api-key"}


def test_the_readme_example_is_a_working_connection(monkeypatch):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (example,) = re.findall(r"AIRFLOW_CONN_SUPABASE='(\{.*?\})'", readme, re.S)
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE", example)
    monkeypatch.setenv("AIRFLOW_VAR_SUPABASE_BACKUP_CONNECTION_ID", "supabase")
    assert connections.api_settings().url.endswith(".supabase.co")
    assert connections.database_settings().port == 5432
