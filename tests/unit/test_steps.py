"""steps: the outcome of a run (final history row, failure callback) with history's writes recorded
by a fake, so only the decision is under test (tests/integration covers the SQL)."""

from contextlib import contextmanager

import pytest

from supabase_backup.records import history
from supabase_backup.backup import outcome
from supabase_backup import errors

VERIFIED = {"s3_bucket": "b", "s3_key": "k.zip", "bytes": 10, "sha256": "ab" * 32}


class Recorder:
    def __init__(self, monkeypatch, existing_error=None):
        self.calls = []
        self.existing_error = existing_error
        for name in ("record_success", "record_failed", "record_encryption"):
            monkeypatch.setattr(history, name, self._record(name))
        monkeypatch.setattr(history, "get_by_run_id", lambda connection, run_id: {
            "error": self.existing_error or next(
                (call[1]["reason"] for call in self.calls if call[0] == "record_failed"), None)})

    def _record(self, name):
        def record(connection, run_id, *args, **kwargs):
            if name == "record_failed":
                kwargs["reason"] = args[0]
            if name == "record_success":
                kwargs["summary"] = args[0]
            self.calls.append((name, {"run_id": run_id, **kwargs}))
            return True
        return record


class FakeDatabase:
    @contextmanager
    def connect(self, **options):
        yield object()


def finish(verified, failed_tasks, summaries=None):
    return outcome.finish_run(FakeDatabase(), run_id="r", trigger="scheduled", triggered_by=None,
                            verified=verified, summaries=summaries or {"archive": {}},
                            failed_tasks=failed_tasks)


def test_a_verified_archive_is_a_success_whatever_ran_after_it(monkeypatch):
    recorder = Recorder(monkeypatch)
    summary = finish(VERIFIED, ["apply_retention"])
    # The row says whether the archive is encrypted (here: not) once verified.
    assert [name for name, _ in recorder.calls] == ["record_success", "record_encryption"]
    assert summary["s3_key"] == "k.zip" and summary["size_bytes"] == 10


def test_no_verified_archive_is_a_failure_that_keeps_the_first_reason(monkeypatch):
    recorder = Recorder(monkeypatch, existing_error="export_bucket: Storage answered HTTP 503")
    with pytest.raises(errors.RunFailed, match="export_bucket: Storage answered HTTP 503"):
        finish(None, ["export_bucket"])
    (name, call), = recorder.calls
    assert name == "record_failed" and call["trigger"] == "scheduled"
    assert "export_bucket" in call["reason"]


def test_no_failed_task_and_no_archive_is_still_a_failure(monkeypatch):
    Recorder(monkeypatch)
    with pytest.raises(errors.RunFailed, match="skipped or cleared"):
        finish(None, [])


def test_the_failure_callback_scrubs_secrets_and_records_the_real_trigger(monkeypatch):
    recorder = Recorder(monkeypatch)
    message = outcome.record_task_failure(
        FakeDatabase(), run_id="r", task_id="plan_run",
        error=RuntimeError("password hunter2 refused"), trigger="api", triggered_by="ops",
        secrets=["hunter2"])
    assert message == "plan_run: password *** refused"
    (name, call), = recorder.calls
    assert call == {"run_id": "r", "reason": message, "trigger": "api", "triggered_by": "ops",
                    "attempt": 0, "deployment": None}


def test_a_verified_archive_lacking_unreadable_objects_is_incomplete_and_fails(monkeypatch):
    recorder = Recorder(monkeypatch)
    storage = {"objects": 9, "unreadable": 2, "unreadable_examples": [
        {"bucket": "media", "key": "a.png", "reason": "NoSuchKey but in storage.objects"}]}
    with pytest.raises(errors.RunFailed, match="incomplete: 2 object.*media/a.png"):
        finish(VERIFIED, [], {"archive": {}, "storage": storage})
    (name, call), _encryption = recorder.calls
    assert name == "record_success" and call["status"] == "incomplete"
    assert call["summary"]["objects_unreadable"] == 2 and "media/a.png" in call["error"]


# --- the outcome sentence: the DAG run's note and a failed task's last log line -----------------

def test_the_outcome_sentences_say_the_outcome_first_then_the_cause_or_what_was_kept():
    summary = {"s3_bucket": "backups", "s3_key": "backup-2026-12-07-03-00-UTC.zip",
               "size_bytes": 392_499, "auth_users": 120, "storage_objects": 178}
    assert outcome.success_sentence(summary) == (
        "Success: verified s3://backups/backup-2026-12-07-03-00-UTC.zip, 120 users, 178 objects, "
        "383.3 KiB.")
    # Parts left out of the run are left out of the sentence, not shown as zero.
    assert outcome.success_sentence({**summary, "auth_users": None, "storage_objects": None}) == (
        "Success: verified s3://backups/backup-2026-12-07-03-00-UTC.zip, 383.3 KiB.")
    assert outcome.failure_sentence("export_bucket [avatars]: GET /x answered HTTP 503.") == (
        "Failed: export_bucket [avatars]: GET /x answered HTTP 503.")
    assert outcome.failure_sentence("incomplete: 2 object(s) could not be read") == (
        "Incomplete: 2 object(s) could not be read.")


def test_a_run_that_fails_carries_the_rows_reason_for_its_sentence(monkeypatch):
    Recorder(monkeypatch, existing_error="list_buckets: Storage answered HTTP 503")
    with pytest.raises(errors.RunFailed) as failed:
        finish(None, ["list_buckets"])
    assert outcome.failure_sentence(failed.value.reason) == (
        "Failed: list_buckets: Storage answered HTTP 503.")
