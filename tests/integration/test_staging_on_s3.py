"""Object-store staging in the forms the README gives: ``s3://bucket/staging`` reaches S3 through
the run's AWS connection, ``s3://conn_id@bucket/staging`` through the one it names (here the
sandbox's moto server behind ``aws_default``)."""

import uuid

import pytest

from supabase_backup.airflow.connections import staging_area
from supabase_backup.config import BackupSettings, RunPlan


@pytest.fixture
def aws_default(small_sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", small_sandbox.env["AIRFLOW_CONN_AWS_DEFAULT"])
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)  # only the connection may lead to the store
    return small_sandbox


@pytest.mark.parametrize("form", ["s3://{bucket}/{folder}", "s3://aws_default@{bucket}/{folder}"])
def test_staging_on_s3_uses_the_airflow_connection(aws_default, form):
    bucket, folder = aws_default.settings["s3_bucket"], f"staging-{uuid.uuid4().hex[:8]}"
    settings = BackupSettings(s3_bucket=bucket, staging_root=form.format(bucket=bucket,
                                                                         folder=folder))
    plan = RunPlan.create(settings, run_id="manual__staging", trigger="manual", started_at="t",
                          params={})
    staging = staging_area(plan)
    staging.auth_users.parent.mkdir(parents=True, exist_ok=True)
    staging.auth_users.write_bytes(b"[]")
    keys = [key for key in aws_default.archive_keys() if key.startswith(f"{folder}/")]
    assert keys and keys[0].endswith("/auth/users.json")
    assert staging.auth_users.read_bytes() == b"[]"
    staging.remove()
    assert not [key for key in aws_default.archive_keys() if key.startswith(f"{folder}/")]
