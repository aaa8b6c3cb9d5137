"""destination.repository: writer and reader against an in-memory S3 (tests/unit/s3_fake.py). The
packs and the snapshot are also read here by hand, as FORMAT.md describes them, not only through
the library's reader."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import struct
import tracemalloc

import pytest

from supabase_backup.destination.repository import layout
from supabase_backup.destination.repository import writer as writer_module
from supabase_backup.destination.repository.reader import RepositoryReader
from supabase_backup.destination.repository.writer import RepositoryWriter
from supabase_backup.errors import ConfigurationError, RepositoryInvalid, SnapshotNotFound
from tests.unit.s3_fake import FakeS3, client_error

BUCKET = "backups"
PREFIX = "supabase-backups/"


@pytest.fixture(autouse=True)
def no_upload_waits(monkeypatch):
    monkeypatch.setattr(writer_module, "UPLOAD_RETRY_INITIAL_SECONDS", 0)
    monkeypatch.setattr(writer_module, "UPLOAD_RETRY_MAX_SECONDS", 0)


def entry(key: str, version: str = "v1") -> dict:
    return {"bucket": "avatars", "key": key, "version": version, "content_type": "image/png"}


def open_writer(client, **options) -> RepositoryWriter:
    return RepositoryWriter.open(client, BUCKET, PREFIX, **options)


def packs_by_hand(client: FakeS3) -> dict[str, list[dict]]:
    """Every pack's blobs, read from its own trailer and header as FORMAT.md says."""
    found = {}
    for key, data in client.objects.items():
        if "/repository/data/" not in key:
            continue
        length, magic = struct.unpack("<I8s", data[-12:])
        assert magic == b"SBPACK03"
        header = json.loads(data[-12 - length : -12])
        assert header["format"] == "supabase-backup-pack"
        for blob in header["blobs"]:
            raw = data[blob["offset"] : blob["offset"] + blob["length"]]
            assert hashlib.sha256(raw).hexdigest() == blob["id"]
        assert hashlib.sha256(data).hexdigest() == key.rsplit("/", 1)[-1]
        found[key] = header["blobs"]
    return found


def test_a_snapshot_round_trips_and_reads_as_one_json_document():
    client = FakeS3()
    with open_writer(client, chunk_bytes=1000, pack_target_bytes=4000) as writer:
        writer.add_object(entry("empty"), io.BytesIO(b""))
        writer.add_object(entry("big"), io.BytesIO(bytes(range(256)) * 10))  # 2,560 bytes
        writer.add_file("db/backup.sql", io.BytesIO(b"-- dump\n" * 300))
        written = writer.finish(run_id="run-1")
    snapshot = json.loads(client.objects[written.key])  # the whole file is plain JSON
    assert hashlib.sha256(client.objects[written.key]).hexdigest() == written.snapshot_id
    by_key = {item["key"]: item for item in snapshot["objects"]}
    assert by_key["empty"]["blobs"] == [] and by_key["empty"]["size"] == 0
    assert len(by_key["big"]["blobs"]) == 3  # fixed 1,000-byte chunks
    assert snapshot["files"]["db/backup.sql"]["size"] == 2400
    assert packs_by_hand(client)
    reader = RepositoryReader(client, BUCKET, PREFIX)
    restored = {
        item["key"]: stream.read() for item, stream in reader.restore_objects(written.snapshot_id)
    }
    assert restored == {"empty": b"", "big": bytes(range(256)) * 10}
    dump = reader.open_content(
        reader.read_snapshot(written.snapshot_id).files["db/backup.sql"]["blobs"]
    )
    assert dump.read() == b"-- dump\n" * 300
    assert reader.check(read_data=True).ok


def test_identical_bytes_are_stored_once():
    client = FakeS3()
    with open_writer(client) as writer:
        first = writer.add_object(entry("a"), io.BytesIO(b"same bytes" * 100))
        second = writer.add_object(entry("b"), io.BytesIO(b"same bytes" * 100))
        writer.finish(run_id="run-1")
    assert first["blobs"] == second["blobs"]
    assert writer.counts.blobs_added == 1 and writer.counts.blobs_deduplicated == 1
    (blobs,) = packs_by_hand(client).values()
    assert len(blobs) == 1


