"""The full DAG on the `medium` sandbox: 2,600 users (three pages of 1,000), 4 buckets, a folder
of 2,000 objects (over v1's 1,500 cap), folders 5 levels deep, a 200 MiB object, about 180k rows
and a large object. Checked from the outside like the small end-to-end test."""

from __future__ import annotations

import json

from tests.archive_reader import read_archive, read_member
from tests.e2e.test_backup_end_to_end import (
    restore_into_fresh_database, successful_archive, table_row_counts)


def test_medium_backup_is_complete(medium_sandbox, backup_runner, tmp_path):
    sandbox = medium_sandbox
    truth = sandbox.objects()
    users_before = sandbox.user_ids()
    with sandbox.connect() as connection:
        bucket_count = connection.execute("SELECT count(*) FROM storage.buckets").fetchone()[0]
    assert len(users_before) >= 2500 and bucket_count >= 4
    assert max(size for size, _ in truth.values()) >= 200 * 2**20

    dag_run = backup_runner.run(sandbox, {})
    row, local = successful_archive(sandbox, dag_run, tmp_path)

    contents = read_archive(local)
    assert contents["objects"] == truth
    folder_sizes = {}
    for bucket, key in truth:
        folder_sizes[(bucket, key.rsplit("/", 1)[0])] = folder_sizes.get(
            (bucket, key.rsplit("/", 1)[0]), 0) + 1
    assert max(folder_sizes.values()) >= 2000
    users = json.loads(read_member(local, "auth/users.json"))
    assert {user["id"] for user in users} == users_before and len(users) == len(users_before)
    manifest = contents["manifest"]
    assert manifest["auth"]["users"] == len(users_before) and manifest["auth"]["pages"] >= 3
    listed = {member["path"]: (member["size"], member["sha256"]) for member in manifest["members"]}
    assert listed == {name: value for name, value in contents["members"].items()
                      if name != "manifest.json"}
    dump = tmp_path / "backup.sql"
    dump.write_bytes(read_member(local, "db/backup.sql"))
    restored = restore_into_fresh_database(sandbox, dump)
    with sandbox.connect() as source, sandbox.connect(restored) as target:
        source_counts = table_row_counts(source)
        assert source_counts == table_row_counts(target)
    assert sum(source_counts.values()) >= 100_000
    assert (row["storage_objects"], row["auth_users"]) == (len(truth), len(users_before))
    assert row["storage_buckets"] == bucket_count
