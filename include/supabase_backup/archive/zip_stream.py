"""A zip writer and reader whose memory does not grow with the number of members.

Python's ``zipfile`` keeps a ``ZipInfo`` per member for the life of the archive (about 0.6 KB each:
600 MB at a million objects), on the write side for the central directory and on the read side for
its name lookup. Here:

- ``StreamingZipWriter`` writes each member in one pass (local header, data, data descriptor) to any
  object with ``write`` — a file, a hashing writer, a multipart upload — and spills each central
  directory entry to a temporary file, copied to the output at ``close``. ZIP64 records are written
  where a size, an offset or the count needs them, exactly as APPNOTE 4.5 describes, so ``unzip``,
  ``zipfile`` and every other reader read the result.
- ``ZipReader`` finds the end records, iterates the central directory from the file (one entry at a
  time, never a list) and streams one member's bytes, checking its CRC-32.

Both keep only what the current member needs.
"""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

STORED = 0
DEFLATED = 8
_FLAG_DATA_DESCRIPTOR = 0x08
_FLAG_UTF8 = 0x800
_LIMIT_32 = 0xFFFFFFFF
_LIMIT_16 = 0xFFFF
_UNIX = 3
_VERSION_DEFAULT = 20
_VERSION_ZIP64 = 45

_LOCAL_HEADER = struct.Struct("<4sHHHHHLLLHH")
_CENTRAL_ENTRY = struct.Struct("<4sBBBBHHHHLLLHHHHHLL")
_END = struct.Struct("<4sHHHHLLH")
_END64 = struct.Struct("<4sQHHLLQQQQ")
_END64_LOCATOR = struct.Struct("<4sLQL")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_END_SIGNATURE = b"PK\x05\x06"
_END64_SIGNATURE = b"PK\x06\x06"
_END64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
_COPY_CHUNK = 1024 * 1024


class ZipDamaged(Exception):
    """The bytes are not a zip this reader can read, or a member does not match its CRC."""


def _dos_date_time(date_time: tuple) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    return (hour << 11) | (minute << 5) | (second // 2), ((year - 1980) << 9) | (month << 5) | day


try:  # ISA-L's deflate: a standard deflate stream, measured 8-20x faster than zlib level 6 here
    from isal import isal_zlib
except ImportError:  # pragma: no cover - isal is pinned in requirements.txt
    isal_zlib = None  # type: ignore[assignment]

# isal level 2 (of 0-3). bench/README.md: on a medium tree the archive is 1% larger than zip -r's
# and built 7x faster; a pg_dump-like text alone deflates 12% larger than zlib's level 6 at 20x
# the speed (the dump is the member that costs most CPU).
ISAL_LEVEL = 2


def zlib_compressor():
    """zipfile's ZIP_DEFLATED stream: raw deflate at zlib's default level (6)."""
    return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)


def isal_compressor():
    return isal_zlib.compressobj(ISAL_LEVEL, isal_zlib.DEFLATED, -15)


def _default_compressor():
    return isal_compressor() if isal_zlib is not None else zlib_compressor()


class _MemberSink:
    """What one member's bytes are written to: counts, CRC-32 and (for deflate) compresses."""

    # (name, flags, method, DOS time, DOS date, header offset, ZIP64, version), set by add_member.
    _header: tuple

    def __init__(self, writer: StreamingZipWriter, compressor) -> None:
        self._writer = writer
        self._compressor = compressor
        self.size = 0
        self.compressed_size = 0
        self.crc = 0

    def write(self, data) -> int:
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)
        if self._compressor is not None:
            data = self._compressor.compress(data)
        if data:
            self.compressed_size += len(data)
            self._writer._emit(data)
        return self.size

    def _finish(self) -> None:
        if self._compressor is not None:
            tail = self._compressor.flush()
            self.compressed_size += len(tail)
            self._writer._emit(tail)


