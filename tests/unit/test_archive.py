import hashlib
import io
import os
import random
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote

import pytest

from supabase_backup.archive import members
from supabase_backup.archive import build
from supabase_backup.errors import StagingCorrupted, UnsafeObjectName
from supabase_backup.archive.hashing import HashingWriter

NASTY_KEYS = [
    "plain.txt", "a//b", "trailing/", "/leading", "//", "/", "..hidden", "a..b", "q?/what?.txt",
    "it's & ok=yes;@:+,$!*", "dot/../escape.txt", "..", ".", "./x", "a/./b", "a/../../etc/passwd",
    "back\\slash", "100% done.txt", "%2E%2E", "café/naïve ☃.txt", "tab\there", "new\nline",
    "Case/x.txt", "case/x.txt", "a/", "a", "a/b", "x" * 300, "folder/.emptyFolderPlaceholder",
    "a///b///", "%", "%25", "#hash", "C:\\windows\\path", "\u202eevil",
]


def is_safe_relative_path(path: str) -> bool:
    segments = path.split("/")
    return (
        not path.startswith("/")
        and "\\" not in path
        and "\x00" not in path
        and all(segment not in ("", ".", "..") for segment in segments)
        and all(ord(character) >= 0x20 for character in path)
    )


@pytest.mark.parametrize("key", NASTY_KEYS)
def test_encoded_key_round_trips_and_is_a_safe_relative_path(key):
    encoded = members.encode_object_key(key)
    assert unquote(encoded) == key
    assert is_safe_relative_path(encoded)


def test_random_keys_round_trip_and_never_collide():
    generator = random.Random(7)
    alphabet = "ab./\\%é ?#\t:"
    seen = {}
    for _ in range(20000):
        key = "".join(generator.choice(alphabet) for _ in range(generator.randint(1, 8)))
        encoded = members.encode_object_key(key)
        assert unquote(encoded) == key
        assert is_safe_relative_path(encoded), (key, encoded)
        assert seen.setdefault(encoded, key) == key


def test_readable_names_stay_readable():
    assert members.object_member_name("avatars", "users/42/me.png") == "storage/avatars/users/42/me.png"
    assert members.encode_object_key("café/naïve ☃.txt") == "café/naïve ☃.txt"


def test_empty_and_nul_names_are_refused():
    with pytest.raises(UnsafeObjectName):
        members.encode_object_key("")
    with pytest.raises(UnsafeObjectName):
        members.encode_object_key("a\x00b")


def test_bucket_folder_cannot_escape():
    assert members.object_member_name("..", "x") == "storage/%2E%2E/x"
    assert members.object_member_name("a/b", "x") == "storage/a%2Fb/x"


def test_should_store_media_and_incompressible_bytes():
    assert build.should_store("photo.JPG", None, b"")
    assert build.should_store("blob", "video/mp4", b"")
    assert not build.should_store("drawing.svg", "image/svg+xml", b"<svg/>" * 200)
    assert build.should_store("random.bin", "application/octet-stream", os.urandom(65536))
    assert not build.should_store("dump.sql", "application/sql", b"INSERT INTO t VALUES (1);\n" * 3000)


def _planned(tmp_path: Path, name: str, data: bytes, content_type=None):
    source = tmp_path / hashlib.sha256(name.encode()).hexdigest()
    source.write_bytes(data)
    return build.PlannedMember(name, source, len(data), hashlib.sha256(data).hexdigest(), content_type)


def test_write_archive_streams_members_with_the_right_compression(tmp_path):
    text = b"hello world\n" * 10000
    noise = os.urandom(300_000)
    members = [
        _planned(tmp_path, "db/backup.sql", text, "application/sql"),
        _planned(tmp_path, "storage/b/noise.bin", noise, "application/octet-stream"),
        _planned(tmp_path, "storage/b/empty", b""),
    ]
    output = io.BytesIO()
    writer = HashingWriter(output)
    summary = build.write_archive(writer, members, datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert summary == {"members": 3, "stored_members": 1, "content_bytes": len(text) + len(noise)}
    assert writer.sha256 == hashlib.sha256(output.getvalue()).hexdigest()
    with zipfile.ZipFile(io.BytesIO(output.getvalue())) as result:
        assert result.testzip() is None
        infos = {info.filename: info for info in result.infolist()}
        assert infos["db/backup.sql"].compress_type == zipfile.ZIP_DEFLATED
        assert infos["storage/b/noise.bin"].compress_type == zipfile.ZIP_STORED
        assert result.read("storage/b/noise.bin") == noise
        assert result.read("storage/b/empty") == b""


def test_write_archive_refuses_a_staged_file_that_changed(tmp_path):
    member = _planned(tmp_path, "x", b"original")
    Path(member.source).write_bytes(b"tampered")
    with pytest.raises(StagingCorrupted, match="changed"):
        build.write_archive(io.BytesIO(), [member], datetime.now(timezone.utc))
