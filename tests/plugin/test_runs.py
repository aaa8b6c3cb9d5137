"""Backups started through the plugin and through Airflow's REST API on a real Airflow, followed
through the plugin, and their archives fetched through the plugin's download URLs."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from tests.plugin.conftest import DAG_ID


def download_url(plugin, history_id: int, user: str = "operator") -> dict:
    reply = plugin.call("POST", f"/api/v1/history/{history_id}/download-url", user=user)
    assert reply.status_code == 200, reply.text
    return reply.json()


def assert_the_url_serves_the_archive(minted: dict, row: dict) -> None:
    parts = urlsplit(minted["url"])
    assert unquote(parts.path).endswith(f"/{row['s3_bucket']}/{row['s3_key']}")
    assert parse_qs(parts.query)["X-Amz-Expires"] == ["900"]
    assert minted["expires_in"] == 900
    archive = httpx.get(minted["url"], timeout=60)
    assert archive.status_code == 200
    assert hashlib.sha256(archive.content).hexdigest() == row["sha256"]
    assert len(archive.content) == row["size_bytes"]


def test_a_run_started_through_the_plugin(plugin, small_sandbox):
    reply = plugin.call("POST", "/api/v1/runs", user="operator", json={})
    assert reply.status_code == 200, reply.text
    run_id = reply.json()["run_id"]

    again = plugin.call("POST", "/api/v1/runs", user="operator", json={})
    assert again.status_code == 409, again.text
    assert run_id in again.json()["detail"]

    seen = plugin.wait_for_run(run_id)
    final = seen[-1]
    assert final["state"] == "success", final
    # apply_retention is skipped while supabase_backup_retention is unset (every archive kept).
    assert {(task["task_id"], task["state"]) for task in final["airflow"]["tasks"]
            if task["state"] != "success"} <= {("apply_retention", "skipped")}, final
    assert final["airflow"]["triggering_user_name"] == "operator"
    row = final["history"]
    assert (row["status"], row["trigger"], row["triggered_by"]) == ("success", "api", "operator")
    # Airflow records the page's trigger as a REST API call; the conf names the page.
    assert (final["airflow"]["triggered_by"], final["airflow"]["started_by"]) == (
        "rest_api", "Backups page")
    assert row["started_by"] == "Backups page"
    # The Duration the page shows is the Airflow run's own.
    assert row["run_started_at"] and row["run_ended_at"]

    # Progress was read from the history row while the run went on: the buckets' totals add up.
    reported = [status["progress"] for status in seen if status["progress"]["buckets"]]
    assert reported, "no progress was reported while the run went on"
    last = reported[-1]
    assert last["total"]["objects_done"] == sum(
        counts["objects_done"] for counts in last["buckets"].values())
    truth = small_sandbox.objects()
    assert last["total"]["objects_done"] == len(truth) == row["storage_objects"]
    assert last["total"]["bytes_done"] == sum(size for size, _ in truth.values())

    minted = download_url(plugin, row["id"])
    assert_the_url_serves_the_archive(minted, row)
    with small_sandbox.connect() as connection:
        recorded = connection.execute(
            "SELECT history_id, s3_key, requested_by, expires_at - requested_at "
            "FROM public.backup_downloads WHERE history_id = %s", (row["id"],)).fetchall()
    assert [(history_id, key, user, interval.total_seconds())
            for history_id, key, user, interval in recorded] == [
        (row["id"], row["s3_key"], "operator", 900.0)]


def test_a_run_started_through_airflows_rest_api(plugin, plugin_airflow):
    reply = plugin_airflow.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", user="operator",
                               json={"logical_date": None, "conf": {}})
    assert reply.status_code == 200, reply.text
    run_id = reply.json()["dag_run_id"]
    final = plugin.wait_for_run(run_id)[-1]
    assert final["state"] == "success", final
    row = final["history"]
    # The UI's Trigger button calls this same API: a run without {"trigger": "api"} is manual.
    assert (row["status"], row["trigger"], row["triggered_by"]) == ("success", "manual", "operator")
    # Who started it, the way Airflow recorded it: a call without a Referer is the REST API.
    assert row["started_by"] == "REST API"

    page = plugin.call("GET", "/api/v1/history", user="viewer",
                       params={"status": "success", "limit": 1}).json()
    assert [item["run_id"] for item in page["items"]] == [run_id]
    assert page["items"][0]["started_by"] == "REST API"
    assert page["total"] >= 1 and page["limit"] == 1
    assert_the_url_serves_the_archive(download_url(plugin, row["id"], user="admin"), row)
    # The route takes only a history id: a bucket or key sent along changes nothing.
    reply = plugin.call("POST", f"/api/v1/history/{row['id']}/download-url", user="operator",
                        json={"s3_bucket": "elsewhere", "s3_key": "other/archive.zip"})
    assert_the_url_serves_the_archive(reply.json(), row)


def test_no_run_is_started_while_the_dag_is_paused(plugin, plugin_airflow):
    def pause(paused: bool) -> None:
        plugin_airflow.api("PATCH", f"/api/v2/dags/{DAG_ID}", params={"update_mask": "is_paused"},
                           json={"is_paused": paused}).raise_for_status()

    pause(True)
    try:
        reply = plugin.call("POST", "/api/v1/runs", user="operator", json={})
        assert reply.status_code == 409
        assert "paused" in reply.json()["detail"]
    finally:
        pause(False)


def test_a_download_url_only_for_a_successful_rows_own_archive(plugin, small_sandbox):
    assert plugin.call("POST", "/api/v1/history/987654321/download-url").status_code == 404
    assert plugin.call("POST", "/api/v1/history/not-a-number/download-url").status_code == 422
    with small_sandbox.connect() as connection:
        failed_id = connection.execute(
            "INSERT INTO public.backup_history (run_id, status, trigger, error, s3_bucket, s3_key) "
            "VALUES ('refused-download', 'failed', 'manual', 'dump_database: failed', %s, "
            "'backups/not-verified.zip') RETURNING id", (small_sandbox.settings["s3_bucket"],)
        ).fetchone()[0]
    reply = plugin.call("POST", f"/api/v1/history/{failed_id}/download-url")
    assert reply.status_code == 409
    assert "failed" in reply.json()["detail"]
    with small_sandbox.connect() as connection:
        assert connection.execute("SELECT count(*) FROM public.backup_downloads WHERE "
                                  "history_id = %s", (failed_id,)).fetchone()[0] == 0


def test_switched_off_the_next_run_is_skipped(plugin, small_sandbox):
    assert plugin.call("PUT", "/api/v1/settings", user="viewer",
                       json={"backup_enabled": False}).status_code == 403
    reply = plugin.call("PUT", "/api/v1/settings", user="operator", json={"backup_enabled": False})
    assert reply.status_code == 200 and reply.json() == {"backup_enabled": False}
    try:
        assert plugin.call("GET", "/api/v1/settings", user="viewer").json() == {
            "backup_enabled": False}
        with small_sandbox.connect() as connection:
            assert connection.execute(
                "SELECT value, updated_by FROM public.system_settings_kv "
                "WHERE key = 'backup_enabled'").fetchone() == (False, "operator")
        run_id = plugin.call("POST", "/api/v1/runs", user="operator", json={}).json()["run_id"]
        final = plugin.wait_for_run(run_id)[-1]
        assert final["history"]["status"] == "skipped", final
        assert final["history"]["triggered_by"] == "operator"
    finally:
        plugin.call("PUT", "/api/v1/settings", user="admin", json={"backup_enabled": True})


def test_reading_never_writes_and_the_next_run_settles_a_row_whose_run_ended_unrecorded(
        plugin, small_sandbox):
    run_id = "manual__killed-worker"
    with small_sandbox.connect() as connection:
        connection.execute("INSERT INTO public.backup_history (run_id, status, trigger) "
                           "VALUES (%s, 'running', 'manual')", (run_id,))

    def table() -> list:
        with small_sandbox.connect() as connection:
            return connection.execute("SELECT row_to_json(h)::text FROM public.backup_history h "
                                      "ORDER BY id").fetchall()

    before = table()
    items = plugin.call("GET", "/api/v1/history", user="viewer",
                        params={"limit": 500}).json()["items"]
    assert [item["status"] for item in items if item["run_id"] == run_id] == ["running"]
    run = plugin.call("GET", f"/api/v1/runs/{run_id}", user="viewer").json()
    assert (run["state"], run["airflow"], run["history"]["status"]) == (None, None, "running")
    assert plugin.call("GET", "/api/v1/settings", user="viewer").status_code == 200
    assert table() == before  # not a row, not an updated_at changed

    # The next run's first task settles it.
    started = plugin.call("POST", "/api/v1/runs", user="operator",
                          json={"include_storage": False}).json()["run_id"]
    assert plugin.wait_for_run(started)[-1]["state"] == "success"
    settled = small_sandbox.history_row(run_id)
    assert (settled["status"], settled["error"]) == (
        "failed", "the run ended without recording its outcome; see Airflow run manual__killed-worker")


def test_errors_are_json_without_a_trace(plugin):
    reply = plugin.call("POST", "/api/v1/runs", user="operator", json={"unknown": 1})
    assert reply.status_code == 422 and "detail" in reply.json()
    reply = plugin.call("POST", "/api/v1/runs", user="operator",
                        json={"include_database": False, "include_auth": False,
                              "include_storage": False})
    assert reply.status_code == 422 and "nothing to back up" in reply.text
    reply = plugin.call("GET", "/api/v1/runs/no-such-run", user="viewer")
    assert reply.status_code == 404 and reply.json() == {
        "detail": "no run no-such-run of the supabase_backup DAG"}
    reply = plugin.call("GET", "/api/v1/history", user="viewer", params={"status": "bogus"})
    assert reply.status_code == 422


def test_a_run_started_with_the_official_airflow_client(plugin, plugin_airflow):
    from airflow_client.client import ApiClient, Configuration
    from airflow_client.client.api.dag_run_api import DagRunApi
    from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody

    configuration = Configuration(host=plugin_airflow.url,
                                  access_token=plugin_airflow.token("operator"))
    with ApiClient(configuration) as api_client:
        run = DagRunApi(api_client).trigger_dag_run(DAG_ID, TriggerDAGRunPostBody(
            logical_date=None, conf={"trigger": "api", "include_storage": False}))
    final = plugin.wait_for_run(run.dag_run_id)[-1]
    assert final["state"] == "success", final
    row = final["history"]
    assert (row["status"], row["trigger"], row["triggered_by"]) == ("success", "api", "operator")
    assert row["started_by"] == "REST API"
    assert row["storage_objects"] in (None, 0)