class StreamingZipWriter:
    """Write a zip to ``output`` (only ``write`` is used) with the central directory spilled to a
    temporary file in ``spill_folder`` (the system's temporary folder by default).

    ``compressor_factory`` returns a raw-deflate compressor (``compress``/``flush``): ISA-L's when
    installed, else zlib's; any deflate encoder gives a standard zip.
    """

    def __init__(self, output: IO[bytes], *, spill_folder=None, compressor_factory=None) -> None:
        self._output = output
        self._offset = 0
        self._count = 0
        self._central = tempfile.TemporaryFile(dir=spill_folder)
        self._central_size = 0
        self._compressor_factory = compressor_factory or _default_compressor
        self._open_member = False
        self._closed = False

    @property
    def bytes_written(self) -> int:
        return self._offset

    def _emit(self, data) -> None:
        self._output.write(data)
        self._offset += len(data)

    def add(
        self,
        name: str,
        chunks,
        *,
        date_time: tuple,
        deflate: bool,
        large: bool = False,
        mode: int = 0o644,
    ) -> _MemberSink:
        """Write one member from an iterable of byte chunks; returns its sink (size, crc, …)."""
        sink = self.begin(name, date_time=date_time, deflate=deflate, large=large)
        for chunk in chunks:
            sink.write(chunk)
        self.end(sink, mode=mode)
        return sink

    def begin(self, name: str, *, date_time: tuple, deflate: bool, large: bool = False):
        """Start a member; write its bytes to the returned sink, then call ``end(sink)``.
        ``large``: the member may reach 4 GiB, so its local header and descriptor are ZIP64."""
        if self._open_member or self._closed:
            raise ValueError("one member at a time, before close")
        encoded = name.encode("utf-8")
        flags = _FLAG_DATA_DESCRIPTOR | (0 if name.isascii() else _FLAG_UTF8)
        method = DEFLATED if deflate else STORED
        dos_time, dos_date = _dos_date_time(date_time)
        extra = b""
        sizes = 0
        if large:
            extra = struct.pack("<HHQQ", 1, 16, 0, 0)
            sizes = _LIMIT_32
        version = _VERSION_ZIP64 if large else _VERSION_DEFAULT
        sink = _MemberSink(self, self._compressor_factory() if deflate else None)
        sink._header = (encoded, flags, method, dos_time, dos_date, self._offset, large, version)
        self._emit(
            _LOCAL_HEADER.pack(
                _LOCAL_SIGNATURE,
                version,
                flags,
                method,
                dos_time,
                dos_date,
                0,
                sizes,
                sizes,
                len(encoded),
                len(extra),
            )
            + encoded
            + extra
        )
        self._open_member = True
        return sink

    def end(self, sink: _MemberSink, *, mode: int = 0o644) -> None:
        sink._finish()
        encoded, flags, method, dos_time, dos_date, offset, large, version = sink._header
        if not large and (sink.size >= _LIMIT_32 or sink.compressed_size >= _LIMIT_32):
            raise ValueError(f"member {encoded!r} reached 4 GiB without large=True")
        if large:
            descriptor = struct.pack(
                "<4sLQQ", _DESCRIPTOR_SIGNATURE, sink.crc, sink.compressed_size, sink.size
            )
        else:
            descriptor = struct.pack(
                "<4sLLL", _DESCRIPTOR_SIGNATURE, sink.crc, sink.compressed_size, sink.size
            )
        self._emit(descriptor)
        zip64_fields = []
        size_field = sink.size
        compressed_field = sink.compressed_size
        offset_field = offset
        if sink.size >= _LIMIT_32:
            zip64_fields.append(sink.size)
            size_field = _LIMIT_32
        if sink.compressed_size >= _LIMIT_32:
            zip64_fields.append(sink.compressed_size)
            compressed_field = _LIMIT_32
        if offset >= _LIMIT_32:
            zip64_fields.append(offset)
            offset_field = _LIMIT_32
        extra = b""
        if zip64_fields:
            extra = struct.pack(f"<HH{len(zip64_fields)}Q", 1, 8 * len(zip64_fields), *zip64_fields)
            version = _VERSION_ZIP64
        entry = (
            _CENTRAL_ENTRY.pack(
                _CENTRAL_SIGNATURE,
                version,
                _UNIX,
                version,
                0,
                flags,
                method,
                dos_time,
                dos_date,
                sink.crc,
                compressed_field,
                size_field,
                len(encoded),
                len(extra),
                0,
                0,
                0,
                (0o100000 | mode) << 16,
                offset_field,
            )
            + encoded
            + extra
        )
        self._central.write(entry)
        self._central_size += len(entry)
        self._count += 1
        self._open_member = False

    def close(self) -> None:
        """Copy the central directory after the members and write the end records."""
        if self._closed:
            return
        if self._open_member:
            raise ValueError("a member is still open")
        central_offset = self._offset
        self._central.seek(0)
        while chunk := self._central.read(_COPY_CHUNK):
            self._emit(chunk)
        self._central.close()
        count, size = self._count, self._central_size
        if count >= _LIMIT_16 or central_offset >= _LIMIT_32 or size >= _LIMIT_32:
            end64_offset = self._offset
            self._emit(
                _END64.pack(
                    _END64_SIGNATURE,
                    _END64.size - 12,
                    _VERSION_ZIP64,
                    _VERSION_ZIP64,
                    0,
                    0,
                    count,
                    count,
                    size,
                    central_offset,
                )
            )
            self._emit(_END64_LOCATOR.pack(_END64_LOCATOR_SIGNATURE, 0, end64_offset, 1))
        self._emit(
            _END.pack(
                _END_SIGNATURE,
                0,
                0,
                min(count, _LIMIT_16),
                min(count, _LIMIT_16),
                min(size, _LIMIT_32),
                min(central_offset, _LIMIT_32),
                0,
            )
        )
        self._closed = True

    def __enter__(self) -> StreamingZipWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self._central.close()


