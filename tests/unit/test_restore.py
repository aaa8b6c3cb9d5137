"""restore: unsafe member names refused before anything is read, unverified archives refused, the
dry-run plan, and the command's exit codes and help. Archives are read with memory that does not
grow with the member count (issue 10): the name checks, the plan, the object stream and the storage
uploads work from an archive of many members written by StreamingZipWriter and never build a
zipfile.ZipFile (a ZipInfo per member); RSS at a million members is measured by bench/stages.py."""

import hashlib
import io
import json
import threading
import zipfile
from contextlib import contextmanager
from urllib.parse import unquote

import httpx
import pytest

from supabase_backup.archive import manifest
from supabase_backup.sources.api_client import ApiSettings
from supabase_backup.archive.members import object_member_name
from supabase_backup.cli import main
from supabase_backup.errors import UnsafeMemberPath
from supabase_backup.restore.archive import (
    RestoreArchive,
    check_member_names,
    iter_objects,
    plan_restore,
    read_header_and_members,
)
from supabase_backup.archive.members import member_path_problem
from supabase_backup.restore.storage import restore_storage
from supabase_backup.archive.zip_stream import StreamingZipWriter

# Ends as every pg_dump does: verify refuses a dump without its closing line (a cut dump).
DUMP = (b"SET statement_timeout = 0;\nCREATE TABLE public.t (id int);\n"
        b"\n--\n-- PostgreSQL database dump complete\n--\n\n")
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


@contextmanager
def opened(path):
    with open(path, "rb") as file, RestoreArchive(file, str(path)) as archive:
        yield archive


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
    with opened(path) as archive, pytest.raises(UnsafeMemberPath, match="outside"):
        check_member_names(archive)
    # The command refuses it with exit 10, before verifying (which would also fail).
    assert main(["restore", "--dry-run", str(path)]) == 10


def test_a_nul_in_a_stored_name_is_refused(tmp_path):
    path = write_archive(tmp_path / "nul.zip", extra_members=[("storage/b/aXb", b"x")])
    # zipfile cuts names at NUL when reading, so the NUL is patched into the stored bytes.
    path.write_bytes(path.read_bytes().replace(b"storage/b/aXb", b"storage/b/a\x00b"))
    with opened(path) as archive, pytest.raises(UnsafeMemberPath, match="NUL"):
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


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path, capsys, monkeypatch):
    path = write_archive(tmp_path / "ok.zip")
    # No target is reachable at these addresses: a dry run must not try. A password may sit in
    # the environment variable (no process list shows it), never in --database-url.
    monkeypatch.setenv("SUPABASE_BACKUP_RESTORE_DATABASE_URL", "postgresql://u:secret@127.0.0.1:1/x")
    assert main(["restore", "--dry-run", "--storage-url", "http://127.0.0.1:1", str(path)]) == 0
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
    with opened(write_archive(tmp_path / "ok.zip")) as archive:
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


# --- many members, no zipfile -----------------------------------------------------------------

DATE = (2026, 11, 28, 6, 0, 0)
MANY = 70_000  # past 65,535: the end records are ZIP64, as a million-object archive's are


def object_bytes(number: int) -> bytes:
    return b"object %d\n" % number * (1 + number % 3)


def objects(count: int):
    for number in range(count):
        bucket = "avatars" if number % 2 else "documents"
        yield bucket, f"folder-{number // 1000:03d}/object {number:06d}.txt", object_bytes(number)


