from datetime import datetime, timezone

import pytest

from supabase_backup import destination
from supabase_backup.errors import BackupError


class FakeHook:
    """Stands in for S3Hook.head_object / generate_presigned_url only."""

    def __init__(self, objects):
        self.objects = objects

    def head_object(self, key, bucket_name):
        return self.objects.get(key)

    def generate_presigned_url(self, **kwargs):
        return None


STARTED = datetime(2026, 11, 25, 3, 4, 59, tzinfo=timezone.utc)


def test_archive_name_format():
    assert destination.archive_key("p/", STARTED) == "p/backup-2026-11-25-03-04-UTC.zip"
    assert destination.archive_key("", STARTED, 3) == "backup-2026-11-25-03-04-UTC-3.zip"


def test_a_taken_key_is_never_reused_for_another_archive():
    hook = FakeHook({"backup-2026-11-25-03-04-UTC.zip": {"Metadata": {"sha256": "other"}}})
    assert destination.choose_archive_key(hook, "b", "", STARTED, "mine") == (
        "backup-2026-11-25-03-04-UTC-2.zip", False)


def test_a_retried_upload_recognises_its_own_archive():
    hook = FakeHook({"backup-2026-11-25-03-04-UTC.zip": {"Metadata": {"sha256": "mine"}}})
    assert destination.choose_archive_key(hook, "b", "", STARTED, "mine") == (
        "backup-2026-11-25-03-04-UTC.zip", True)


def test_presign_failure_is_an_error_not_none():
    with pytest.raises(BackupError, match="could not presign"):
        destination.presigned_download_url(FakeHook({}), "b", "k")
