"""The outcome reaches Airflow's own screens: the XCom a run's last task pushes, the failure
callbacks' last log line, and the plugin's listener that turns the XCom into the DAG run's note
(here with stand-ins; tests/plugin/test_run_notes.py runs it in a real scheduler)."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import pytest

from supabase_backup.airflow import backup_run, dag_run
from tests.conftest import PROJECT_ROOT

if str(PROJECT_ROOT / "plugins") not in sys.path:
    sys.path.append(str(PROJECT_ROOT / "plugins"))


class FakeTaskInstance:
    def __init__(self, task_id="list_buckets", map_index=-1, rendered_map_index=None, fails=False):
        self.task_id, self.map_index, self.rendered_map_index = task_id, map_index, rendered_map_index
        self.fails, self.pushed = fails, {}

    def xcom_push(self, key, value):
        if self.fails:
            raise RuntimeError("the Execution API is down")
        self.pushed[key] = value


def test_the_pushed_outcome_is_scrubbed_short_and_never_fails_the_task():
    ti = FakeTaskInstance()
    dag_run.push_outcome(ti, "Failed: password hunter2 refused." + "x" * 2000, ["hunter2"])
    pushed = ti.pushed[dag_run.OUTCOME_XCOM_KEY]
    assert "hunter2" not in pushed and pushed.startswith("Failed: password *** refused.")
    assert len(pushed) == dag_run.NOTE_LIMIT
    dag_run.push_outcome(FakeTaskInstance(fails=True), "Success: verified.", [])  # no raise


def test_a_mapped_task_is_named_as_the_grid_names_it():
    assert dag_run.task_label(FakeTaskInstance("export_bucket", 2, "avatars")) == (
        "export_bucket [avatars]")
    assert dag_run.task_label(FakeTaskInstance("list_buckets")) == "list_buckets"


def test_the_failure_callback_ends_the_log_on_the_reason(monkeypatch, caplog):
    from supabase_backup.backup import outcome

    monkeypatch.setattr(backup_run, "connection_secrets", lambda: ["hunter2"])
    monkeypatch.setattr(backup_run, "database_settings", lambda *a: None)
    monkeypatch.setattr(outcome, "record_task_failure", lambda *a, **k: (_ for _ in ()).throw(
        OSError("the database is down")))
    context = {"ti": FakeTaskInstance("export_bucket", 0, "avatars"), "run_id": "r",
               "dag_run": SimpleNamespace(run_type="manual", conf={}), "exception":
               RuntimeError("GET /storage/v1/object/avatars/a.png answered HTTP 503, key hunter2")}
    with caplog.at_level(logging.INFO):
        backup_run.on_task_failure(context)
    # Even when the row cannot be written, the log's last line is the reason, without the secret.
    assert caplog.records[-1].getMessage() == (
        "Failed: export_bucket [avatars]: GET /storage/v1/object/avatars/a.png answered HTTP 503, "
        "key ***.")


def test_the_final_tasks_own_sentence_is_logged_as_it_is():
    from airflow.sdk.exceptions import AirflowFailException

    ti = FakeTaskInstance("record_history")
    sentence = "Failed: list_buckets: HTTP 503."
    assert dag_run.final_task_sentence({"ti": ti, "exception": AirflowFailException(sentence)}) \
        == sentence
    assert dag_run.final_task_sentence({"ti": ti, "exception": OSError("connection refused")}) \
        == "Failed: record_history: connection refused."


# --- the listener ----------------------------------------------------------------------------------

class FakeSession:
    def __init__(self, pushed=None, failed_task_ids=()):
        self.pushed, self.failed_task_ids = pushed, list(failed_task_ids)

    def scalars(self, statement):
        text = str(statement)
        rows = ([SimpleNamespace(value=self.pushed)] if self.pushed else []) if "xcom" in text \
            else self.failed_task_ids
        return SimpleNamespace(first=lambda: rows[0] if rows else None, unique=lambda: rows)


def a_run(dag_id="supabase_backup", state="success", note=None):
    return SimpleNamespace(dag_id=dag_id, run_id="manual__1", id=7, state=state, note=None,
                           dag_run_note=note)


@pytest.fixture
def listener(monkeypatch):
    import sqlalchemy.orm

    from supabase_backup_plugin import run_notes

    sessions = {}
    monkeypatch.setattr(sqlalchemy.orm, "object_session", lambda run: sessions.get(id(run)))
    monkeypatch.setattr("airflow.models.xcom.XComModel.deserialize_value",
                        staticmethod(lambda row: row.value))

    def end(run, session, msg="success"):
        sessions[id(run)] = session
        (run_notes.on_dag_run_failed if run.state == "failed" else run_notes.on_dag_run_success)(
            dag_run=run, msg=msg)
        return run.note
    return end


def test_the_pushed_outcome_becomes_the_note(listener):
    skipped = "Skipped: backups are disabled (system_settings_kv.backup_enabled = false)."
    assert listener(a_run(), FakeSession(pushed=skipped)) == skipped


def test_a_failed_run_without_an_outcome_names_its_failed_tasks(listener):
    note = listener(a_run(state="failed"), FakeSession(failed_task_ids=["list_buckets"]),
                    msg="task_failure")
    assert note == ("Failed: task(s) list_buckets failed; each failed task's log ends on its "
                    "reason.")


def test_other_dags_and_a_persons_note_are_left_alone(listener):
    assert listener(a_run(dag_id="someone_elses_dag"), FakeSession(pushed="Success: x.")) is None
    persons = SimpleNamespace(user_id="ops", content="restored by hand, see ticket 12")
    assert listener(a_run(note=persons), FakeSession(pushed="Success: x.")) is None


def test_a_run_marked_by_hand_says_so(listener):
    note = listener(a_run(state="failed"), FakeSession(pushed="Success: x."),
                    msg="Dag Run's state was manually set to `failed`.")
    assert note.startswith("Marked failed by hand in Airflow")


def test_the_listener_never_raises(listener, caplog):
    class Broken(FakeSession):
        def scalars(self, statement):
            raise RuntimeError("database is locked")

    with caplog.at_level(logging.ERROR):
        assert listener(a_run(), Broken()) is None
    assert "Could not write the outcome" in caplog.text
