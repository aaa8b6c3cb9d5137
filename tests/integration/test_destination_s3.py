"""destination against a real S3 API (the sandbox's moto server): conditional writes, multipart,
ranged read-back."""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from datetime import datetime, timezone

import pytest
from upath import UPath

from supabase_backup.destination import s3 as destination
from supabase_backup.errors import VerificationFailed

STARTED = datetime(2030, 1, 2, 3, 4, tzinfo=timezone.utc)


def make_archive(path, payload: bytes):
    """A valid backup archive (manifest + one member) of about len(payload) bytes."""
    from tests.unit.test_verify import write_zip

    write_zip(path, {"db/backup.sql": payload},
              [{"path": "db/backup.sql", "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest()}])
    data = path.read_bytes()
    return UPath(f"file://{path}"), len(data), hashlib.sha256(data).hexdigest()


@pytest.fixture()
def s3(small_sandbox):
    return small_sandbox.s3(), small_sandbox.settings["s3_bucket"]


def upload(s3_client, bucket, source, size, sha, prefix):
    return destination.upload_archive(s3_client, source, bucket, prefix, STARTED, sha256=sha,
                                      size=size)


def test_a_key_taken_between_head_and_write_moves_to_the_next_name(s3, tmp_path, monkeypatch):
    client, bucket = s3
    prefix = f"race-{os.getpid()}-a/"
    first = make_archive(tmp_path / "first.zip", b"first archive " * 100)
    second = make_archive(tmp_path / "second.zip", b"second archive " * 100)
    taken = upload(client, bucket, *first, prefix)["s3_key"]
    # Make every HEAD say "free", as when another upload lands between our HEAD and our write.
    monkeypatch.setattr(destination, "head_object", lambda *args: None)
    with pytest.raises(destination._KeyTakenMeanwhile):
        destination._put_if_absent(client, second[0], bucket, taken, second[1], {})
    monkeypatch.undo()
    result = upload(client, bucket, *second, prefix)
    assert result["s3_key"] == taken.replace(".zip", "-2.zip")
    for key, (source, size, sha) in ((taken, first), (result["s3_key"], second)):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert (len(body), hashlib.sha256(body).hexdigest()) == (size, sha)


class SerialisedCompletes:
    """A boto3 client whose CompleteMultipartUpload calls wait until both uploads reach it (both
    HEADs said the key was free: the race), then run one after the other. moto checks
    If-None-Match but not atomically, so two completes at the same instant could both pass there;
    real S3 decides atomically, which this ordering reproduces. The requests sent are recorded."""

    def __init__(self, client):
        self._client = client
        self._both_ready = threading.Barrier(2)
        self._one_at_a_time = threading.Lock()
        self.completes = []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def complete_multipart_upload(self, **kwargs):
        self.completes.append(kwargs)
        if len(self.completes) <= 2:
            self._both_ready.wait(timeout=60)
        with self._one_at_a_time:
            return self._client.complete_multipart_upload(**kwargs)


def test_two_concurrent_uploads_of_the_same_minute_keep_both_archives(s3, tmp_path, monkeypatch):
    client, bucket = s3
    prefix = f"race-{os.getpid()}-b/"
    # Multipart for both (parts of 5 MiB, the S3 minimum): CompleteMultipartUpload is the
    # conditional write.
    monkeypatch.setattr(destination, "MULTIPART_PART_BYTES", 5 * 2**20)
    archives = [make_archive(tmp_path / f"{name}.zip", os.urandom(11 * 2**20))
                for name in ("one", "two")]
    racing = SerialisedCompletes(client)
    results = []
    threads = [threading.Thread(target=lambda archive=archive: results.append(
        upload(racing, bucket, *archive, prefix))) for archive in archives]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = sorted(result["s3_key"] for result in results)
    assert keys == [f"{prefix}backup-2030-01-02-03-04-UTC-2.zip",
                    f"{prefix}backup-2030-01-02-03-04-UTC.zip"]
    assert all(call["IfNoneMatch"] == "*" for call in racing.completes)
    assert len(racing.completes) == 3  # the loser's first complete was refused with 412
    by_sha = {sha: size for _, size, sha in archives}
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert by_sha.pop(hashlib.sha256(body).hexdigest()) == len(body)
    assert by_sha == {}  # each archive is under its own key, intact


def test_read_back_checks_members_and_the_whole_archive_in_place(s3, tmp_path):
    client, bucket = s3
    source, size, sha = make_archive(tmp_path / "a.zip", os.urandom(3 * 2**20))
    key = upload(client, bucket, source, size, sha, f"readback-{os.getpid()}/")["s3_key"]
    result = destination.read_back_and_verify(client, bucket, key, size=size, sha256=sha)
    assert result["members_checked"] == 1 and result["bytes_fetched"] <= 2 * size
    with pytest.raises(VerificationFailed, match="reads back as"):
        destination.read_back_and_verify(client, bucket, key, size=size, sha256="0" * 64)
