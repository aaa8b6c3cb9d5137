"""The real DAG against the sandbox, checked from the outside: S3, the zip (read by the tests' own
reader), the sandbox's own database and blob files, a psql restore, the history table."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.archive_reader import read_archive, read_member
from tests.e2e.conftest import outcome_of

SKIP_TABLES = {("public", "backup_history")}  # written to by the run itself


def table_row_counts(connection) -> dict:
    tables = connection.execute(
        "SELECT schemaname, tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
    ).fetchall()
    return {
        (schema, table): connection.execute(
            f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
        for schema, table in tables if (schema, table) not in SKIP_TABLES
    }


def restore_into_fresh_database(sandbox, dump_path: Path) -> str:
    name = f"restored_{uuid.uuid4().hex[:8]}"
    with sandbox.connect() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        ["psql", "--quiet", "-v", "ON_ERROR_STOP=1", "-f", str(dump_path)],
        env=sandbox.libpq_environment(name), check=True, capture_output=True,
    )
    return name


def successful_archive(sandbox, dag_run, tmp_path) -> tuple[dict, Path]:
    row = sandbox.history_row(dag_run.run_id)
    assert row is not None, "no backup_history row"
    assert row["status"] == "success", row
    assert dag_run.state == "success"
    local = sandbox.download_archive(row["s3_key"], tmp_path / "archive.zip")
    return row, local


def test_complete_backup_holds_everything_and_restores(small_sandbox, backup_runner, tmp_path,
                                                       capfd, caplog):
    sandbox = small_sandbox
    objects_before = sandbox.objects()
    users_before = sandbox.user_ids()

    dag_run = backup_runner.run(sandbox, {})
    row, local = successful_archive(sandbox, dag_run, tmp_path)

    # Another run in the same minute takes the next free name (…-UTC-2.zip); none is overwritten.
    assert re.fullmatch(r"supabase-backups/backup-\d{4}(-\d\d){4}-UTC(-\d+)?\.zip", row["s3_key"])
    assert row["trigger"] == "manual" and row["error"] is None
    head = sandbox.s3().head_object(Bucket=row["s3_bucket"], Key=row["s3_key"])
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentLength"] == row["size_bytes"] == local.stat().st_size
    # What the run's note in Airflow says (the plugin's listener writes it from this XCom).
    assert outcome_of(dag_run).startswith(
        f"Success: verified s3://{row['s3_bucket']}/{row['s3_key']}, {row['auth_users']} users, "
        f"{row['storage_objects']} objects, ")

    contents = read_archive(local)
    manifest = contents["manifest"]
    assert manifest["format"] == "supabase-backup" and manifest["format_version"] == 2
    assert manifest["run"]["run_id"] == dag_run.run_id
    # Every member is listed with its true size and sha256, and nothing else is in the zip.
    listed = {member["path"]: (member["size"], member["sha256"]) for member in manifest["members"]}
    assert listed == {name: value for name, value in contents["members"].items()
                      if name != "manifest.json"}
    # Every object of every bucket, with the right bytes; no extra object.
    assert contents["objects"] == objects_before
    assert row["storage_objects"] == len(objects_before)
    assert row["storage_bytes"] == sum(size for size, _ in objects_before.values())
    # Bucket settings travel with the archive, so a restore can recreate the buckets.
    with sandbox.connect() as connection:
        public = dict(connection.execute("SELECT id, public FROM storage.buckets").fetchall())
    settings = {bucket["bucket"]: bucket["settings"] for bucket in manifest["storage"]["buckets"]}
    assert {bucket: value["public"] for bucket, value in settings.items()} == public
    # Every user.
    users = json.loads(read_member(local, "auth/users.json"))
    assert {user["id"] for user in users} == users_before
    assert len(users) == len(users_before) == row["auth_users"]
    assert not any("encrypted_password" in user for user in users)
    assert "db/backup.sql" in manifest["auth"]["password_hashes"]
    # The dump restores with psql into a fresh database, with equal row counts everywhere.
    dump = tmp_path / "backup.sql"
    dump.write_bytes(read_member(local, "db/backup.sql"))
    restored = restore_into_fresh_database(sandbox, dump)
    with sandbox.connect() as source, sandbox.connect(restored) as target:
        source_counts, target_counts = table_row_counts(source), table_row_counts(target)
        large_objects = target.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
    assert source_counts == target_counts
    assert ("auth", "users") in target_counts and ("storage", "objects") in target_counts
    assert large_objects >= 1
    # Every object's metadata is the stored one, never the download's headers: the server serves
    # the stored text/html of public-assets/index.html as text/plain.
    with sandbox.connect() as connection:
        stored = {(bucket, key): (metadata.get("mimetype"), metadata.get("cacheControl"))
                  for bucket, key, metadata in connection.execute(
                      "SELECT bucket_id, name, metadata FROM storage.objects")}
    recorded = {(member["object"]["bucket"], member["object"]["key"]):
                (member["object"]["content_type"], member["object"]["cache_control"])
                for member in manifest["members"] if "object" in member}
    assert recorded == stored
    assert recorded[("public-assets", "index.html")][0] == "text/html"
    # No secret reached the history row, the manifest or the logs.
    secrets = [sandbox.settings["pg_password"], sandbox.settings["service_key"]]
    captured = capfd.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert "pg_dump finished" in logs  # the task logs were captured
    text = json.dumps(row) + read_member(local, "manifest.json").decode() + logs
    assert not any(secret in text for secret in secrets)
    # Staging was cleaned up.
    assert not any(backup_runner.staging_root.iterdir())


def test_disabled_setting_records_skipped_and_writes_no_archive(small_sandbox, backup_runner):
    sandbox = small_sandbox
    sandbox.set_backup_enabled(False)
    try:
        keys_before = sandbox.archive_keys()
        dag_run = backup_runner.run(sandbox, {})
        row = sandbox.history_row(dag_run.run_id)
        assert row["status"] == "skipped"
        assert "backup_enabled" in row["error"] and "force" in row["error"]
        assert sandbox.archive_keys() == keys_before
        assert dag_run.state == "success"
        assert outcome_of(dag_run) == f"Skipped: {row['error']}."
    finally:
        sandbox.set_backup_enabled(True)


def test_force_backs_up_although_disabled(small_sandbox, backup_runner, tmp_path):
    sandbox = small_sandbox
    sandbox.set_backup_enabled(False)
    try:
        dag_run = backup_runner.run(sandbox, {"force": True})
        row, local = successful_archive(sandbox, dag_run, tmp_path)
        assert row["storage_objects"] == len(sandbox.objects())
    finally:
        sandbox.set_backup_enabled(True)


def when_held(sandbox, point: str, action, timeout: float = 300) -> threading.Thread:
    """Run ``action`` once a request of the running backup waits at the sandbox's ``point`` hold
    (see sandbox/faults.py); ``action`` must release the hold. Deterministic: the backup cannot
    pass the hold before the action ran."""
    done = threading.Event()

    def wait_then_act():
        deadline = time.monotonic() + timeout  # only bounds a broken run; never a timing check
        while time.monotonic() < deadline:
            if sandbox.held(point):
                action()
                done.set()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.done = done
    thread.start()
    return thread


def snapshot_taken(staging_root: Path) -> bool:
    """The run's inventory file exists: the snapshot is taken."""
    return bool(list(staging_root.glob("*/inventory/storage_objects.jsonl")))


