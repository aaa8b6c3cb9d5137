"""Anyone can back up their own test data: `sandbox up --objects-dir DIR --users-file FILE`."""

from __future__ import annotations

import hashlib
import json

from tests.archive_reader import read_archive, read_member
from tests.e2e.test_backup_end_to_end import successful_archive


def test_objects_folder_and_users_file_end_up_in_the_archive(small_sandbox, backup_runner, tmp_path):
    import sandbox

    tree = tmp_path / "tree"
    files = {
        "my-own-bucket/readme.txt": b"hello\n",
        "my-own-bucket/photos/2024/summer/beach.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
        "my-own-bucket/empty.bin": b"",
    }
    for relative, data in files.items():
        path = tree / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    users_file = tmp_path / "users.json"
    emails = [f"own-user-{number}@example.test" for number in range(3)]
    users_file.write_text(json.dumps([{"email": email, "user_metadata": {"n": 1}} for email in emails]))

    sandbox.up(small_sandbox.settings["state_dir"], objects_dir=str(tree), users_file=str(users_file))

    dag_run = backup_runner.run(small_sandbox, {"buckets": ["my-own-bucket"],
                                                "include_database": False})
    row, local = successful_archive(small_sandbox, dag_run, tmp_path)
    objects = read_archive(local)["objects"]
    assert objects == {
        ("my-own-bucket", relative.split("/", 1)[1]): (len(data), hashlib.sha256(data).hexdigest())
        for relative, data in files.items()
    }
    users = json.loads(read_member(local, "auth/users.json"))
    assert set(emails) <= {user["email"] for user in users}
