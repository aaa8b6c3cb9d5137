"""The DAG imports cleanly, has tags, retries and timeouts, and parsing opens no connection."""

import socket

import pytest

from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def test_imports_without_errors(dag_bag):
    assert dag_bag.import_errors == {}
    assert set(dag_bag.dags) == {"supabase_backup"}


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
    assert [asset.name for asset in dag.get_task("verify_upload").outlets] == [
        "supabase_backup_archive"]


def test_parsing_opens_no_connection(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the DAG file opened a network connection while parsing")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    from airflow.dag_processing.dagbag import DagBag

    assert DagBag(dag_folder=str(PROJECT_ROOT / "dags")).import_errors == {}