def test_storage_dying_halfway_fails_with_a_reason_and_no_success(small_sandbox, backup_runner):
    sandbox = small_sandbox
    keys_before = sandbox.archive_keys()
    # Ten objects download, the eleventh waits at the hold; storage then dies and the hold lifts.
    sandbox.set_faults(hold_downloads_after=10)
    thread = when_held(sandbox, "download",
                       lambda: sandbox.set_faults(storage_down=True, hold_downloads_after=0))
    try:
        dag_run = backup_runner.run(sandbox, {"trigger": "api"})
    finally:
        thread.join(timeout=5)
        sandbox.clear_faults()
    assert thread.done.is_set()
    row = sandbox.history_row(dag_run.run_id)
    assert dag_run.state == "failed"
    assert (row["status"], row["trigger"]) == ("failed", "api")
    assert "export_bucket" in row["error"] and "503" in row["error"], row["error"]
    assert row["s3_key"] is None and row["finished_at"] is not None
    assert sandbox.archive_keys() == keys_before
    assert sandbox.settings["service_key"] not in row["error"]
    assert not any(backup_runner.staging_root.iterdir()), "staging left behind after a failure"


def test_an_unreachable_storage_api_fails_before_any_export(small_sandbox, backup_runner):
    sandbox = small_sandbox
    sandbox.set_faults(storage_down=True)
    try:
        dag_run = backup_runner.run(sandbox, {})
    finally:
        sandbox.clear_faults()
    row = sandbox.history_row(dag_run.run_id)
    assert dag_run.state == "failed" and row["status"] == "failed"
    assert "list_buckets" in row["error"] and "503" in row["error"], row["error"]
    assert outcome_of(dag_run) == f"Failed: {row['error'].rstrip('.')}."


