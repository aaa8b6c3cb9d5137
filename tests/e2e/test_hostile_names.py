"""Hostile object names are ordinary names: backed up, extracted with `unzip` and with Python's
extractall, and every object comes back byte-identical under the name FORMAT.md gives it."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import sandbox as sandbox_package
from tests.archive_reader import read_archive, read_member

BUCKET = "hostile-names"
HOSTILE_KEYS = [
    "x", "x/y",                                   # a file beside a folder of the same name
    "collide", "collide/inner.txt",               # two API uploads produce these
    "..", "../z",                                 # direct SQL: dot segments
    ".", "./a",
    "a/", "a//b",                                 # a trailing slash beside a doubled one
    "/leading", "trailing/", "dot/../escape.txt",
    "..hidden", "a..b", "q?/what?.txt", "it's & ok=yes;@:+,$!*",
    "with space/and more spaces.txt", "100% done.txt", "hash#1.txt", "back\\slash.txt",
    "café/naïve ☃.txt", "emoji 😀/🎉.bin", "right-to-left \u202egnp.exe",
    "tab\there.txt", "Case/x", "case/x", "UPPER.TXT", "upper.txt", "deep/" + "/".join("d" * 40),
    ".emptyFolderPlaceholder", "folder/.emptyFolderPlaceholder", "~tilde", "-dash", "zero-bytes",
]
# Not here: a key with a newline, which the Storage API will not serve (InvalidKey): such a key
# ends in an incomplete backup that names it (test_backup_end_to_end covers incomplete runs). A
# path segment over 255 bytes is legal in Storage but no file system here can hold it: unzip
# refuses that member, while verify and restore (which never extract by name) still work.


def test_hostile_names_extract_with_unzip_and_extractall_byte_identical(
        small_sandbox, backup_runner, tmp_path):
    sandbox = small_sandbox
    data = {key: (b"" if "zero" in key or "Placeholder" in key
                  else hashlib.sha256(key.encode()).digest() * 3) for key in HOSTILE_KEYS}
    sandbox_package.add_objects(sandbox.settings, BUCKET, [
        (key, content, "application/octet-stream") for key, content in data.items()])
    try:
        dag_run = backup_runner.run(sandbox, {"buckets": [BUCKET], "include_auth": False,
                                              "include_database": False})
        row = sandbox.history_row(dag_run.run_id)
        assert (dag_run.state, row["status"], row["storage_objects"]) == (
            "success", "success", len(HOSTILE_KEYS))
        archive = sandbox.download_archive(row["s3_key"], tmp_path / "hostile.zip")
        assert read_archive(archive)["objects"] == {
            (BUCKET, key): (len(content), hashlib.sha256(content).hexdigest())
            for key, content in data.items()}
        manifest = read_archive(archive)["manifest"]
        member_of = {member["object"]["key"]: member["path"] for member in manifest["members"]
                     if "object" in member}

        unzipped = tmp_path / "unzip"
        result = subprocess.run(["unzip", "-q", str(archive), "-d", str(unzipped)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        extracted = tmp_path / "extractall"
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(extracted)
        for folder in (unzipped, extracted):
            files = [path for path in folder.rglob("*") if path.is_file()]
            assert len(files) == len(manifest["members"]) + 1  # + manifest.json
            for key, content in data.items():
                assert (folder / member_of[key]).read_bytes() == content, key
        assert read_member(archive, member_of["x"]) == data["x"]
    finally:
        with sandbox.connect() as connection:
            connection.execute("DELETE FROM storage.objects WHERE bucket_id = %s", (BUCKET,))
            connection.execute("DELETE FROM storage.buckets WHERE id = %s", (BUCKET,))
