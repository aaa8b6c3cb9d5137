"""tools/up.py's decisions that need no Airflow: which settings become Variables, and what `make
down` says of a sandbox it does not stop."""

from tools.up import sandbox_left_running, split_variables


def test_variables_leave_the_environment_for_the_metadata_database():
    environment, variables = split_variables({
        "AIRFLOW_VAR_SUPABASE_BACKUP_S3_BUCKET": "backups", "AIRFLOW_CONN_SUPABASE_DB": "x",
        "PATH": "/bin"})
    assert variables == {"supabase_backup_s3_bucket": "backups"}
    assert environment == {"AIRFLOW_CONN_SUPABASE_DB": "x", "PATH": "/bin"}


def test_down_names_a_sandbox_it_leaves_running_and_how_to_stop_it():
    note = sandbox_left_running({"started_sandbox": False, "sandbox_dir": "/x/.sandbox"}, True)
    assert "still running" in note and "make sandbox-down SANDBOX_DIR=/x/.sandbox" in note
    assert sandbox_left_running({"started_sandbox": True, "sandbox_dir": "/x"}, True) is None
    assert sandbox_left_running({"started_sandbox": False, "sandbox_dir": "/x"}, False) is None
