"""The DAG on a real Airflow (api-server, scheduler, dag-processor, LocalExecutor), started through
Airflow's REST API as a deployment would, each task in its own process."""

from __future__ import annotations

import pytest

from tests.airflow_services import AirflowServices
from tests.archive_reader import read_archive


@pytest.fixture(scope="module")
def airflow_services(small_sandbox, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    services = AirflowServices(home, {
        **small_sandbox.env,
        "AIRFLOW_VAR_SUPABASE_BACKUP_STAGING_ROOT": f"file://{home / 'staging'}",
        "SUPABASE_BACKUP_SCHEDULE": "none",
        "SUPABASE_BACKUP_RETRY_DELAY_SECONDS": "1",
    })
    services.start()
    try:
        yield services
    finally:
        services.stop()


def test_a_rest_triggered_run_backs_up_everything(small_sandbox, airflow_services, tmp_path):
    airflow_services.wait_for_dag("supabase_backup")
    run_id = airflow_services.trigger("supabase_backup", {"trigger": "api"})
    run = airflow_services.wait_for_run("supabase_backup", run_id)
    states = airflow_services.task_states("supabase_backup", run_id)
    assert run["state"] == "success", states
    assert all(state == "success" for state in states.values()), states
    assert len([key for key in states if key[0] == "export_bucket"]) >= 4
    # The grid names each mapped export after its bucket, not only by map index.
    exports = {item["rendered_map_index"] for item in
               airflow_services.task_instances("supabase_backup", run_id)
               if item["task_id"] == "export_bucket"}
    with small_sandbox.connect() as connection:
        buckets = {row[0] for row in connection.execute("SELECT id FROM storage.buckets")}
    assert exports == buckets

    row = small_sandbox.history_row(run_id)
    assert (row["status"], row["trigger"], row["triggered_by"]) == ("success", "api", "admin")
    assert row["progress"]["step"] == "verifying the uploaded archive"
    assert set(row["progress"]["buckets"]) == buckets
    local = small_sandbox.download_archive(row["s3_key"], tmp_path / "archive.zip")
    assert read_archive(local)["objects"] == small_sandbox.objects()
    assert not any((airflow_services.home / "staging").iterdir())