def test_flaky_storage_still_gives_an_exact_backup(small_sandbox, backup_runner, tmp_path):
    """5xx answers and bodies cut off halfway, on one request in ten: retried, never saved."""
    sandbox = small_sandbox
    sandbox.set_faults(error_rate=0.1, truncate_downloads=0.1, seed=3,
                       error_kinds=["http500", "http503", "body503"])
    try:
        dag_run = backup_runner.run(sandbox, {"include_database": False})
    finally:
        sandbox.clear_faults()
    row, local = successful_archive(sandbox, dag_run, tmp_path)
    assert read_archive(local)["objects"] == sandbox.objects()
    assert row["database_bytes"] is None


def test_v1_fallback_and_changes_after_the_snapshot_are_reconciled(
        small_sandbox, backup_runner, tmp_path):
    """list-v2 off (v1 merges Case/ and case/), and objects created, changed and deleted while
    the run is between its database snapshot and the bucket listing."""
    sandbox = small_sandbox
    api = sandbox.settings["api_url"] + "/storage/v1"
    headers = {"Authorization": f"Bearer {sandbox.settings['service_key']}"}
    bucket = "docs-mutable"
    httpx.post(f"{api}/bucket", json={"id": bucket, "name": bucket}, headers=headers)
    for name in ("keep.txt", "change.txt", "delete.txt"):
        httpx.post(f"{api}/object/{bucket}/{name}", content=b"before " + name.encode(),
                   headers={**headers, "content-type": "text/plain", "x-upsert": "true"}
                   ).raise_for_status()

    def mutate():
        httpx.post(f"{api}/object/{bucket}/new.txt", content=b"created later",
                   headers={**headers, "content-type": "text/plain"}).raise_for_status()
        httpx.put(f"{api}/object/{bucket}/change.txt", content=b"changed later, longer",
                  headers={**headers, "content-type": "text/plain"}).raise_for_status()
        httpx.delete(f"{api}/object/{bucket}/delete.txt", headers=headers).raise_for_status()

    seen = {}

    def mutate_then_release():
        # The run holds its snapshot (dump_database ran before any bucket task) and waits at
        # its first listing: change the bucket now, then let the listing go on.
        seen["snapshot_before_listing"] = snapshot_taken(backup_runner.staging_root)
        mutate()
        sandbox.set_faults(hold_listing=False)

    sandbox.set_faults(list_v2_disabled=True, hold_listing=True)
    thread = when_held(sandbox, "listing", mutate_then_release)
    try:
        dag_run = backup_runner.run(sandbox, {"include_auth": False})
    finally:
        thread.join(timeout=5)
        sandbox.clear_faults()
    assert thread.done.is_set(), "the backup never reached the listing hold"
    assert seen["snapshot_before_listing"]
    row, local = successful_archive(sandbox, dag_run, tmp_path)
    contents = read_archive(local)
    assert contents["objects"] == sandbox.objects()  # exact, case-sensitive keys, latest bytes
    states = {(member["object"]["bucket"], member["object"]["key"]): member["object"]["consistency"]
              for member in contents["manifest"]["members"] if "object" in member}
    assert states[(bucket, "new.txt")] == "created_after_snapshot"
    assert states[(bucket, "change.txt")] == "changed_after_snapshot"
    assert states[(bucket, "keep.txt")] == "in_snapshot"
    deleted = contents["manifest"]["storage"]["consistency"]["deleted"]
    assert [(item["bucket"], item["key"]) for item in deleted] == [(bucket, "delete.txt")]
    assert (row["objects_created_after_snapshot"], row["objects_changed_after_snapshot"],
            row["objects_deleted_after_snapshot"]) == (1, 1, 1)
    listings = {item["bucket"]: item["listing"] for item in contents["manifest"]["storage"]["buckets"]}
    assert set(listings.values()) == {"v1"}


def test_staging_on_an_object_store(small_sandbox, backup_runner, tmp_path):
    """Staging under s3:// (for executors whose tasks run on different machines)."""
    sandbox = small_sandbox
    staging_url = f"s3://aws_default@{sandbox.settings['s3_bucket']}/staging"
    dag_run = backup_runner.run(sandbox, {"buckets": ["documents"]},
                                supabase_backup_staging_root=staging_url)
    row, local = successful_archive(sandbox, dag_run, tmp_path)
    contents = read_archive(local)
    truth = {key: value for key, value in sandbox.objects().items() if key[0] == "documents"}
    assert contents["objects"] == truth
    assert not [key for key in sandbox.archive_keys() if key.startswith("staging/")]


