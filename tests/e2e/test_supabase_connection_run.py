"""The real DAG with one ``supabase`` connection instead of ``supabase_db`` and ``supabase_api``:
the Variable ``supabase_backup_connection_id`` names it, and the run backs up the database, the
users and every object through it and records its history row in that project's database."""

from __future__ import annotations

import json

from tests.archive_reader import read_archive, read_member
from tests.e2e.conftest import run_dag

OLD_CONNECTIONS = ("AIRFLOW_CONN_SUPABASE_DB", "AIRFLOW_CONN_SUPABASE_API")


def test_a_run_with_only_a_supabase_connection(small_sandbox, backup_runner, monkeypatch,
                                               tmp_path):
    sandbox = small_sandbox
    for name in OLD_CONNECTIONS:
        monkeypatch.delenv(name, raising=False)
    project = {
        "conn_type": "supabase",
        "host": sandbox.settings["api_url"],
        "password": sandbox.settings["service_key"],
        "extra": {"database_url": sandbox.settings["db_url"]},
    }
    environment = {name: value for name, value in sandbox.env.items()
                   if name not in OLD_CONNECTIONS}
    environment.update({
        "AIRFLOW_CONN_PROJECT_A": json.dumps(project),
        "AIRFLOW_VAR_SUPABASE_BACKUP_CONNECTION_ID": "project_a",
        "AIRFLOW_VAR_SUPABASE_BACKUP_STAGING_ROOT": f"file://{backup_runner.staging_root}",
    })

    dag_run = run_dag("supabase_backup", environment)

    row = sandbox.history_row(dag_run.run_id)
    assert dag_run.state == "success" and row["status"] == "success", row
    local = sandbox.download_archive(row["s3_key"], tmp_path / "archive.zip")
    archive = read_archive(local)
    assert "db/backup.sql" in archive["members"]
    assert set(archive["objects"]) == set(sandbox.objects())
    users = json.loads(read_member(local, "auth/users.json"))
    assert {user["id"] for user in users} == sandbox.user_ids()
