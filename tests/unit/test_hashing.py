import hashlib
import io

from supabase_backup.archive.hashing import HashingWriter, copy_hashing


def test_copy_hashing_copies_counts_and_hashes():
    data = bytes(range(256)) * 10_000
    sink = io.BytesIO()
    seen = []
    assert copy_hashing(io.BytesIO(data), sink, on_chunk=seen.append) == (
        len(data), hashlib.sha256(data).hexdigest())
    assert sink.getvalue() == data and seen[-1] == len(data)


def test_hash_only_and_empty_input():
    assert copy_hashing(io.BytesIO(b"")) == (0, hashlib.sha256(b"").hexdigest())
    writer = HashingWriter(None)
    writer.write(b"abc")
    assert (writer.tell(), writer.sha256, writer.seekable()) == (3, hashlib.sha256(b"abc").hexdigest(), False)
