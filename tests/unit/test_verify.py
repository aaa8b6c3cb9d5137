"""verify_archive refuses every way an archive can disagree with its manifest."""

import hashlib
import io
import json
import zipfile

import pytest

from supabase_backup.archive import manifest
from supabase_backup.errors import VerificationFailed
from supabase_backup.archive.verify import verify_archive

MEMBERS = {"db/backup.sql": b"CREATE TABLE t();\n" * 100, "storage/b/a%2F/b": b"\x00\x01" * 50}


def write_zip(path, members, manifest_members=None, format_version=2):
    listed = manifest_members if manifest_members is not None else [
        {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in MEMBERS.items()]
    text = io.StringIO()
    manifest.write_manifest(text, {"run": {"run_id": "r"}}, listed)
    manifest_text = text.getvalue().replace('"format_version": 2',
                                            f'"format_version": {format_version}')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", manifest_text)
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_an_intact_archive_passes(tmp_path):
    result = verify_archive(write_zip(tmp_path / "ok.zip", MEMBERS))
    assert result["members_checked"] == 2 and result["run_id"] == "r"
    assert result["content_bytes"] == sum(len(data) for data in MEMBERS.values())


@pytest.mark.parametrize("case, members, expected", [
    ("missing", {"db/backup.sql": MEMBERS["db/backup.sql"]}, "listed but missing"),
    ("stranger", {**MEMBERS, "storage/b/extra": b"x"}, "not in the manifest"),
    ("changed", {**MEMBERS, "db/backup.sql": b"DROP TABLE t;\n"}, "manifest says"),
])
def test_any_disagreement_fails(tmp_path, case, members, expected):
    with pytest.raises(VerificationFailed, match=expected):
        verify_archive(write_zip(tmp_path / f"{case}.zip", members))


def test_a_corrupted_member_fails(tmp_path):
    """A flipped byte inside a stored member: the CRC (or the sha256) catches it."""
    path = write_zip(tmp_path / "corrupt.zip", MEMBERS)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("db/backup.sql")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 5] ^= 0xFF  # inside the member's (compressed) bytes
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationFailed):
        verify_archive(path)


def test_an_unknown_format_version_and_a_non_zip_are_refused(tmp_path):
    with pytest.raises(VerificationFailed, match="format_version 3"):
        verify_archive(write_zip(tmp_path / "v3.zip", MEMBERS, format_version=3))
    (tmp_path / "not.zip").write_bytes(b"plain text")
    with pytest.raises(VerificationFailed, match="not a readable zip"):
        verify_archive(tmp_path / "not.zip")


