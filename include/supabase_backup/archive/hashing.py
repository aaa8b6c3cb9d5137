"""sha256 while bytes stream past: every file this tool writes or reads back is hashed in the same
pass that moves it, never read a second time just to hash it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import IO, Any, Protocol

CHUNK_SIZE = 1024 * 1024


class BinarySink(Protocol):
    """Anything bytes can be written to: a file, an S3 multipart upload, a local file by fd."""

    def write(self, data: bytes, /) -> Any: ...

    def flush(self) -> Any: ...


class HashingWriter:
    """A write-only, non-seekable file object that hashes and counts what passes through to ``sink``.

    Non-seekable on purpose: zipfile then writes in one pass (data descriptors after each member),
    so an archive's sha256 is known the moment it is written.
    """

    def __init__(self, sink: BinarySink | None) -> None:
        self._sink = sink
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        if self._sink is not None:
            self._sink.write(data)
        self._digest.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def seekable(self) -> bool:
        return False

    def seek(self, *args):
        raise OSError("not seekable")

    def flush(self) -> None:
        if self._sink is not None:
            self._sink.flush()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def copy_hashing(
    source: IO[bytes],
    sink: BinarySink | None = None,
    *,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[int, str]:
    """Copy ``source`` to ``sink`` (or just read it, with no sink); returns (size, sha256)."""
    writer = HashingWriter(sink)
    copy_into(source, writer, on_chunk=on_chunk)
    return writer.size, writer.sha256


def copy_into(
    source: IO[bytes], writer: HashingWriter, *, on_chunk: Callable[[int], None] | None = None
) -> None:
    """Copy ``source`` through a HashingWriter that may already hold earlier bytes (a sample)."""
    while chunk := source.read(CHUNK_SIZE):
        writer.write(chunk)
        if on_chunk is not None:
            on_chunk(writer.size)
