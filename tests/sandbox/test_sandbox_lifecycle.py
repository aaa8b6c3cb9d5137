"""up/down/env on a separate state dir: idempotence, restart, extra data, --no-list-v2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import httpx
import pytest

import sandbox
from tests.sandbox_fixtures import new_state_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture()
def extra_inputs(tmp_path):
    objects = tmp_path / "objects"
    (objects / "imported" / "nested dir").mkdir(parents=True)
    (objects / "imported" / "hello.txt").write_bytes(b"hello from disk\n")
    (objects / "imported" / "nested dir" / "data.json").write_bytes(b'{"a": 1}')
    (objects / "documents").mkdir()
    (objects / "documents" / "from-disk.txt").write_bytes(b"added to an existing bucket")
    users = tmp_path / "users.json"
    users.write_text(json.dumps([
        {"email": "Imported.One@example.net", "user_metadata": {"full_name": "Imported One"}},
        {"email": "imported.two@example.net", "id": "11111111-2222-4333-8444-555555555555",
         "created_at": "2020-05-01T00:00:00Z", "phone": "15550001111"},
    ]))
    return objects, users


def test_cli_lifecycle(extra_inputs):
    objects, users = extra_inputs
    state = str(new_state_dir("life"))
    cli = [sys.executable, "-m", "sandbox"]
    try:
        out = subprocess.run(cli + ["up", "--state-dir", state, "--objects-dir", str(objects),
                                    "--users-file", str(users), "--no-list-v2"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert [ln.split("=", 1)[0] for ln in lines] == [
            "export AIRFLOW_CONN_SUPABASE_DB", "export AIRFLOW_CONN_SUPABASE_API", "export AIRFLOW_CONN_AWS_DEFAULT",
            "export AIRFLOW_VAR_SUPABASE_BACKUP_S3_BUCKET", "export SANDBOX_CONTROL_URL",
            "export AIRFLOW_CONN_SUPABASE_MANAGEMENT"]
        with open(os.path.join(state, "env.sh")) as fh:
            assert fh.read() == out.stdout
        s = sandbox.load_settings(state)
        api_conn = json.loads(s["env"]["AIRFLOW_CONN_SUPABASE_API"])
        assert api_conn == {"conn_type": "generic", "host": s["api_url"], "password": s["service_key"]}
        assert s["service_key"].startswith("sb_secret_")
        management_conn = json.loads(s["env"]["AIRFLOW_CONN_SUPABASE_MANAGEMENT"])
        assert management_conn == {"conn_type": "generic", "host": s["api_url"],
                                   "password": s["management_token"],
                                   "extra": {"project_ref": s["project_ref"]}}
        assert s["management_token"].startswith("sbp_") and len(s["project_ref"]) == 20
        headers = {"Authorization": f"Bearer {s['service_key']}"}

        # --no-list-v2 from the start; --objects-dir and --users-file loaded
        r = httpx.post(f"{s['api_url']}/storage/v1/object/list-v2/documents", json={}, headers=headers)
        assert r.status_code == 400 and r.json()["code"] == "FeatureNotEnabled"
        r = httpx.get(f"{s['api_url']}/storage/v1/object/imported/nested%20dir/data.json", headers=headers)
        assert r.status_code == 200 and r.content == b'{"a": 1}' and r.headers["content-type"] == "application/json"
        r = httpx.get(f"{s['api_url']}/storage/v1/object/documents/from-disk.txt", headers=headers)
        assert r.content == b"added to an existing bucket"
        r = httpx.get(f"{s['api_url']}/auth/v1/admin/users", params={"per_page": 1}, headers=headers)
        assert r.headers["X-Total-Count"] == "122"
        r = httpx.get(f"{s['api_url']}/auth/v1/admin/users/11111111-2222-4333-8444-555555555555", headers=headers)
        assert r.json()["email"] == "imported.two@example.net"

        # S3 bucket exists on moto
        import boto3

        s3 = boto3.client("s3", endpoint_url=s["s3_endpoint"], aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
        assert "supabase-backups" in [b["Name"] for b in s3.list_buckets()["Buckets"]]

        # idempotent: a second up re-prints the same settings
        again = sandbox.up(state)
        assert again["env"] == s["env"]

        # down keeps the data; up restarts on the same ports without reseeding
        sandbox.down(state)
        assert sandbox.status(state)["api"]["running"] is False
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{s['api_url']}/_sandbox/health", timeout=2)
        restarted = sandbox.up(state)
        assert restarted["env"] == s["env"]
        r = httpx.get(f"{s['api_url']}/auth/v1/admin/users", params={"per_page": 1}, headers=headers)
        assert r.headers["X-Total-Count"] == "122"
        # the fault switch survived the restart
        r = httpx.post(f"{s['api_url']}/storage/v1/object/list-v2/documents", json={}, headers=headers)
        assert r.json()["code"] == "FeatureNotEnabled"

        out = subprocess.run(cli + ["env", "--state-dir", state], cwd=ROOT, capture_output=True, text=True)
        assert out.stdout == sandbox.env_lines(s)
        st = json.loads(subprocess.run(cli + ["status", "--state-dir", state], cwd=ROOT, capture_output=True,
                                       text=True).stdout)
        assert st["postgres"]["running"] and st["api"]["running"] and st["s3"]["running"]
    finally:
        subprocess.run(cli + ["down", "--state-dir", state, "--purge"], cwd=ROOT, timeout=60)
        shutil.rmtree(state, ignore_errors=True)
    assert not os.path.exists(state)