def test_a_missing_variable_still_leaves_a_failed_row_saying_what_to_set(
        small_sandbox, backup_runner):
    sandbox = small_sandbox
    dag_run = backup_runner.run(sandbox, {}, supabase_backup_s3_bucket="")
    row = sandbox.history_row(dag_run.run_id)
    assert dag_run.state == "failed"
    assert row["status"] == "failed"
    assert "plan_run" in row["error"] and "supabase_backup_s3_bucket" in row["error"]


def test_a_database_only_run_holds_just_the_dump(small_sandbox, backup_runner, tmp_path):
    sandbox = small_sandbox
    dag_run = backup_runner.run(sandbox, {"include_auth": False, "include_storage": False})
    row, local = successful_archive(sandbox, dag_run, tmp_path)
    contents = read_archive(local)
    assert set(contents["members"]) == {"manifest.json", "db/backup.sql", "db/roles.sql"}
    roles = read_member(local, "db/roles.sql").decode()
    assert "CREATE ROLE authenticated;" in roles and "PASSWORD" not in roles
    assert contents["manifest"]["database"]["roles"]["member"] == "db/roles.sql"
    manifest = contents["manifest"]
    assert manifest["auth"] is None and manifest["storage"] is None
    assert "inventory_objects" not in manifest["database"]  # no storage, no inventory to take
    assert (row["auth_users"], row["storage_objects"], row["storage_buckets"]) == (None, None, None)
    assert row["database_bytes"] == contents["members"]["db/backup.sql"][0]


def test_an_object_the_api_cannot_serve_leaves_an_incomplete_verified_archive(
        small_sandbox, backup_runner, tmp_path):
    """restic's "incomplete snapshot": the archive holds everything else and is verified, the
    manifest lists the unreadable object with its reason, the row says incomplete, the run fails."""
    import sandbox as sandbox_package

    sandbox = small_sandbox
    bucket = "incomplete-check"
    sandbox_package.add_objects(sandbox.settings, bucket, [
        ("fine-1.txt", b"one", "text/plain"), ("lost.bin", b"gone from disk", "application/octet-stream"),
        ("fine-2.txt", b"two", "text/plain")])
    with sandbox.connect() as connection:
        lost_id = connection.execute("SELECT id FROM storage.objects WHERE bucket_id = %s AND name = "
                                     "'lost.bin'", (bucket,)).fetchone()[0]
    Path(sandbox.settings["blobs_dir"], str(lost_id)).unlink()
    try:
        dag_run = backup_runner.run(sandbox, {"buckets": [bucket], "include_auth": False})
        row = sandbox.history_row(dag_run.run_id)
        assert dag_run.state == "failed"
        assert (row["status"], row["objects_unreadable"], row["storage_objects"]) == (
            "incomplete", 1, 2)
        assert "incomplete-check/lost.bin" in row["error"] and "NoSuchKey" in row["error"]
        assert outcome_of(dag_run) == f"Incomplete: {row['error'].rstrip('.')}."
        local = sandbox.download_archive(row["s3_key"], tmp_path / "incomplete.zip")
        contents = read_archive(local)
        assert set(contents["objects"]) == {(bucket, "fine-1.txt"), (bucket, "fine-2.txt")}
        (unreadable,) = contents["manifest"]["storage"]["unreadable"]
        assert (unreadable["bucket"], unreadable["key"]) == (bucket, "lost.bin")
    finally:
        with sandbox.connect() as connection:
            connection.execute("DELETE FROM storage.objects WHERE bucket_id = %s", (bucket,))
            connection.execute("DELETE FROM storage.buckets WHERE id = %s", (bucket,))


def test_a_missing_s3_bucket_fails_at_once_before_any_export(small_sandbox, backup_runner):
    sandbox = small_sandbox
    dag_run = backup_runner.run(sandbox, {}, supabase_backup_s3_bucket="no-such-bucket-here")
    row = sandbox.history_row(dag_run.run_id)
    assert dag_run.state == "failed" and row["status"] == "failed"
    assert "plan_run" in row["error"] and "no-such-bucket-here" in row["error"]
    assert "does not exist" in row["error"]
    # Failed at once, on its first try: a permanent error is not retried.
    task_states = {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
    assert task_states["plan_run"] == ("failed", 1)
    assert task_states["dump_database"][0] in ("upstream_failed", None)
