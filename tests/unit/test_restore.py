"""restore: unsafe member names refused before anything is read, unverified archives refused, the
dry-run plan, and the command's exit codes and help."""

import hashlib
import io
import zipfile

import pytest

from supabase_backup import manifest
from supabase_backup.archive import object_member_name
from supabase_backup.cli import main
from supabase_backup.errors import UnsafeMemberPath
from supabase_backup.restore import check_member_names, member_path_problem, plan_restore

DUMP = b"SET statement_timeout = 0;\nCREATE TABLE public.t (id int);\n"
OBJECTS = [("avatars", "u/1.png", b"\x89PNG" + b"\x00" * 60, "image/png", "max-age=3600"),
           ("avatars", "u/2.png", b"\x89PNG" + b"\x01" * 40, "image/png", None),
           ("documents", "a//b", b"double slash\n", "text/plain", "no-cache")]


def write_archive(path, *, objects=OBJECTS, extra_members=(), dump=DUMP):
    members = [("db/backup.sql", dump, None)]
    for bucket, key, data, content_type, cache_control in objects:
        members.append((object_member_name(bucket, key), data,
                        {"bucket": bucket, "key": key, "content_type": content_type,
                         "cache_control": cache_control, "consistency": "in_snapshot"}))
    listed = []
    for name, data, entry in members:
        item = {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if entry:
            item["object"] = entry
        listed.append(item)
    header = {
        "created_at": "2026-11-28T06:00:00+00:00", "run": {"run_id": "manual__1"},
        "database": {"included": True, "member": "db/backup.sql",
                     "tables": [{"schema": "public", "table": "t", "row_estimate": 12}]},
        "auth": None,
        "storage": {"buckets": [
            {"bucket": "avatars", "settings": {"name": "avatars", "public": False,
                                               "file_size_limit": 1048576,
                                               "allowed_mime_types": ["image/png"]}},
            {"bucket": "documents", "settings": {"name": "documents", "public": True}}]},
    }
    text = io.StringIO()
    manifest.write_manifest(text, header, listed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", text.getvalue())
        for name, data, _ in members:
            archive.writestr(name, data)
        for name, data in extra_members:
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("name, reason", [
    ("../x", "'..' segment"),
    ("storage/b/../../etc/passwd", "'..' segment"),
    ("/abs", "absolute"),
    ("storage\\b\\x", "backslash"),
    ("C:x", "drive letter"),
    ("c:/windows/x", "drive letter"),
    ("storage/b/./x", "'.' segment"),
    ("storage//x", "empty segment"),
    ("storage/b/a\x00b", "NUL"),
])
def test_unsafe_names_are_named(name, reason):
    assert reason in member_path_problem(name)


def test_names_written_by_the_archive_module_are_safe():
    for key in ["a//b", "/leading", "trailing/", "dot/../escape.txt", "back\\slash", "100% done",
                "..hidden", "C:/x", "café/naïve ☃.txt"]:
        assert member_path_problem(object_member_name("b", key)) is None, key


@pytest.mark.parametrize("name", ["../x", "/abs", "a\\b", "C:x"])
def test_a_crafted_zip_is_refused_before_anything_else(tmp_path, name):
    path = write_archive(tmp_path / "evil.zip", extra_members=[(name, b"owned")])
    with zipfile.ZipFile(path) as archive, pytest.raises(UnsafeMemberPath, match="outside"):
        check_member_names(archive)
    # The command refuses it with exit 10, before verifying (which would also fail).
    assert main(["restore", "--dry-run", str(path)]) == 10


def test_a_nul_in_a_stored_name_is_refused(tmp_path):
    path = write_archive(tmp_path / "nul.zip", extra_members=[("storage/b/aXb", b"x")])
    # zipfile cuts names at NUL when reading, so the NUL is patched into the stored bytes.
    path.write_bytes(path.read_bytes().replace(b"storage/b/aXb", b"storage/b/a\x00b"))
    with zipfile.ZipFile(path) as archive, pytest.raises(UnsafeMemberPath, match="NUL"):
        check_member_names(archive)
    assert main(["restore", "--dry-run", str(path)]) == 10


def test_an_archive_that_fails_verification_is_refused(tmp_path, capsys):
    path = write_archive(tmp_path / "extra.zip", extra_members=[("storage/avatars/stranger", b"x")])
    assert main(["restore", "--dry-run", str(path)]) == 1
    assert "not in the manifest" in capsys.readouterr().err
    changed = write_archive(tmp_path / "changed.zip")
    data = changed.read_bytes()
    with zipfile.ZipFile(changed) as archive:
        info = archive.getinfo("db/backup.sql")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    changed.write_bytes(data[:start + 3] + bytes([data[start + 3] ^ 0xFF]) + data[start + 4:])
    assert main(["restore", "--only", "db", "--database-url", "postgresql://u@127.0.0.1:1/x",
                 str(changed)]) == 1
    assert "verification failed" in capsys.readouterr().err.lower()


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path, capsys):
    path = write_archive(tmp_path / "ok.zip")
    # No target is reachable at these addresses: a dry run must not try.
    assert main(["restore", "--dry-run", "--database-url", "postgresql://u:secret@127.0.0.1:1/x",
                 "--storage-url", "http://127.0.0.1:1", str(path)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "1 tables, about 12 rows" in out and "public.t: ~12 rows" in out
    assert "up to 3 objects" in out and "in 2 buckets" in out
    assert "avatars: 2 objects, 108 B (public=False, file_size_limit=1048576, " \
           "allowed_mime_types=['image/png'])" in out
    assert "documents: 1 objects, 13 B" in out
    assert "Dry run: nothing was changed." in out
    assert "secret" not in out + captured.err
    assert "Verified" in captured.err
    assert main(["restore", "--dry-run", "--only", "storage", str(path)]) == 0
    assert "Database" not in capsys.readouterr().out


def test_plan_counts_objects_per_bucket(tmp_path):
    with zipfile.ZipFile(write_archive(tmp_path / "ok.zip")) as archive:
        plan = plan_restore(archive)
    assert {name: (b.objects, b.bytes) for name, b in plan.buckets.items()} == {
        "avatars": (2, 108), "documents": (1, 13)}
    assert plan.database_bytes == len(DUMP)


def test_missing_targets_and_keys_are_usage_errors(tmp_path, capsys, monkeypatch):
    path = write_archive(tmp_path / "ok.zip")
    monkeypatch.delenv("SUPABASE_SERVICE_ROLE_KEY", raising=False)
    monkeypatch.delenv("SUPABASE_BACKUP_RESTORE_DATABASE_URL", raising=False)
    assert main(["restore", "--only", "db", str(path)]) == 3
    assert "--database-url is required" in capsys.readouterr().err
    assert main(["restore", "--only", "storage", "--storage-url", "http://x", str(path)]) == 3
    assert "SUPABASE_SERVICE_ROLE_KEY" in capsys.readouterr().err
    assert main(["restore", "--dry-run", str(tmp_path / "nope.zip")]) == 9
    with pytest.raises(SystemExit) as usage:
        main(["restore", "--only", "auth", str(path)])
    assert usage.value.code == 3


def test_restore_help_reads_well(capsys):
    with pytest.raises(SystemExit) as shown:
        main(["restore", "--help"])
    assert shown.value.code == 0
    text = capsys.readouterr().out
    for expected in ("--dry-run", "--skip-extension", "--storage-key-env", "--overwrite",
                     "ON_ERROR_STOP=1 --single-transaction", "EMPTY", "PGPASSWORD",
                     "exit codes:", "11  restore refused"):
        assert expected in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "restore" in capsys.readouterr().out