@dataclass(frozen=True)
class ZipEntry:
    """One central directory entry."""

    name: str
    method: int
    flags: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int


class ZipReader:
    """Read a zip from a seekable binary file without holding its central directory: ``entries``
    yields one entry at a time from the file, ``open`` streams one member."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        try:
            self.count, self._central_size, self._central_offset = self._find_central_directory()
        except (struct.error, OSError) as error:
            raise ZipDamaged(f"no readable end of central directory ({error})") from None

    def _find_central_directory(self) -> tuple[int, int, int]:
        file = self._file
        total = file.seek(0, 2)
        tail_size = min(total, _END.size + _LIMIT_16)
        file.seek(total - tail_size)
        tail = file.read(tail_size)
        position = tail.rfind(_END_SIGNATURE)
        if position < 0 or len(tail) - position < _END.size:
            raise ZipDamaged("no end of central directory record: not a zip file, or a cut one")
        _, _, _, _, count, size, offset, _ = _END.unpack_from(tail, position)
        end_offset = total - tail_size + position
        locator_at = position - _END64_LOCATOR.size
        if locator_at >= 0 and tail[locator_at : locator_at + 4] == _END64_LOCATOR_SIGNATURE:
            _, _, end64_offset, _ = _END64_LOCATOR.unpack_from(tail, locator_at)
            file.seek(end64_offset)
            record = file.read(_END64.size)
            if len(record) != _END64.size or record[:4] != _END64_SIGNATURE:
                raise ZipDamaged("the ZIP64 end record is missing")
            _, _, _, _, _, _, _, count, size, offset = _END64.unpack(record)
            end_offset = end64_offset
        if offset + size > end_offset:
            raise ZipDamaged("the central directory lies beyond the end of the file (a cut zip?)")
        return count, size, offset

    def entries(self) -> Iterator[ZipEntry]:
        """Every central directory entry in stored order, read from the file as it goes."""
        self._central_position = self._central_offset
        buffer = b""
        at = 0  # where the next entry starts in buffer; the buffer is only cut when refilled
        fixed = _CENTRAL_ENTRY.size
        for _ in range(self.count):
            if len(buffer) - at < fixed:
                buffer, at = self._refill(buffer, at), 0
            fields = _CENTRAL_ENTRY.unpack_from(buffer, at)
            if fields[0] != _CENTRAL_SIGNATURE:
                raise ZipDamaged("a central directory entry has a bad signature")
            (
                _,
                _,
                _,
                _,
                _,
                flags,
                method,
                _,
                _,
                crc,
                compressed,
                size,
                name_length,
                extra_length,
                comment_length,
                _,
                _,
                _,
                offset,
            ) = fields
            entry_length = fixed + name_length + extra_length + comment_length
            while len(buffer) - at < entry_length:
                buffer, at = self._refill(buffer, at), 0
            raw_name = buffer[at + fixed : at + fixed + name_length]
            extra = buffer[at + fixed + name_length : at + fixed + name_length + extra_length]
            at += entry_length
            if _LIMIT_32 in (size, compressed, offset):
                size, compressed, offset = _apply_zip64_extra(extra, size, compressed, offset)
            name = raw_name.decode("utf-8" if flags & _FLAG_UTF8 else "cp437")
            yield ZipEntry(name, method, flags, crc, compressed, size, offset)

    def _refill(self, buffer: bytes, at: int) -> bytes:
        # Seek each time: members may be read from the same file between two entries.
        self._file.seek(self._central_position)
        chunk = self._file.read(_COPY_CHUNK)
        self._central_position += len(chunk)
        if not chunk:
            raise ZipDamaged("the central directory ends early")
        return buffer[at:] + chunk

    def open(self, entry: ZipEntry) -> MemberReader:
        return MemberReader(self._file, entry)


def _apply_zip64_extra(extra: bytes, size: int, compressed: int, offset: int):
    position = 0
    while position + 4 <= len(extra):
        header_id, length = struct.unpack_from("<HH", extra, position)
        if header_id == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, position + 4))
            if size == _LIMIT_32:
                size = values.pop(0)
            if compressed == _LIMIT_32:
                compressed = values.pop(0)
            if offset == _LIMIT_32:
                offset = values.pop(0)
            return size, compressed, offset
        position += 4 + length
    raise ZipDamaged("a ZIP64 size or offset lacks its extra field")


class SeekableSource(Protocol):
    """What a member is read from: a file, or a view that shares one file between readers."""

    def seek(self, offset: int, whence: int = ..., /) -> int: ...

    def read(self, size: int, /) -> bytes: ...  # MemberReader always asks for a size


class MemberReader(io.RawIOBase):
    """A member's uncompressed bytes, streamed; ``read`` raises ZipDamaged at the end when the
    size or CRC-32 differs from the central directory's. Seeks before every read, so several
    readers (and the central directory iteration) may share one file."""

    def __init__(self, file: SeekableSource, entry: ZipEntry) -> None:
        super().__init__()
        self._file = file
        self.entry = entry
        file.seek(entry.header_offset)
        header = file.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
            raise ZipDamaged(f"member {entry.name!r} has no local header where the directory says")
        name_length, extra_length = struct.unpack_from("<HH", header, 26)
        self._position = entry.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        self._left = entry.compressed_size
        if entry.method == DEFLATED:
            self._decompressor: Any = zlib.decompressobj(-15)
        elif entry.method == STORED:
            self._decompressor = None
        else:
            raise ZipDamaged(f"member {entry.name!r} uses compression method {entry.method}")
        self._crc = 0
        self._size = 0
        self._pending = b""
        self._done = False

    def _next_chunk(self) -> bytes:
        while not self._done:
            if self._decompressor is not None and self._decompressor.unconsumed_tail:
                # Input the last call left unused, to keep each chunk within _COPY_CHUNK.
                data = self._inflate(self._decompressor.unconsumed_tail)
            elif self._left == 0:
                tail = self._decompressor.flush() if self._decompressor else b""
                self._done = True
                self._account(tail)
                if self._size != self.entry.size or self._crc != self.entry.crc:
                    raise ZipDamaged(
                        f"member {self.entry.name!r}: {self._size} bytes, CRC "
                        f"{self._crc:08x}; the directory says {self.entry.size}, "
                        f"{self.entry.crc:08x}"
                    )
                return tail
            else:
                self._file.seek(self._position)
                raw = self._file.read(min(self._left, _COPY_CHUNK))
                if not raw:
                    raise ZipDamaged(f"member {self.entry.name!r} is cut short")
                self._position += len(raw)
                self._left -= len(raw)
                data = self._inflate(raw) if self._decompressor is not None else raw
            self._account(data)
            if data:
                return data
        return b""

    def _inflate(self, raw: bytes) -> bytes:
        """At most _COPY_CHUNK bytes of output per call whatever the ratio (1 MiB of deflate can
        hold 1 GiB of zeros); the input not yet used waits in ``unconsumed_tail``."""
        try:
            return self._decompressor.decompress(raw, _COPY_CHUNK)
        except zlib.error as error:
            raise ZipDamaged(f"member {self.entry.name!r}: {error}") from None

    def _account(self, data: bytes) -> None:
        if data:
            self._crc = zlib.crc32(data, self._crc)
            self._size += len(data)
            if self._size > self.entry.size:
                raise ZipDamaged(
                    f"member {self.entry.name!r} holds more than its {self.entry.size} bytes"
                )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._pending:
            self._pending = self._next_chunk()
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def chunks(self) -> Iterator[bytes]:
        if self._pending:
            yield self._pending
            self._pending = b""
        while chunk := self._next_chunk():
            yield chunk