def write_many(path, count: int, *, extra_members=()) -> None:
    """An archive as the backup writes it: manifest.json first, streamed, then the dump and the
    objects; the manifest is spooled to disk so no list of members is held here either."""
    header = {
        "created_at": "2026-11-28T06:00:00+00:00", "run": {"run_id": "manual__many"},
        "database": {"included": True, "member": "db/backup.sql",
                     "tables": [{"schema": "public", "table": "t", "row_estimate": 7}]},
        "auth": None,
        "storage": {"buckets": [
            {"bucket": "avatars", "settings": {"name": "avatars", "public": False}},
            {"bucket": "documents", "settings": {"name": "documents", "public": True}}]},
    }

    def listed():
        yield {"path": "db/backup.sql", "size": len(DUMP), "sha256": hashlib.sha256(DUMP).hexdigest()}
        for bucket, key, data in objects(count):
            yield {"path": object_member_name(bucket, key), "size": len(data),
                   "sha256": hashlib.sha256(data).hexdigest(),
                   "object": {"bucket": bucket, "key": key, "content_type": "text/plain",
                              "cache_control": None, "consistency": "in_snapshot"}}

    manifest_path = path.with_suffix(".manifest.json")
    with manifest_path.open("w", encoding="utf-8") as manifest_file:
        manifest.write_manifest(manifest_file, header, listed())
    with path.open("wb") as output, StreamingZipWriter(output) as writer:
        with manifest_path.open("rb") as manifest_file:
            writer.add("manifest.json", iter(lambda: manifest_file.read(1 << 20), b""),
                       date_time=DATE, deflate=True)
        writer.add("db/backup.sql", [DUMP], date_time=DATE, deflate=True)
        for bucket, key, data in objects(count):
            # Every third object deflated, the others stored: both read paths are used.
            writer.add(object_member_name(bucket, key), [data], date_time=DATE,
                       deflate=data.count(b"\n") == 3)
        for name, data in extra_members:
            writer.add(name, [data], date_time=DATE, deflate=False)
    manifest_path.unlink()


@pytest.fixture
def no_zipfile(monkeypatch):
    """zipfile.ZipFile raises: restore must read archives without it."""

    def refuse(*args, **kwargs):
        raise AssertionError("restore built a zipfile.ZipFile (a ZipInfo per member in memory)")

    monkeypatch.setattr(zipfile, "ZipFile", refuse)


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    path = tmp_path_factory.mktemp("many") / "many.zip"
    write_many(path, MANY)
    return path


