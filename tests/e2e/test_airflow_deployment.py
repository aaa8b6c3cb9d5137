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
    # apply_retention is skipped while supabase_backup_retention is unset (every archive kept).
    assert all(state == "success" or (key[0], state) == ("apply_retention", "skipped")
               for key, state in states.items()), states
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


def processes_talking_to(port: int) -> set[int]:
    """Pids with an open connection to 127.0.0.1:port, other than this test process."""
    import os

    import psutil

    return {connection.pid for connection in psutil.net_connections(kind="tcp")
            if connection.raddr and connection.raddr.port == port and connection.pid
            and connection.pid != os.getpid()}


def test_a_task_killed_mid_export_is_retried_and_the_archive_is_exact(
        small_sandbox, airflow_services, tmp_path):
    """kill -9 of the task process while it downloads: the retry starts the bucket over."""
    import os
    import signal
    import time
    from urllib.parse import urlsplit

    sandbox = small_sandbox
    api_port = urlsplit(sandbox.settings["api_url"]).port
    sandbox.set_faults(hold_downloads_after=5)
    try:
        run_id = airflow_services.trigger("supabase_backup", {"include_database": False})
        deadline = time.monotonic() + 300
        while not sandbox.held("download"):
            assert time.monotonic() < deadline, "the export never reached the download hold"
            time.sleep(0.05)
        victims = processes_talking_to(api_port)
        assert victims, "no task process holds a connection to the Storage API"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
    finally:
        sandbox.set_faults(hold_downloads_after=0)
    run = airflow_services.wait_for_run("supabase_backup", run_id)
    instances = airflow_services.task_instances("supabase_backup", run_id)
    assert run["state"] == "success", [(i["task_id"], i["state"]) for i in instances]
    assert max(i["try_number"] for i in instances if i["task_id"] == "export_bucket") >= 2
    row = small_sandbox.history_row(run_id)
    assert row["status"] == "success"
    local = small_sandbox.download_archive(row["s3_key"], tmp_path / "after-kill.zip")
    assert read_archive(local)["objects"] == small_sandbox.objects()


def test_clearing_a_failed_run_gives_a_truthful_row(small_sandbox, airflow_services, tmp_path):
    """Storage down: the run fails at list_buckets. Clearing only the failed tasks re-runs them,
    but the failed run's cleanup removed the exports that had succeeded: the row says so and what
    to do. Clearing with the upstream tasks then gives an exact archive under the same run id."""
    sandbox = small_sandbox
    sandbox.set_faults(storage_down=True)
    try:
        run_id = airflow_services.trigger("supabase_backup", {"include_auth": False})
        assert airflow_services.wait_for_run("supabase_backup", run_id)["state"] == "failed"
    finally:
        sandbox.clear_faults()
    row = sandbox.history_row(run_id)
    assert row["status"] == "failed" and "list_buckets" in row["error"]

    def clear(**options):
        airflow_services.api("POST", "/api/v2/dags/supabase_backup/clearTaskInstances", json={
            "dag_run_id": run_id, "dry_run": False, "reset_dag_runs": True, **options,
        }).raise_for_status()
        return airflow_services.wait_for_run("supabase_backup", run_id)

    clear(only_failed=True)
    row = sandbox.history_row(run_id)
    assert row["status"] == "failed" and "Clear, with Upstream" in row["error"], row["error"]
    assert clear(only_failed=False)["state"] == "success"
    row = sandbox.history_row(run_id)
    assert (row["status"], row["error"]) == ("success", None)
    local = sandbox.download_archive(row["s3_key"], tmp_path / "cleared.zip")
    assert read_archive(local)["objects"] == sandbox.objects()


def test_no_secret_in_the_task_log_files(small_sandbox, airflow_services):
    """The scheduler's task logs, as a deployment keeps them, hold neither the database password
    nor the service key (canaries: the sandbox's real secrets)."""
    secrets = [small_sandbox.settings["pg_password"], small_sandbox.settings["service_key"]]
    log_files = [path for path in (airflow_services.home / "logs").rglob("*") if path.is_file()]
    assert len(log_files) >= 10  # the runs above wrote their task logs here
    for path in log_files:
        text = path.read_text(errors="replace")
        assert not any(secret in text for secret in secrets), path
