"""destination.repository against a real S3 API (the sandbox's moto server): few PUTs for many
small objects, deduplication, an unchanged second run that adds no pack, a killed run resumed,
the snapshot's conditional write, and a damaged pack found and named."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from collections import Counter

import pytest

from supabase_backup.destination.repository import layout
from supabase_backup.destination.repository.parent import InventoryRow, ParentObjects
from supabase_backup.destination.repository.reader import RepositoryReader
from supabase_backup.destination.repository.writer import RepositoryWriter
from supabase_backup.errors import SnapshotKeyTaken

SMALL_OBJECTS = 2_000
LARGE = random.Random(15).randbytes(20 * 2**20)


@pytest.fixture()
def s3(small_sandbox, request):
    client = small_sandbox.s3()
    prefix = f"repository-{os.getpid()}-{request.node.name}/"
    return client, small_sandbox.settings["s3_bucket"], prefix


class RequestCounter:
    """Counts S3 requests by operation and key folder, at botocore's event hook: what was sent,
    not what the writer says it sent."""

    def __init__(self, client) -> None:
        self.requests: Counter = Counter()
        client.meta.events.register("before-call.s3.*", self._count)

    def _count(self, model, params, **_) -> None:
        key = params.get("url_path", "")
        folder = next(
            (
                name
                for name in ("data", "index", "snapshots", "config")
                if f"/repository/{name}" in key
            ),
            "",
        )
        self.requests[(model.name, folder)] += 1

    def writes(self, folder: str) -> int:
        return sum(
            count
            for (operation, where), count in self.requests.items()
            if where == folder
            and operation in ("PutObject", "UploadPart", "CompleteMultipartUpload")
        )


def small_object(number: int) -> bytes:
    return (f"object {number:05d} ".encode() * 100)[:1024]


def inventory():
    """(entry, bytes) of the test project: a zero-byte object, 2,000 of 1 KB, one of 20 MiB, and
    the same bytes under two keys."""
    items = [({"bucket": "avatars", "key": "empty", "version": "v-empty"}, b"")]
    for number in range(SMALL_OBJECTS):
        items.append(({"bucket": "avatars", "key": f"small/{number}", "version": f"v{number}"},
                      small_object(number)))  # fmt: skip
    large = LARGE  # no chunk of it repeats another, so it is three blobs
    items.append(({"bucket": "media", "key": "large.bin", "version": "v-large"}, large))
    items.append(({"bucket": "media", "key": "copy-of-0", "version": "v-copy"}, small_object(0)))
    return items


def write_first_snapshot(client, bucket, prefix):
    with RepositoryWriter.open(client, bucket, prefix) as writer:
        for entry, data in inventory():
            writer.add_object({**entry, "content_type": "text/plain", "cache_control": "3600",
                               "user_metadata": {"owner": "test"}}, io.BytesIO(data))  # fmt: skip
        writer.add_file("db/backup.sql", io.BytesIO(b"-- PostgreSQL database dump\n" * 1000))
        writer.add_file("db/roles.sql", io.BytesIO(b"CREATE ROLE app;\n"))
        writer.add_file("auth/users.json", io.BytesIO(b"[]"))
        return writer.finish(run_id="run-1")


def test_a_snapshot_round_trips_with_few_puts_and_identical_bytes_stored_once(s3):
    client, bucket, prefix = s3
    counter = RequestCounter(client)
    written = write_first_snapshot(client, bucket, prefix)
    packs = layout.stored_packs(client, bucket, prefix)
    # 2 MiB of small objects and a 20 MiB object in 16 MiB packs: a handful, not 2,000 PUTs.
    assert 2 <= len(packs) <= 4
    assert counter.writes("data") <= len(packs)
    assert counter.writes("snapshots") == 1
    assert written.counts["blobs_deduplicated"] == 1  # copy-of-0 has small/0's bytes

    reader = RepositoryReader(client, bucket, prefix)
    assert [info.snapshot_id for info in reader.snapshots()] == [written.snapshot_id]
    expected = {(entry["bucket"], entry["key"]): data for entry, data in inventory()}
    restored = {}
    reads = RequestCounter(client)
    for entry, stream in reader.restore_objects(written.snapshot_id):
        data = stream.read()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
        restored[(entry["bucket"], entry["key"])] = data
    assert restored == expected
    # Small blobs come from one window of their pack: a handful of GETs, not one per object.
    assert reads.requests[("GetObject", "data")] <= 10
    snapshot = reader.read_snapshot(written.snapshot_id)
    by_key = {entry["key"]: entry for entry in snapshot.objects()}
    assert by_key["copy-of-0"]["blobs"] == by_key["small/0"]["blobs"]
    assert by_key["small/7"]["user_metadata"] == {"owner": "test"}
    assert len(by_key["large.bin"]["blobs"]) == 3  # 8 MiB chunks
    assert (
        reader.open_content(snapshot.files["db/roles.sql"]["blobs"]).read() == b"CREATE ROLE app;\n"
    )
    result = reader.check(read_data=True)
    assert result.ok, result.problems
    assert result.packs_read == len(packs)


def test_a_second_snapshot_of_unchanged_data_adds_no_pack(s3):
    client, bucket, prefix = s3
    first = write_first_snapshot(client, bucket, prefix)
    reader = RepositoryReader(client, bucket, prefix)
    parent_snapshot = reader.read_snapshot(first.snapshot_id)
    parent = ParentObjects(parent_snapshot.objects())
    counter = RequestCounter(client)
    with RepositoryWriter.open(client, bucket, prefix) as writer:
        for entry, _bytes in inventory():
            decision = parent.decide(InventoryRow(entry["bucket"], entry["key"], entry["version"]))
            assert decision.reuse, entry
            assert writer.reuse_object(entry, decision.parent_entry) is not None
        for name, item in parent_snapshot.files.items():
            # The dump is new each run; unchanged bytes still dedup to the same blobs.
            writer.add_file(name, reader.open_content(item["blobs"]))
        second = writer.finish(run_id="run-2", parent=first.snapshot_id)
    assert counter.writes("data") == 0 and counter.writes("index") == 0
    assert counter.writes("snapshots") == 1
    assert second.counts["objects_reused"] == len(inventory()) and second.counts["bytes_added"] == 0
    assert second.size < first.size * 1.05
    assert [info.parent for info in reader.snapshots()] == [None, first.snapshot_id]
    assert RepositoryReader(client, bucket, prefix).check(read_data=True).ok


def test_a_run_killed_after_its_packs_leaves_no_snapshot_and_the_next_run_reuses_them(
    s3, monkeypatch
):
    client, bucket, prefix = s3

    def killed(self):
        raise KeyboardInterrupt("killed between the packs and the index")

    monkeypatch.setattr(RepositoryWriter, "_write_index", killed)
    with pytest.raises(KeyboardInterrupt):
        write_first_snapshot(client, bucket, prefix)
    monkeypatch.undo()
    packs = layout.stored_packs(client, bucket, prefix)
    assert packs  # the packs are there,
    reader = RepositoryReader(client, bucket, prefix)
    assert reader.snapshot_ids() == []  # and no snapshot points at them
    assert reader.check().ok

    counter = RequestCounter(client)
    written = write_first_snapshot(client, bucket, prefix)
    assert written.counts["packs_adopted"] == len(packs)
    assert counter.writes("data") == 0  # nothing uploaded twice
    assert layout.stored_packs(client, bucket, prefix) == packs
    result = RepositoryReader(client, bucket, prefix).check(read_data=True)
    assert result.ok, result.problems
    assert result.packs == len(packs)  # the adopted packs are in this run's index


def test_the_snapshot_write_never_overwrites(s3, monkeypatch):
    client, bucket, prefix = s3
    taken = f"{prefix}repository/snapshots/{'0' * 64}"
    client.put_object(Bucket=bucket, Key=taken, Body=b"someone else's")
    monkeypatch.setattr(layout, "snapshot_key", lambda prefix, snapshot_id: taken)
    with RepositoryWriter.open(client, bucket, prefix) as writer:
        writer.add_object({"bucket": "b", "key": "k", "version": "v"}, io.BytesIO(b"bytes"))
        with pytest.raises(SnapshotKeyTaken, match="never overwritten"):
            writer.finish(run_id="run-1")
    assert client.get_object(Bucket=bucket, Key=taken)["Body"].read() == b"someone else's"


def test_check_with_read_data_finds_a_damaged_pack_and_names_its_snapshot(s3):
    client, bucket, prefix = s3
    snapshots = {}
    for name, data in (("first", b"a" * 3000), ("second", b"b" * 3000)):
        with RepositoryWriter.open(client, bucket, prefix, pack_target_bytes=2048) as writer:
            writer.add_object({"bucket": "b", "key": name, "version": "v"}, io.BytesIO(data))
            snapshots[name] = writer.finish(run_id=name).snapshot_id
    reader = RepositoryReader(client, bucket, prefix)
    (first_blob,) = next(reader.read_snapshot(snapshots["first"]).objects())["blobs"]
    pack_id = reader._load_index()[first_blob].pack_id
    key = layout.pack_key(prefix, pack_id)
    damaged = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    damaged[10] ^= 0xFF  # one byte, same size: only reading the data finds it
    client.put_object(Bucket=bucket, Key=key, Body=bytes(damaged))

    assert RepositoryReader(client, bucket, prefix).check().ok
    result = RepositoryReader(client, bucket, prefix).check(read_data=True)
    assert not result.ok
    assert result.damaged_packs == [pack_id]
    assert result.affected_snapshots == [snapshots["first"]]
    assert any(pack_id in problem and "do not match" in problem for problem in result.problems)
    subset = RepositoryReader(client, bucket, prefix).check(read_data=0.5, seed=1)
    assert subset.packs_read == 1
    with pytest.raises(Exception, match="does not match its id"):
        RepositoryReader(client, bucket, prefix).open_blob(first_blob).read()
    json.dumps(result.__dict__)  # the result is plain data, ready for a CLI's --json
