"""database.py against the sandbox's Postgres: the snapshot, the inventory and pg_dump."""

import json

import pytest

from supabase_backup.sources import database
from supabase_backup.errors import DatabaseDumpFailed
from supabase_backup.staging import StagingArea


@pytest.fixture
def database_settings(small_sandbox):
    settings = small_sandbox.settings
    return database.DatabaseSettings(host=settings["pg_host"], port=settings["pg_port"],
                                     user=settings["pg_user"], password=settings["pg_password"],
                                     dbname=settings["pg_dbname"])


def test_dump_and_inventory_come_from_one_snapshot(database_settings, small_sandbox, tmp_path):
    staging = StagingArea.at(f"file://{tmp_path}")
    summary = database.dump_database(database_settings, staging)
    assert summary["included"] and summary["server_version"].startswith("15.")
    assert summary["client_version"].startswith("15.") and summary["snapshot"]
    dump = (tmp_path / "db" / "backup.sql").read_bytes()
    assert len(dump) == summary["bytes"] and b"CREATE TABLE auth.users" in dump
    assert small_sandbox.settings["pg_password"].encode() not in dump
    inventory = [json.loads(line)
                 for line in (tmp_path / "inventory" / "storage_objects.jsonl").read_text().splitlines()]
    truth = small_sandbox.objects()
    assert {(row["bucket"], row["key"]) for row in inventory} == set(truth)
    assert all(row["size"] == truth[(row["bucket"], row["key"])][0] for row in inventory)
    users = [table for table in summary["tables"] if (table["schema"], table["table"]) == ("auth", "users")]
    assert users and users[0]["row_estimate"] > 0  # an estimate: other tests add users


def test_inventory_only_for_selected_buckets(database_settings, tmp_path):
    staging = StagingArea.at(f"file://{tmp_path}")
    summary = database.dump_database(database_settings, staging, include_dump=False,
                                     inventory_buckets=["documents"])
    assert set(summary["inventory_by_bucket"]) == {"documents"}
    assert not (tmp_path / "db" / "backup.sql").exists()


def test_a_wrong_password_fails_without_showing_it(database_settings, tmp_path):
    from dataclasses import replace

    import psycopg

    wrong = replace(database_settings, password="not-the-password-42")
    with pytest.raises(psycopg.OperationalError) as raised:
        database.dump_database(wrong, StagingArea.at(f"file://{tmp_path}"))
    assert "not-the-password-42" not in str(raised.value)


def test_pg_dump_failure_is_reported_with_its_message(database_settings, tmp_path):
    staging = StagingArea.at(f"file://{tmp_path}")
    with pytest.raises(DatabaseDumpFailed, match="status 1"):
        database.run_pg_dump(["pg_dump", "--table=no_such_table_anywhere", "--strict-names"],
                             database_settings.libpq_environment(), staging)