def test_a_failed_pack_upload_is_retried():
    client = FakeS3()
    with open_writer(client) as writer:
        writer.add_object(entry("a"), io.BytesIO(b"x" * 100))
        client.fail_next["PutObject"] = [
            client_error("SlowDown", 503),
            client_error("InternalError", 500),
        ]
        writer.finish(run_id="run-1")
    assert len(packs_by_hand(client)) == 1
    assert client.count("PutObject", "/data/") == 3  # two transient failures, then the pack
    assert RepositoryReader(client, BUCKET, PREFIX).check(read_data=True).ok


def test_a_permanent_upload_failure_is_raised_at_once():
    client = FakeS3()
    with open_writer(client) as writer:
        writer.add_object(entry("a"), io.BytesIO(b"x" * 100))
        client.fail_next["PutObject"] = [client_error("AccessDenied", 403)]
        with pytest.raises(Exception, match="AccessDenied"):
            writer.finish(run_id="run-1")
    assert client.count("PutObject", "/data/") == 1
    assert not [key for key in client.objects if "/snapshots/" in key]


def test_a_keyed_repository_names_blobs_by_hmac_and_refuses_another_key():
    client = FakeS3()
    key = b"k" * 32
    with open_writer(client, id_key=key) as writer:
        stored = writer.add_object(entry("a"), io.BytesIO(b"secret"))
        writer.finish(run_id="run-1")
    assert stored["blobs"] == [hmac.new(key, b"secret", hashlib.sha256).hexdigest()]
    # No key, pack or index names the plaintext's sha256 (snapshots still do: they are
    # encrypted in a later slice, FORMAT.md says so).
    plain = hashlib.sha256(b"secret").hexdigest().encode()
    assert not [key for key in client.objects if plain.decode() in key]
    assert not [
        key for key, data in client.objects.items() if "/snapshots/" not in key and plain in data
    ]
    with pytest.raises(RepositoryInvalid, match="not this repository's"):
        open_writer(client, id_key=b"x" * 32)
    with pytest.raises(RepositoryInvalid, match="no id key was given"):
        open_writer(client)
    assert RepositoryReader(client, BUCKET, PREFIX, id_key=key).check(read_data=True).ok


def test_age_recipients_need_an_id_key_and_store_it_encrypted():
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    with pytest.raises(ConfigurationError, match="id key"):
        open_writer(FakeS3(), recipients=(recipient,))
    client = FakeS3()
    open_writer(client, id_key=b"k" * 32, recipients=(recipient,)).close()
    config = json.loads(client.objects[f"{PREFIX}repository/config"])
    assert config["blob_id"] == "hmac-sha256" and config["id_key"]["recipients"] == [recipient]
    import base64

    assert pyrage.decrypt(base64.b64decode(config["id_key"]["age"]), [identity]) == b"k" * 32


def test_a_config_of_an_unknown_version_is_refused():
    client = FakeS3()
    open_writer(client).close()
    key = f"{PREFIX}repository/config"
    client.objects[key] = client.objects[key].replace(b'"version":3', b'"version":4')
    with pytest.raises(RepositoryInvalid, match="version 4; this tool reads version 3"):
        open_writer(client)


def test_a_blob_larger_than_a_pack_is_stored_alone():
    client = FakeS3()
    with open_writer(client, chunk_bytes=10_000, pack_target_bytes=2_000) as writer:
        writer.add_object(entry("small"), io.BytesIO(b"s" * 100))
        writer.add_object(entry("large"), io.BytesIO(b"L" * 9_000))
        writer.finish(run_id="run-1")
    packs = sorted(packs_by_hand(client).values(), key=len)
    assert [[blob["length"] for blob in blobs] for blobs in packs] in (
        [[100], [9000]],
        [[9000], [100]],
    )


