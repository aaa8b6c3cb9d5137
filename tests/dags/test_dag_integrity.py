"""The DAGs import cleanly and each has its tags, schedule, retries and timeouts; parsing reads no
Variable and opens no connection."""

import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def test_imports_without_errors(dag_bag):
    assert dag_bag.import_errors == {}
    assert set(dag_bag.dags) == {"supabase_backup", "supabase_backup_restore_drill",
                                 "supabase_backup_staleness"}


def test_shape(dag_bag):
    dag = dag_bag.dags["supabase_backup"]
    assert {"backup", "supabase"} <= set(dag.tags)
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.doc_md
    assert set(dag.params) == {"force", "buckets", "include_database", "include_auth",
                               "include_storage"}
    assert dag.params["force"] is False
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id
        assert task.execution_timeout is not None, task.task_id
    assert dag.get_task("cleanup_staging").is_teardown
    assert dag.get_task("prepare_staging").is_setup
    assert [asset.name for asset in dag.get_task("verify_upload").outlets] == [
        "supabase_backup_archive"]


def test_the_dag_params_and_the_plugins_trigger_request_are_one_form(dag_bag):
    """Both come from supabase_backup.trigger_form: the same names, types, defaults, titles and
    descriptions, so a field added to the form reaches the Trigger page and the API together."""
    if str(PROJECT_ROOT / "plugins") not in sys.path:
        sys.path.append(str(PROJECT_ROOT / "plugins"))
    from supabase_backup_plugin.schemas import TriggerRequest

    params = dag_bag.dags["supabase_backup"].params
    request = TriggerRequest.model_json_schema()["properties"]
    assert list(params) == list(request)
    for name, field in request.items():
        param = params.get_param(name)
        options = field.get("anyOf", [field])
        declared = param.schema["type"]
        assert sorted(option["type"] for option in options) == sorted(
            declared if isinstance(declared, list) else [declared]), name
        assert [option.get("items") for option in options if option["type"] == "array"] == (
            [param.schema["items"]] if "items" in param.schema else []), name
        assert (param.value, param.schema["title"], param.description) == (
            field["default"], field["title"], field["description"]), name


def test_drill_shape(dag_bag):
    dag = dag_bag.dags["supabase_backup_restore_drill"]
    assert {"backup", "restore-drill"} <= set(dag.tags)
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.doc_md
    assert set(dag.params) == {"backup_run_id"} and dag.params["backup_run_id"] is None
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id
        assert task.execution_timeout is not None, task.task_id
    assert dag.get_task("create_scratch_database").is_setup
    assert dag.get_task("drop_scratch_database").is_teardown
    assert dag.get_task("record_drill").trigger_rule == "all_done"


def test_staleness_shape(dag_bag):
    dag = dag_bag.dags["supabase_backup_staleness"]
    assert {"backup", "supabase", "alerts"} <= set(dag.tags)
    # Hourly, and never a backlog of checks after a pause: only the latest answer matters.
    assert dag.schedule == "@hourly"
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.doc_md
    assert [task.task_id for task in dag.tasks] == ["check_backup_age"]
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id
        assert task.execution_timeout is not None, task.task_id


def test_staleness_shape_alerts_when_the_check_cannot_run(dag_bag):
    from supabase_backup.airflow import staleness

    dag = dag_bag.dags["supabase_backup_staleness"]
    assert {"backup", "alerts"} <= set(dag.tags) and dag.doc_md and dag.max_active_runs == 1
    check = dag.get_task("check_backup_age")
    assert check.retries >= 2 and check.execution_timeout is not None
    callbacks = check.on_failure_callback
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    assert staleness.alert_check_failure in callbacks


def test_the_dag_file_does_not_shadow_the_package():
    """With dags/ first on sys.path (as a scheduler may put it) the package still imports: the
    DAG file's module name differs from the package's."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(PROJECT_ROOT / "dags"), str(PROJECT_ROOT / "include")])}
    code = ("import supabase_backup_dag, supabase_backup.backup.tasks; "
            "assert supabase_backup_dag.ARCHIVE_ASSET.name == 'supabase_backup_archive'; "
            "print(supabase_backup.backup.tasks.__file__)")
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True,
                            text=True, cwd=str(PROJECT_ROOT / "dags"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("include/supabase_backup/backup/tasks.py")


def test_parsing_reads_no_variable_and_opens_no_connection(monkeypatch):
    """As Airflow's own DAG tests do: Variable and connection lookups fail loudly while parsing."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Variable

    def refuse(what):
        def refused(*args, **kwargs):
            raise AssertionError(f"the DAG file {what} while parsing")
        return refused

    monkeypatch.setattr(socket.socket, "connect", refuse("opened a network connection"))
    monkeypatch.setattr(socket, "create_connection", refuse("opened a network connection"))
    monkeypatch.setattr(Variable, "get", refuse("read a Variable"))
    monkeypatch.setattr(BaseHook, "get_connection", refuse("looked up a connection"))
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {} and "supabase_backup" in bag.dags
