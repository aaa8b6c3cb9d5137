"""Airflow's own screens tell a backup's outcome: the plugin's listener, in the real scheduler,
writes each run's outcome as the DAG run's note (Airflow's run view shows it first), and a failed
task's log ends on the one-sentence reason rather than on traceback frames.

Runs on the plugin tests' Airflow. Screenshots of Airflow's run view go to
``.artifacts/screenshots/``; with ``UPDATE_SCREENSHOTS=1`` also to ``docs/screenshots/``.
"""

from __future__ import annotations

import json
import os
import shutil
from urllib.parse import quote

from tests.plugin.test_page import COMMITTED, SCREENSHOTS, browser  # noqa: F401 - a fixture

DAG_ID = "supabase_backup"
SKIPPED_NOTE = ("Skipped: backups are disabled (system_settings_kv.backup_enabled = false); "
                "trigger with force=true to back up anyway.")


def note_of(services, run_id: str) -> str | None:
    reply = services.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id)}")
    reply.raise_for_status()
    return reply.json()["note"]


def last_log_line(services, run_id: str, task_id: str) -> str:
    """The last message of the task's final try, as its log file under AIRFLOW_HOME/logs holds it
    (one JSON object per line)."""
    folder = services.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
    attempts = sorted(folder.glob("attempt=*.log"), key=lambda path: int(path.stem.split("=")[1]))
    assert attempts, f"no log file in {folder}"
    events = [json.loads(line) for line in attempts[-1].read_text().splitlines() if line.strip()]
    return [event["event"] for event in events
            if not str(event.get("event", "")).startswith("::")][-1]


def screenshot(browser, services, path: str, shown: str, name: str, *,  # noqa: F811
               commit: bool = True) -> None:
    """A page of Airflow's own UI, logged in as a viewer, once ``shown`` is on it."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script("window.localStorage.setItem('theme', 'light');")
    context.add_cookies([{"name": "_token", "value": services.token("viewer"), "url": services.url}])
    page = context.new_page()
    try:
        page.goto(f"{services.url}{path}")
        page.get_by_text(shown, exact=False).first.wait_for(timeout=60_000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        saved = SCREENSHOTS / name
        page.screenshot(path=str(saved), full_page=True)
        if commit and os.environ.get("UPDATE_SCREENSHOTS") == "1":
            COMMITTED.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(saved, COMMITTED / name)
    finally:
        context.close()


def opening_words(note: str) -> str:
    """The note is rendered as markdown: match its opening words, not its punctuation."""
    return note.split(";")[0].split(" (")[0]


def test_a_switched_off_run_says_skipped_and_why(plugin, plugin_airflow, browser):  # noqa: F811
    assert plugin.call("PUT", "/api/v1/settings", user="operator",
                       json={"backup_enabled": False}).status_code == 200
    try:
        run_id = plugin.call("POST", "/api/v1/runs", user="operator", json={}).json()["run_id"]
        final = plugin.wait_for_run(run_id)[-1]
    finally:
        plugin.call("PUT", "/api/v1/settings", user="admin", json={"backup_enabled": True})
    assert (final["state"], final["history"]["status"]) == ("success", "skipped"), final
    # Before: a green "Success" and nothing to say why.
    assert note_of(plugin_airflow, run_id) == SKIPPED_NOTE
    screenshot(browser, plugin_airflow, f"/dags/{DAG_ID}/runs/{quote(run_id)}",
               opening_words(SKIPPED_NOTE), "airflow-run-skipped.png")


def test_a_failed_run_names_its_cause_in_the_note_and_the_log_ends_on_it(
        plugin, plugin_airflow, small_sandbox, browser):  # noqa: F811
    small_sandbox.set_faults(storage_down=True)
    try:
        run_id = plugin.call("POST", "/api/v1/runs", user="operator",
                             json={"include_auth": False}).json()["run_id"]
        final = plugin.wait_for_run(run_id)[-1]
    finally:
        small_sandbox.set_faults(storage_down=False)
    assert final["state"] == "failed", final
    reason = small_sandbox.history_row(run_id)["error"]
    assert reason.startswith("list_buckets: ") and "503" in reason, reason
    note = note_of(plugin_airflow, run_id)
    assert note == f"Failed: {reason.rstrip('.')}.", note
    # The failing task's log and the run's last task's log both end on that sentence.
    assert last_log_line(plugin_airflow, run_id, "list_buckets") == note
    assert last_log_line(plugin_airflow, run_id, "record_history") == note
    assert small_sandbox.settings["service_key"] not in note
    screenshot(browser, plugin_airflow, f"/dags/{DAG_ID}/runs/{quote(run_id)}",
               opening_words(note), "airflow-run-failed.png")
    # Airflow's log view of the failed task ends on the reason, outside its collapsed groups.
    screenshot(browser, plugin_airflow,
               f"/dags/{DAG_ID}/runs/{quote(run_id)}/tasks/list_buckets",
               opening_words(note), "airflow-task-log-failed.png")