def test_a_member_listed_twice_or_stored_twice_fails(tmp_path):
    listed = [{"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
              for name, data in MEMBERS.items()]
    with pytest.raises(VerificationFailed, match="listed twice"):
        verify_archive(write_zip(tmp_path / "twice.zip", MEMBERS, listed + listed[:1]))
    path = write_zip(tmp_path / "stored-twice.zip", MEMBERS)
    with zipfile.ZipFile(path, "a") as archive, pytest.warns(UserWarning):
        archive.writestr("db/backup.sql", MEMBERS["db/backup.sql"])
    with pytest.raises(VerificationFailed, match="twice"):
        verify_archive(path)


def test_version_1_archives_still_verify(tmp_path):
    assert verify_archive(write_zip(tmp_path / "v1.zip", MEMBERS, format_version=1))[
        "format_version"] == 1


def test_a_member_that_is_also_a_folder_fails_version_2(tmp_path):
    members = {"storage/b/x": b"file", "storage/b/x/y": b"inside"}
    with pytest.raises(VerificationFailed, match="also the folder of member 'storage/b/x/y'"):
        verify_archive(write_zip(tmp_path / "clash.zip", members, manifest_of(members)))
    members = {"storage/b/x/%00": b"file", "storage/b/x/y": b"inside"}
    assert verify_archive(write_zip(tmp_path / "ok.zip", members, manifest_of(members)))[
        "members_checked"] == 2


def manifest_of(members):
    return [{"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in members.items()]


def _flip_byte_inside(path, member):
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("member", ["db/backup.sql", "storage/b/a%2F/b"])
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_one_flipped_bit_in_the_dump_or_an_object_fails(tmp_path, member, compression):
    path = tmp_path / "flipped.zip"
    with zipfile.ZipFile(write_zip(tmp_path / "source.zip", MEMBERS)) as source, \
            zipfile.ZipFile(path, "w", compression) as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
    verify_archive(path)
    _flip_byte_inside(path, member)
    with pytest.raises(VerificationFailed, match="damaged member|manifest says|invalid"):
        verify_archive(path)


def test_a_truncated_zip_fails(tmp_path):
    path = write_zip(tmp_path / "whole.zip", MEMBERS)
    data = path.read_bytes()
    for keep in (len(data) - 10, len(data) // 2, 100):
        cut = tmp_path / f"cut-{keep}.zip"
        cut.write_bytes(data[:keep])
        with pytest.raises(VerificationFailed, match="not a readable zip"):
            verify_archive(cut)


def test_an_edited_manifest_fails(tmp_path):
    """Someone 'fixes' the manifest by hand: a size, or a sha256, no longer what the member holds."""
    listed = [{"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
              for name, data in MEMBERS.items()]
    edited_size = [dict(listed[0], size=listed[0]["size"] + 1), listed[1]]
    with pytest.raises(VerificationFailed, match="manifest says"):
        verify_archive(write_zip(tmp_path / "size.zip", MEMBERS, edited_size))
    edited_sha = [listed[0], dict(listed[1], sha256="0" * 64)]
    with pytest.raises(VerificationFailed, match="manifest says"):
        verify_archive(write_zip(tmp_path / "sha.zip", MEMBERS, edited_sha))
    path = write_zip(tmp_path / "garbled.zip", MEMBERS)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["manifest.json"] = members["manifest.json"].replace(b'"members": [', b'"members": {')
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(VerificationFailed, match="manifest.json is not valid"):
        verify_archive(path)


def test_the_manifest_of_another_archive_fails(tmp_path):
    """Same member names, other run, other bytes: the manifest does not describe these members."""
    other_members = {name: data + b"!" for name, data in MEMBERS.items()}
    other = write_zip(tmp_path / "other.zip", other_members, [
        {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in other_members.items()])
    with zipfile.ZipFile(other) as archive:
        other_manifest = archive.read("manifest.json")
    path = tmp_path / "swapped.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", other_manifest)
        for name, data in MEMBERS.items():
            archive.writestr(name, data)
    with pytest.raises(VerificationFailed, match="manifest says"):
        verify_archive(path)


# --- verify proves the dump whole (issue 19, item 1) ---------------------------------------------

from tests.unit.test_database import WHOLE_DUMP  # noqa: E402

ROLES = b"CREATE ROLE app;\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n"


def write_backup_zip(path, dump, *, roles=None, dump_check=None, dump_rows=None):
    """An archive whose manifest describes its members truthfully (sizes, hashes), with a
    database section as the backup writes it: only the dump's own content can be wrong."""
    members = {"db/backup.sql": dump}
    database = {"included": True, "member": "db/backup.sql", "bytes": len(dump),
                "tables": [{"schema": "public", "table": "orders", "row_estimate": 3, "rows": 3}]}
    if roles is not None:
        members["db/roles.sql"] = roles
        database["roles"] = {"included": True, "member": "db/roles.sql"}
    if dump_check is not None:
        database["dump_check"] = dump_check
        database["tables"][0]["dump_rows"] = dump_rows
    text = io.StringIO()
    manifest.write_manifest(text, {"run": {"run_id": "r"}, "database": database},
                            manifest_of(members))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", text.getvalue())
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_whole_dump_passes_and_is_reported(tmp_path, capsys):
    from supabase_backup.cli import main

    recorded = {"trailer": "-- PostgreSQL database dump complete", "copy_blocks": 2, "copy_rows": 3}
    path = write_backup_zip(tmp_path / "ok.zip", WHOLE_DUMP, roles=ROLES, dump_check=recorded,
                            dump_rows=3)
    assert verify_archive(path)["dumps_checked"] == ["db/backup.sql", "db/roles.sql"]
    # Archives from before the dump_check record are held to the trailer and closed blocks.
    assert verify_archive(write_backup_zip(tmp_path / "older.zip", WHOLE_DUMP))["dumps_checked"]
    assert main(["verify", str(path)]) == 0
    assert "db/backup.sql and db/roles.sql complete" in capsys.readouterr().out


@pytest.mark.parametrize("case, dump, expected", [
    ("empty", b"", "is empty"),
    ("cut", WHOLE_DUMP[:WHOLE_DUMP.index(b"2\ttwo")], "ends inside the rows of table public.orders"),
    ("cut at a fifth", WHOLE_DUMP[:len(WHOLE_DUMP) // 5], "does not end with the line"),
    ("junk", b"<html>502 Bad Gateway</html>\n", "does not end with the line"),
])
def test_a_cut_empty_or_junk_dump_is_refused(tmp_path, capsys, case, dump, expected):
    from supabase_backup.cli import main

    path = write_backup_zip(tmp_path / "bad.zip", dump)
    with pytest.raises(VerificationFailed, match="member 'db/backup.sql' is not a whole dump: it "
                       + expected):
        verify_archive(path)
    assert main(["verify", str(path)]) == 1
    assert "db/backup.sql" in capsys.readouterr().err


def test_a_cut_roles_dump_is_refused(tmp_path):
    path = write_backup_zip(tmp_path / "roles.zip", WHOLE_DUMP, roles=ROLES[:20])
    with pytest.raises(VerificationFailed, match="'db/roles.sql' is not a whole dump.*cluster"):
        verify_archive(path)


def test_rows_other_than_the_manifest_recorded_are_refused(tmp_path):
    recorded = {"trailer": "-- PostgreSQL database dump complete", "copy_blocks": 2, "copy_rows": 3}
    path = write_backup_zip(tmp_path / "rows.zip", WHOLE_DUMP, dump_check=recorded, dump_rows=4)
    with pytest.raises(VerificationFailed, match="holds 3 rows of table public.orders, the "
                       "manifest recorded 4"):
        verify_archive(path)
    path = write_backup_zip(tmp_path / "blocks.zip", WHOLE_DUMP,
                            dump_check=dict(recorded, copy_blocks=3), dump_rows=3)
    with pytest.raises(VerificationFailed, match="2 COPY blocks with 3 rows, the manifest "
                       "recorded 3 blocks"):
        verify_archive(path)


# --- verify and restore agree on what a safe archive is (issue 19, item 5) -----------------------

HOSTILE = {
    "parent segments": {"stored": "../../etc/x"},
    "absolute path": {"stored": "/etc/cron.d/x"},
    "empty segment": {"stored": "storage/documents//abs"},
    "'..' in a manifest path": {"stored": "storage/documents/a/../../../x"},
    "'..' listed, not stored": {"listed": "storage/documents/../../x"},
}


@pytest.mark.parametrize("case", HOSTILE)
def test_an_unsafe_name_is_refused_by_verify_as_by_restore(tmp_path, case):
    from supabase_backup.cli import main
    from supabase_backup.errors import UnsafeMemberPath

    hostile = HOSTILE[case]
    members = dict(MEMBERS)
    listed = manifest_of(members)
    if "stored" in hostile:  # listed in the manifest with its true size and hash, and stored
        members[hostile["stored"]] = b"owned\n"
        listed = manifest_of(members)
    else:
        listed.append({"path": hostile["listed"], "size": 6,
                       "sha256": hashlib.sha256(b"owned\n").hexdigest()})
    path = write_zip(tmp_path / "hostile.zip", members, listed)
    with zipfile.ZipFile(path) as archive:  # zipfile kept the name as given
        assert hostile.get("stored", "manifest.json") in archive.namelist()
    with pytest.raises(UnsafeMemberPath, match="outside"):
        verify_archive(path)
    assert main(["verify", str(path)]) == 10
    assert main(["restore", "--dry-run", str(path)]) == 10