def test_a_200_mib_object_streams_through_without_being_held(monkeypatch):
    """One blob stored alone in a pack large enough for a multipart upload; memory stays at a part."""
    client = FakeS3(keep=False)
    size = 200 * 2**20

    class Zeros:
        def __init__(self):
            self.left = size

        def read(self, count):
            count = min(count, self.left)
            self.left -= count
            return b"\0" * count

    tracemalloc.start()
    try:
        with open_writer(client, chunk_bytes=256 * 2**20) as writer:
            stored = writer.add_object(entry("huge"), Zeros())
            writer.flush()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored["size"] == size and stored["sha256"] == hashlib.sha256(b"\0" * size).hexdigest()
    assert client.count("UploadPart") == 13  # 16 MiB parts: multipart, not one PUT of 200 MiB
    assert peak < 48 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_pack_header_and_trailer_round_trip():
    blobs = [{"id": "a" * 64, "offset": 0, "length": 3, "raw_length": 3}]
    data = b"abc" + layout.pack_header(blobs)
    length = layout.parse_pack_trailer(data[-12:], BUCKET, PREFIX, "p")
    assert layout.parse_pack_header(data[-12 - length : -12], BUCKET, PREFIX, "p") == blobs


def test_check_names_a_missing_pack_and_the_snapshots_that_need_it():
    client = FakeS3()
    written = {}
    for name in ("first", "second"):
        with open_writer(client, pack_target_bytes=100) as writer:
            writer.add_object(entry(name), io.BytesIO(name.encode() * 100))
            written[name] = writer.finish(run_id=name).snapshot_id
    reader = RepositoryReader(client, BUCKET, PREFIX)
    (blob_id,) = next(reader.read_snapshot(written["second"]).objects())["blobs"]
    pack_id = reader._load_index()[blob_id].pack_id
    key = layout.pack_key(PREFIX, pack_id)
    del client.objects[key], client.sizes[key]
    result = RepositoryReader(client, BUCKET, PREFIX).check()
    assert result.problems == [f"pack {pack_id} is in the index but not stored"]
    assert result.damaged_packs == [pack_id]
    assert result.affected_snapshots == [written["second"]]


def test_an_unknown_snapshot_is_named():
    client = FakeS3()
    open_writer(client).close()
    with pytest.raises(SnapshotNotFound, match="no snapshot abc"):
        RepositoryReader(client, BUCKET, PREFIX).read_snapshot("abc")


def test_a_writer_stores_again_the_blobs_of_a_pack_that_is_gone():
    client = FakeS3()
    with open_writer(client) as writer:
        writer.add_object(entry("a"), io.BytesIO(b"precious"))
        writer.finish(run_id="first")
    (pack_key,) = [key for key in client.objects if "/data/" in key]
    del client.objects[pack_key], client.sizes[pack_key]
    with open_writer(client) as writer:
        assert not writer.holds(hashlib.sha256(b"precious").hexdigest())
        stored = writer.add_object(entry("a"), io.BytesIO(b"precious"))
        second = writer.finish(run_id="second")
    assert writer.counts.packs_written == 1
    reader = RepositoryReader(client, BUCKET, PREFIX)
    assert reader.open_content(stored["blobs"]).read() == b"precious"
    # The same bytes make the same pack: it is back under its old key, so the old index and the
    # first snapshot are whole again too.
    assert pack_key in client.objects
    result = reader.check(read_data=True)
    assert result.ok and result.snapshots == 2 and second.snapshot_id


def test_a_damaged_snapshot_file_is_reported_by_check():
    client = FakeS3()
    with open_writer(client) as writer:
        writer.add_object(entry("a"), io.BytesIO(b"bytes"))
        written = writer.finish(run_id="first")
    client.objects[written.key] = client.objects[written.key].replace(b'"key":"a"', b'"key":"b"')
    result = RepositoryReader(client, BUCKET, PREFIX).check()
    assert result.affected_snapshots == [written.snapshot_id]
    assert result.problems == [f"snapshot {written.snapshot_id} does not match its name"]
