"""The archive written straight into a multipart upload (destination.stream_archive) holds the same
members, sizes and sha256 as one built into a local file; parts are retried on their own; the
conditional complete still never overwrites."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from datetime import datetime, timezone

import pytest
from botocore.exceptions import EndpointConnectionError

from supabase_backup.archive.members import MANIFEST_MEMBER
from supabase_backup.archive import build
from supabase_backup.destination import s3 as destination
from supabase_backup.archive import manifest

STARTED = datetime(2031, 5, 6, 7, 8, tzinfo=timezone.utc)


@pytest.fixture()
def s3(small_sandbox):
    return small_sandbox.s3(), small_sandbox.settings["s3_bucket"]


@pytest.fixture()
def members(tmp_path):
    contents = {
        "db/backup.sql": b"INSERT INTO t VALUES (1, 'x');\n" * 200_000,
        "auth/users.json": b'{"id": "u"}\n' * 1000,
        "storage/b/photo.jpg": os.urandom(12 * 2**20),
        "storage/b/x/%00": b"file beside a folder",
        "storage/b/x/y": b"",
    }
    listed = [{"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
              for name, data in contents.items()]
    text = io.StringIO()
    manifest.write_manifest(text, {"run": {"run_id": "streamed"}}, listed)
    contents = {MANIFEST_MEMBER: text.getvalue().encode(), **contents}
    planned = []
    for number, (name, data) in enumerate(contents.items()):
        path = tmp_path / f"staged-{number}"
        path.write_bytes(data)
        planned.append(build.PlannedMember(name, path, len(data),
                                             hashlib.sha256(data).hexdigest()))
    return contents, planned


def content_of(zip_bytes: bytes) -> list[tuple[str, int, str]]:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as result:
        assert result.testzip() is None
        return [(info.filename, info.file_size, hashlib.sha256(result.read(info)).hexdigest())
                for info in result.infolist()]


def test_a_streamed_archive_holds_what_a_local_one_holds(s3, members, monkeypatch):
    client, bucket = s3
    contents, planned = members
    monkeypatch.setattr(destination, "STREAM_PART_BYTES", 5 * 2**20)  # several parts
    local = io.BytesIO()
    build.write_archive(local, planned, STARTED)
    result = destination.stream_archive(
        client, lambda output: build.write_archive(output, planned, STARTED), bucket,
        f"stream-{os.getpid()}/", STARTED, manifest_sha256="m" * 64)
    body = client.get_object(Bucket=bucket, Key=result["s3_key"])["Body"].read()
    assert (len(body), hashlib.sha256(body).hexdigest()) == (result["bytes"], result["sha256"])
    assert content_of(body) == content_of(local.getvalue())
    assert [name for name, _, _ in content_of(body)] == list(contents)  # manifest first
    assert result["members"] == len(contents) and len(body) > 10 * 2**20
    verified = destination.read_back_and_verify(client, bucket, result["s3_key"],
                                                size=result["bytes"], sha256=result["sha256"])
    assert verified["members_checked"] == len(contents) - 1


class FlakyParts:
    """upload_part fails once for part 2 as if the connection dropped."""

    def __init__(self, client):
        self._client = client
        self.failures = 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def upload_part(self, **kwargs):
        if kwargs["PartNumber"] == 2 and not self.failures:
            self.failures += 1
            raise EndpointConnectionError(endpoint_url="http://s3.invalid")
        return self._client.upload_part(**kwargs)


def test_a_failed_part_is_retried_alone_and_a_taken_key_is_never_overwritten(s3, members,
                                                                              monkeypatch):
    client, bucket = s3
    _, planned = members
    monkeypatch.setattr(destination, "STREAM_PART_BYTES", 5 * 2**20)
    prefix = f"stream-race-{os.getpid()}/"
    taken = destination.archive_key(prefix, STARTED)
    client.put_object(Bucket=bucket, Key=taken, Body=b"another run's archive")
    # Every HEAD says "free", as when another upload lands between our HEAD and our complete.
    flaky = FlakyParts(client)
    real_head = destination.head_object
    monkeypatch.setattr(destination, "head_object",
                        lambda c, b, k: real_head(client, b, k) if k.endswith("-2.zip") else None)
    result = destination.stream_archive(
        flaky, lambda output: build.write_archive(output, planned, STARTED), bucket, prefix,
        STARTED, manifest_sha256="m" * 64)
    assert flaky.failures == 1
    assert result["s3_key"] == taken.replace(".zip", "-2.zip")
    assert client.get_object(Bucket=bucket, Key=taken)["Body"].read() == b"another run's archive"
    body = client.get_object(Bucket=bucket, Key=result["s3_key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == result["sha256"]
    assert not client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads")


def test_a_retried_streamed_upload_adopts_its_own_archive_and_verify_hashes_it(s3, members,
                                                                                monkeypatch):
    """The first try completed its upload and then died: the retry finds the object by its
    manifest's sha256, writes nothing more, and the read-back supplies the hash."""
    client, bucket = s3
    _, planned = members
    prefix = f"stream-retry-{os.getpid()}/"
    first = destination.stream_archive(
        client, lambda output: build.write_archive(output, planned, STARTED), bucket, prefix,
        STARTED, manifest_sha256="a" * 64)
    retried = destination.stream_archive(
        client, lambda output: pytest.fail("the retry wrote the archive again"), bucket, prefix,
        STARTED, manifest_sha256="a" * 64)
    assert (retried["s3_key"], retried["already_uploaded"], retried["sha256"]) == (
        first["s3_key"], True, None)
    verified = destination.read_back_and_verify(client, bucket, retried["s3_key"],
                                                size=retried["bytes"], sha256=None)
    assert verified["sha256"] == first["sha256"]
    other = destination.stream_archive(
        client, lambda output: build.write_archive(output, planned, STARTED), bucket, prefix,
        STARTED, manifest_sha256="b" * 64)
    assert other["s3_key"] == first["s3_key"].replace(".zip", "-2.zip")  # another archive
