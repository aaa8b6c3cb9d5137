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


# --- A dump counts only when its own stream proves it whole (issue 19, item 1) ------------------

def wrapped_pg_dump(tmp_path, filter_command: str) -> str:
    """A pg_dump that runs the real one, passes its output through ``filter_command`` and exits 0:
    the dumps of issue 19 that were recorded as success."""
    import stat

    real = database.choose_pg_dump(15)[0]
    path = tmp_path / "bin" / "pg_dump"
    path.parent.mkdir()
    path.write_text(
        "#!/bin/bash\n"
        f'if [ "$1" = "--version" ]; then exec {real} --version; fi\n'
        f'{real} "$@" > {tmp_path}/real.sql || exit $?\n'
        f"{filter_command} < {tmp_path}/real.sql\n"
        "exit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_real_dump_proves_itself_against_the_snapshot(database_settings, tmp_path):
    summary = database.dump_database(database_settings, StagingArea.at(f"file://{tmp_path}"))
    check = summary["dump_check"]
    assert check["trailer"] == "-- PostgreSQL database dump complete"
    assert check["tables_compared_with_snapshot"] > 0 and check["copy_blocks"] > 0
    users = next(table for table in summary["tables"] if table["table"] == "users"
                 and table["schema"] == "auth")
    assert users["dump_rows"] == users["rows"] > 0
    assert summary["roles"]["dump_check"]["trailer"].endswith("cluster dump complete")
    assert "copy_rows" not in summary  # the per-table counts went onto the tables' entries


def test_a_dump_missing_a_row_fails_naming_the_table(database_settings, tmp_path):
    from supabase_backup.errors import DatabaseDumpIncomplete

    program = wrapped_pg_dump(tmp_path, "sed '/^COPY auth.users /{n;d}'")  # drop the first row
    with pytest.raises(DatabaseDumpIncomplete) as raised:
        database.dump_database(database_settings, StagingArea.at(f"file://{tmp_path}/staging"),
                               pg_dump_path=program)
    message = str(raised.value)
    assert "db/backup.sql is not a whole dump" in message
    assert "table auth.users has" in message and "rows in the dump but" in message
    assert database_settings.password not in message


def test_a_cut_dump_fails_although_pg_dump_exited_0(database_settings, tmp_path):
    from supabase_backup.errors import DatabaseDumpIncomplete

    program = wrapped_pg_dump(tmp_path, "head -c 20000")
    with pytest.raises(DatabaseDumpIncomplete, match="exited with status 0, but db/backup.sql is "
                       "not a whole dump: it (ends inside the rows|does not end with the line)"):
        database.dump_database(database_settings, StagingArea.at(f"file://{tmp_path}/staging"),
                               pg_dump_path=program)


def test_parents_and_partitions_are_not_mistaken_for_lost_rows(database_settings, tmp_path):
    """count(*) of a parent includes its children; pg_dump writes each child's rows under the
    child. Such a table is recorded (dump_rows) but not compared."""
    with database_settings.connect(autocommit=True) as connection:
        connection.execute("""
            CREATE SCHEMA dump_proof;
            CREATE TABLE dump_proof.parent (a int);
            CREATE TABLE dump_proof.child () INHERITS (dump_proof.parent);
            CREATE TABLE dump_proof.measured (a int) PARTITION BY RANGE (a);
            CREATE TABLE dump_proof.measured_low PARTITION OF dump_proof.measured
                FOR VALUES FROM (0) TO (100);
            INSERT INTO dump_proof.parent VALUES (1);
            INSERT INTO dump_proof.child VALUES (2), (3);
            INSERT INTO dump_proof.measured VALUES (5), (6);
        """)
    try:
        summary = database.dump_database(database_settings, StagingArea.at(f"file://{tmp_path}"))
    finally:
        with database_settings.connect(autocommit=True) as connection:
            connection.execute("DROP SCHEMA dump_proof CASCADE")
    tables = {table["table"]: table for table in summary["tables"]
              if table["schema"] == "dump_proof"}
    assert (tables["parent"]["rows"], tables["parent"]["dump_rows"]) == (3, 1)
    assert (tables["child"]["rows"], tables["child"]["dump_rows"]) == (2, 2)
    assert tables["measured"]["rows"] == 2 and "dump_rows" not in tables["measured"]
    assert tables["measured_low"]["dump_rows"] == 2
