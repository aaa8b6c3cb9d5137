"""destination/delivery.py: the run plan chooses one delivery, once; each knows which sizes and
hashes its read-back checks, and only the encrypted one names recipients."""

from datetime import UTC, datetime

import pytest

from supabase_backup.config import BackupSettings, RunPlan
from supabase_backup.destination import delivery, encrypted
from supabase_backup.destination import s3 as destination

RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


def plan(**changes) -> RunPlan:
    run_facts = {name: changes.pop(name) for name in list(changes) if name == "stream_archive"}
    return RunPlan(settings=BackupSettings(s3_bucket="bk", **changes), run_id="r",
                   trigger="manual", started_at=datetime(2026, 12, 1, tzinfo=UTC).isoformat(),
                   **run_facts)


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({}, delivery.StreamedDelivery),
        ({"stream_archive": False}, delivery.LocalDelivery),
        ({"age_recipients": (RECIPIENT,)}, delivery.EncryptedDelivery),  # needs the local zip
        ({"age_recipients": (RECIPIENT,), "stream_archive": False}, delivery.EncryptedDelivery),
    ],
)
def test_the_plan_chooses_the_delivery(changes, kind):
    chosen = delivery.delivery_for(plan(**changes))
    assert type(chosen) is kind
    assert chosen.recipients == ([RECIPIENT] if "age_recipients" in changes else None)


def test_each_read_back_checks_the_bytes_whoever_counted_them(monkeypatch):
    checked = []

    def read_back(client, bucket, key, *, size, sha256):
        checked.append((size, sha256))
        return {"members_checked": 3}

    monkeypatch.setattr(destination, "read_back_and_verify", read_back)
    monkeypatch.setattr(encrypted, "read_back_and_check", read_back)
    archive = {"bytes": 10, "sha256": "built"}
    location = {"s3_bucket": "bk", "s3_key": "k.zip", "bytes": 11, "sha256": "streamed",
                "ciphertext_bytes": 12, "ciphertext_sha256": "encrypted",
                "plaintext_members_checked": 3, "format_version": 2}
    results = [delivery.delivery_for(plan(**changes)).verify(None, archive, location)
               for changes in ({"stream_archive": False}, {}, {"age_recipients": (RECIPIENT,)})]
    assert checked == [(10, "built"), (11, "streamed"), (12, "encrypted")]
    assert {result["s3_url"] for result in results} == {"s3://bk/k.zip"}
    assert results[2]["format_version"] == 2 and results[2]["members_checked"] == 3
