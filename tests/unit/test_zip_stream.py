"""zip_stream's writer makes zips that zipfile and unzip read; its reader reads them (and zipfile's)
back member by member; ZIP64 is written where counts, sizes or offsets need it."""

import io
import os
import shutil
import subprocess
import zipfile
from dataclasses import replace

import pytest

from supabase_backup.archive.zip_stream import StreamingZipWriter, ZipDamaged, ZipReader

DATE = (2026, 1, 2, 3, 4, 6)


def build(members, **options):
    output = io.BytesIO()
    with StreamingZipWriter(output, **options) as writer:
        for name, (data, deflate) in members.items():
            writer.add(name, [data[:7], data[7:]], date_time=DATE, deflate=deflate)
    return output.getvalue()


MEMBERS = {
    "manifest.json": (b'{"a": 1}\n' * 50, True),
    "db/backup.sql": (b"INSERT INTO t VALUES (1);\n" * 1000, True),
    "storage/b/caf\u00e9 \u2603.bin": (os.urandom(5000), False),
    "storage/b/empty": (b"", True),
}


def test_zipfile_and_unzip_read_what_the_writer_wrote(tmp_path):
    data = build(MEMBERS)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == list(MEMBERS)
        for name, (content, deflate) in MEMBERS.items():
            assert archive.read(name) == content
            info = archive.getinfo(name)
            assert info.compress_type == (zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
            assert info.date_time == DATE and info.external_attr >> 16 == 0o100644
    if shutil.which("unzip"):
        path = tmp_path / "a.zip"
        path.write_bytes(data)
        subprocess.run(["unzip", "-tq", str(path)], check=True, capture_output=True)


def test_the_reader_streams_every_member_of_its_own_and_zipfiles_zips():
    data = build(MEMBERS)
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (content, _) in MEMBERS.items():
            archive.writestr(name, content)
    for blob in (data, other.getvalue()):
        reader = ZipReader(io.BytesIO(blob))
        entries = list(reader.entries())
        assert [entry.name for entry in entries] == list(MEMBERS)
        for entry in entries:
            assert reader.open(entry).read() == MEMBERS[entry.name][0]


def test_more_than_65535_members_get_zip64_end_records():
    members = {f"storage/b/{number}": (b"x%d" % number, False) for number in range(70_000)}
    output = io.BytesIO()
    with StreamingZipWriter(output) as writer:
        for name, (content, _) in members.items():
            writer.add(name, [content], date_time=DATE, deflate=False)
    data = output.getvalue()
    assert b"PK\x06\x06" in data[-200:]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert len(archive.infolist()) == 70_000
        assert archive.read("storage/b/69999") == b"x69999"
    reader = ZipReader(io.BytesIO(data))
    assert reader.count == 70_000
    last = None
    for last in reader.entries():
        pass
    assert last.name == "storage/b/69999" and reader.open(last).read() == b"x69999"


class SparseZeros:
    """A file sink that turns zero chunks into holes, so a 4 GiB member costs no disk."""

    def __init__(self, file):
        self.file = file

    def write(self, data):
        if not data.strip(b"\0"):
            self.file.seek(len(data), 1)
        else:
            self.file.write(data)
        return len(data)


def test_offsets_and_sizes_past_4_gib_use_zip64_fields(tmp_path):
    path = tmp_path / "big.zip"
    size = (1 << 32) + 10
    chunk = bytes(16 * 2**20)
    with path.open("wb") as file, StreamingZipWriter(SparseZeros(file)) as writer:
        writer.add("first", [b"before"], date_time=DATE, deflate=False)
        sink = writer.begin("zeros", date_time=DATE, deflate=False, large=True)
        left = size
        while left:
            sink.write(chunk[:min(left, len(chunk))])
            left -= min(left, len(chunk))
        writer.end(sink)
        writer.add("after", [b"past 4 GiB"], date_time=DATE, deflate=True)
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("zeros").file_size == size
        assert archive.getinfo("after").header_offset > 1 << 32
        assert archive.read("after") == b"past 4 GiB"
    with path.open("rb") as file:
        reader = ZipReader(file)
        entries = {entry.name: entry for entry in reader.entries()}
        assert entries["zeros"].size == size and entries["after"].header_offset > 1 << 32
        assert reader.open(entries["after"]).read() == b"past 4 GiB"


def test_a_changed_byte_or_a_cut_file_is_reported():
    data = bytearray(build(MEMBERS))
    reader = ZipReader(io.BytesIO(bytes(data)))
    entry = next(e for e in reader.entries() if e.name.endswith(".bin"))
    data[entry.header_offset + 30 + len(entry.name.encode()) + 100] ^= 1
    reader = ZipReader(io.BytesIO(bytes(data)))
    entry = next(e for e in reader.entries() if e.name.endswith(".bin"))
    with pytest.raises(ZipDamaged, match="CRC"):
        reader.open(entry).read()
    for keep in (len(data) - 5, len(data) // 2, 10):
        with pytest.raises(ZipDamaged):
            list(ZipReader(io.BytesIO(bytes(data[:keep]))).entries())


def test_a_highly_compressed_member_is_read_in_bounded_chunks():
    # 64 MiB of zeros deflate to about 64 KiB: one read of the compressed bytes must not inflate
    # the whole member at once.
    block = bytes(1024 * 1024)
    output = io.BytesIO()
    with StreamingZipWriter(output) as writer:
        writer.add("zeros", (block for _ in range(64)), date_time=DATE, deflate=True)
    reader = ZipReader(io.BytesIO(output.getvalue()))
    entry = next(reader.entries())
    assert entry.compressed_size < 1024 * 1024
    sizes = [len(chunk) for chunk in reader.open(entry).chunks()]
    assert sum(sizes) == 64 * len(block) and max(sizes) <= 1024 * 1024
    # The size and CRC are still checked at the end of the last chunk.
    for wrong in (replace(entry, crc=entry.crc ^ 1), replace(entry, size=entry.size + 1)):
        with pytest.raises(ZipDamaged, match="the directory says"):
            for _ in reader.open(wrong).chunks():
                pass