def test_a_dry_run_over_many_members_reads_no_zipfile(many, no_zipfile, capsys):
    assert main(["restore", "--dry-run", str(many)]) == 0
    captured = capsys.readouterr()
    assert f"{MANY + 2:,} member names are safe; {MANY + 1:,} members match the manifest" \
        in captured.err
    assert f"up to {MANY:,} objects" in captured.out and "in 2 buckets" in captured.out
    halves = {"avatars": MANY // 2, "documents": MANY - MANY // 2}
    for bucket, count in halves.items():
        assert f"  {bucket}: {count:,} objects" in captured.out
    assert "Database: would stream db/backup.sql (" in captured.out


def test_the_plan_and_the_object_stream_over_many_members(many, no_zipfile):
    with many.open("rb") as file, RestoreArchive(file, str(many)) as archive:
        assert check_member_names(archive) == MANY + 2
        plan = plan_restore(archive)
        expected = {"avatars": [0, 0], "documents": [0, 0]}
        for bucket, _, data in objects(MANY):
            expected[bucket][0] += 1
            expected[bucket][1] += len(data)
        assert {name: [b.objects, b.bytes] for name, b in plan.buckets.items()} == expected
        assert plan.database_bytes == len(DUMP) and plan.run_id == "manual__many"
        # The stream yields the manifest's members in order, and each opens by name from the index.
        streamed = iter_objects(archive)
        for number, ((bucket, key, data), member) in enumerate(zip(objects(MANY), streamed)):
            assert (member["object"]["bucket"], member["object"]["key"]) == (bucket, key)
            if number % 997 == 0:
                with archive.open(member["path"]) as source:
                    assert source.read() == data
        assert next(streamed, None) is None
        assert "db/backup.sql" in archive and "storage/nope" not in archive
        with pytest.raises(KeyError):
            archive.open("storage/nope")


def test_an_unsafe_name_among_many_is_refused_before_anything_is_read(tmp_path, no_zipfile):
    path = tmp_path / "evil.zip"
    write_many(path, 3000, extra_members=[("storage/avatars/../../etc/passwd", b"owned"),
                                          ("storage/avatars/a\x00b", b"nul")])
    with path.open("rb") as file, RestoreArchive(file, str(path)) as archive, \
            pytest.raises(UnsafeMemberPath, match="'..' segment"):
        check_member_names(archive)
    assert main(["restore", "--dry-run", str(path)]) == 10


def test_a_file_that_is_not_a_zip_is_a_verification_failure(tmp_path, no_zipfile, capsys):
    path = tmp_path / "not.zip"
    path.write_bytes(b"PK\x03\x04 but nothing else")
    assert main(["restore", "--dry-run", str(path)]) == 1
    assert "not a readable zip file" in capsys.readouterr().err


def test_storage_uploads_stream_every_member_by_name(tmp_path, no_zipfile):
    path = tmp_path / "objects.zip"
    write_many(path, 1200)
    uploaded: dict[tuple[str, str], bytes] = {}
    created: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        route = unquote(request.url.path)
        not_found = httpx.Response(404, json={"statusCode": "404", "error": "not_found",
                                              "message": "not found"})
        if route.startswith("/storage/v1/bucket/"):
            return not_found
        if route == "/storage/v1/bucket":
            created.append(json.loads(request.content)["id"])
            return httpx.Response(200, json={"name": created[-1]})
        if route.startswith("/storage/v1/object/info/"):
            return not_found
        assert request.method == "POST" and route.startswith("/storage/v1/object/")
        bucket, key = route[len("/storage/v1/object/"):].split("/", 1)
        body = request.read()
        assert int(request.headers["content-length"]) == len(body)
        uploaded[(bucket, key)] = body
        return httpx.Response(200, json={"Key": f"{bucket}/{key}"})

    settings = ApiSettings("http://storage.test", "service-key")
    with httpx.Client(base_url=settings.url, transport=httpx.MockTransport(handle)) as client, \
            path.open("rb") as file, RestoreArchive(file, str(path)) as archive:
        header, _ = read_header_and_members(archive)
        result = restore_storage(archive, header, settings, client=client)
    assert sorted(created) == ["avatars", "documents"]
    assert result.counts["uploaded"] == 1200 and not result.refused
    assert uploaded == {(bucket, key): data for bucket, key, data in objects(1200)}


@pytest.mark.parametrize("target", ["postgres", "supabase"])
def test_the_database_member_streams_to_the_restore_without_zipfile(tmp_path, no_zipfile,
                                                                    monkeypatch, capsys, target):
    """The command's database path: the dump opened twice (scan, then run) from the index, and for
    a Supabase target db/roles.sql only when the archive holds it."""
    from supabase_backup.restore import database as restore_database
    from supabase_backup.restore import supabase as restore_supabase

    path = tmp_path / "many.zip"
    write_many(path, 3000)
    read: list[str] = []

    class Result:
        extensions_skipped: list = []

        def describe(self) -> str:
            return "Database restored (fake)."

    def fake_restore(open_dump, settings, **options):
        with open_dump() as dump:  # the scan
            read.append(dump.read())

        def feed() -> None:  # run_psql feeds psql from a writer thread
            with open_dump() as dump:
                read.append(dump.read())

        writer = threading.Thread(target=feed)
        writer.start()
        writer.join()
        assert options.get("open_roles") is None  # this archive has no db/roles.sql
        return Result()

    monkeypatch.setattr(restore_database, "restore_database", fake_restore)
    monkeypatch.setattr(restore_supabase, "restore_into_supabase", fake_restore)
    monkeypatch.setattr(restore_supabase, "comparable_figures", lambda tables: (tables, {}))
    assert main(["restore", "--only", "db", "--target", target, "--database-url",
                 "postgresql://u@127.0.0.1:1/x", str(path)]) == 0
    assert read == [DUMP.decode()] * 2
    assert "Database restored (fake)." in capsys.readouterr().out


def test_members_read_from_several_threads_at_once_are_whole(tmp_path, no_zipfile):
    # Members of several 1 MiB reads each, so the threads' seeks and reads of the one file interleave.
    import os

    expected = {f"storage/b/{number}.bin": os.urandom(2 * 1024 * 1024 + number) for number in range(8)}
    path = tmp_path / "big.zip"
    with path.open("wb") as output, StreamingZipWriter(output) as writer:
        for name, data in expected.items():
            writer.add(name, [data], date_time=DATE, deflate=False)
    failures: list[str] = []
    with path.open("rb") as file, RestoreArchive(file, str(path)) as archive:
        check_member_names(archive)

        def read(name: str) -> None:
            try:
                for _ in range(3):
                    with archive.open(name) as source:
                        if source.read() != expected[name]:
                            failures.append(f"{name}: other bytes")
            except Exception as error:  # a CRC mismatch when another thread moved the file
                failures.append(f"{name}: {error}")

        threads = [threading.Thread(target=read, args=(name,)) for name in expected]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
