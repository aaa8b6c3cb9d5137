import json

import pytest

from supabase_backup import steps
from supabase_backup.config import BackupSettings
from supabase_backup.errors import ConfigurationError


@pytest.mark.parametrize("run_type, conf, expected", [
    ("scheduled", {}, "scheduled"),
    ("manual", None, "manual"),
    ("manual", {"trigger": "api"}, "api"),
    ("asset_triggered", {}, "asset"),
])
def test_trigger_of(run_type, conf, expected):
    assert steps.trigger_of(run_type, conf) == expected


@pytest.mark.parametrize("connection, url", [
    ({"conn_type": "generic", "host": "http://127.0.0.1:54321/", "password": "k"},
     "http://127.0.0.1:54321"),
    ({"conn_type": "https", "host": "abcd.supabase.co", "password": "k"}, "https://abcd.supabase.co"),
    ({"conn_type": "generic", "host": "abcd.supabase.co",
      "extra": {"service_role_key": "k"}}, "https://abcd.supabase.co"),
])
def test_api_settings_from_the_connection(monkeypatch, connection, url):
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_API", json.dumps(connection))
    api = steps.api_settings(BackupSettings(s3_bucket="b"))
    assert (api.url, api.key) == (url, "k")


def test_api_connection_without_a_key_says_what_to_set(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_API", json.dumps(
        {"conn_type": "generic", "host": "https://abcd.supabase.co"}))
    with pytest.raises(ConfigurationError, match="service role key"):
        steps.api_settings(BackupSettings(s3_bucket="b"))


def test_database_settings_from_a_session_pooler_uri(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SUPABASE_DB",
                       "postgresql://postgres.abcd:p%40ss@aws-0-eu.pooler.supabase.com:5432/postgres"
                       "?sslmode=require")
    database = steps.database_settings()
    assert (database.host, database.port, database.user, database.password, database.sslmode) == (
        "aws-0-eu.pooler.supabase.com", 5432, "postgres.abcd", "p@ss", "require")
