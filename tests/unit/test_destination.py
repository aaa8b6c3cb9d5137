import io
import zipfile
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError

from supabase_backup.destination import s3 as destination
from supabase_backup.errors import ArchiveNotFound, ConfigurationError


class FakeS3:
    """Stands in for a boto3 S3 client's head_object and ranged get_object only."""

    def __init__(self, objects: dict):
        self.objects = objects  # key -> {"Metadata": ..., "Body": bytes}
        self.ranges = []

    def head_object(self, Bucket, Key):
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")
        item = self.objects[Key]
        return {"Metadata": item.get("Metadata", {}), "ContentLength": len(item.get("Body", b""))}

    def get_object(self, Bucket, Key, Range):
        start, end = (int(part) for part in Range.removeprefix("bytes=").split("-"))
        self.ranges.append((start, end))
        return {"Body": io.BytesIO(self.objects[Key]["Body"][start:end + 1])}


STARTED = datetime(2026, 11, 25, 3, 4, 59, tzinfo=timezone.utc)


def test_archive_name_format():
    assert destination.archive_key("p/", STARTED) == "p/backup-2026-11-25-03-04-UTC.zip"
    assert destination.archive_key("", STARTED, 3) == "backup-2026-11-25-03-04-UTC-3.zip"


def test_a_taken_key_is_never_reused_for_another_archive():
    s3 = FakeS3({"backup-2026-11-25-03-04-UTC.zip": {"Metadata": {"sha256": "other"}}})
    assert destination.choose_archive_key(s3, "b", "", STARTED, "mine") == (
        "backup-2026-11-25-03-04-UTC-2.zip", False, 2)


def test_a_retried_upload_recognises_its_own_archive():
    s3 = FakeS3({"backup-2026-11-25-03-04-UTC.zip": {"Metadata": {"sha256": "mine"}}})
    assert destination.choose_archive_key(s3, "b", "", STARTED, "mine") == (
        "backup-2026-11-25-03-04-UTC.zip", True, 1)


def test_other_head_errors_are_raised_not_taken_for_absence():
    class Forbidden(FakeS3):
        def head_object(self, Bucket, Key):
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

    with pytest.raises(ClientError):
        destination.choose_archive_key(Forbidden({}), "b", "", STARTED, "mine")


def test_presigned_urls_last_fifteen_minutes_and_are_sigv4():
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="a",
                          aws_secret_access_key="b", endpoint_url="http://127.0.0.1:9",
                          config=boto3.session.Config(signature_version="s3v4"))
    query = parse_qs(urlsplit(destination.presigned_download_url(client, "b", "k.zip")).query)
    assert query["X-Amz-Expires"] == ["900"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]


def test_parse_s3_url():
    assert destination.parse_s3_url("s3://bucket/a/b.zip") == ("bucket", "a/b.zip")
    for bad in ("s3://bucket", "https://x/y", "bucket/key"):
        with pytest.raises(ConfigurationError):
            destination.parse_s3_url(bad)


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_range_reader_serves_zipfile_and_hashes_the_whole_object_once():
    import hashlib

    body = make_zip({f"m{number}": bytes([number]) * (number * 1000) for number in range(1, 60)})
    s3 = FakeS3({"a.zip": {"Body": body}})
    archive_file, reader = destination.open_s3_archive(s3, "b", "a.zip")
    with archive_file, zipfile.ZipFile(archive_file) as archive:
        for info in archive.infolist():
            assert archive.read(info) == bytes([int(info.filename[1:])]) * info.file_size
        assert reader.finish_sha256() == hashlib.sha256(body).hexdigest()
    # Members were read in order and hashed as they passed; only the tail was read twice.
    assert reader.bytes_fetched <= 2 * len(body)


def test_a_missing_archive_is_archive_not_found():
    with pytest.raises(ArchiveNotFound):
        destination.open_s3_archive(FakeS3({}), "b", "nope.zip")
