"""Proof that a plain pg_dump (or pg_dumpall) output is whole, read while its bytes stream past.

An exit status of 0 proves little: a pg_dump that wrote nothing, an output cut short, or a program
that printed something else all exit 0. A plain dump proves itself instead. pg_dump ends it with
the comment line ``-- PostgreSQL database dump complete`` (pg_dumpall: ``-- PostgreSQL database
cluster dump complete``), after which only comments, blank lines and ``\\unrestrict KEY`` follow.
It writes each table's rows as one block::

    -- Data for Name: users; Type: TABLE DATA; Schema: auth; Owner: -
    --

    COPY auth.users (instance_id, id, …) FROM stdin;
    <one line per row: the row's own newlines and backslashes are escaped>
    \\.

so a data line is never ``\\.`` and counting a block's lines counts its rows. ``DumpScanner`` is fed
the chunks the hashing copy already moves (the dump as it is staged, a member as verify reads it):
nothing is read twice, memory holds a bounded head of the current line, and inside a block rows are
counted with ``bytes.count`` per chunk, not line by line in Python, so the scan keeps up with the
hash. A ``COPY`` line counts only as the first statement after a ``TABLE DATA`` entry header, so a
function body that happens to hold such a line is not mistaken for data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from supabase_backup.archive.dump_text import IDENTIFIER, unquote_identifier

DATABASE_TRAILER = "-- PostgreSQL database dump complete"
CLUSTER_TRAILER = "-- PostgreSQL database cluster dump complete"

# The head of a line is all a decision needs (a COPY line's table name comes first; identifiers are
# at most 63 bytes, 130 quoted); a line longer than this is data or DDL either way.
_LINE_HEAD_BYTES = 4096
# One identifier rule for every reader of pg_dump's text (archive.dump_text), here as bytes.
_IDENTIFIER = IDENTIFIER.encode("ascii")
_COPY_LINE = re.compile(rb"COPY (" + _IDENTIFIER + rb")\.(" + _IDENTIFIER + rb") ")
_COPY_LINE_END = b" FROM stdin;"
_TABLE_DATA_ENTRY = re.compile(rb"-- Data for Name: .*; Type: TABLE DATA; Schema: ")
_END_OF_BLOCK = b"\\."
_ROW_THEN_END_OF_BLOCK = b"\n\\.\n"


def _identifier(raw: bytes) -> str:
    return unquote_identifier(raw.decode("utf-8", "replace"))


@dataclass(frozen=True)
class DumpContents:
    """What a scanned dump holds: whether it ended with its trailer, and each COPY block's rows."""

    trailer: str
    bytes: int
    trailer_found: bool
    copy_rows: dict[tuple[str, str], int] = field(default_factory=dict)  # (schema, table) -> rows
    cut_inside: tuple[str, str] | None = None  # the table whose COPY block the stream ended in

    @property
    def rows(self) -> int:
        return sum(self.copy_rows.values())

    def problem(self) -> str | None:
        """Why this is not a whole dump, as a sentence, or None."""
        if self.bytes == 0:
            return "it is empty (0 bytes)"
        if self.cut_inside is not None:
            schema, table = self.cut_inside
            return (
                f"it ends inside the rows of table {schema}.{table} "
                f"(after {self.copy_rows[self.cut_inside]:,} rows and {self.bytes:,} bytes): "
                "the output was cut"
            )
        if not self.trailer_found:
            return (
                f"it does not end with the line '{self.trailer}' ({self.bytes:,} bytes): the "
                "output was cut, or is not pg_dump's"
            )
        return None

    def to_manifest(self) -> dict:
        """The ``dump_check`` record of the manifest (FORMAT.md)."""
        return {"trailer": self.trailer, "copy_blocks": len(self.copy_rows), "copy_rows": self.rows}


class DumpScanner:
    """Feed it a plain dump's bytes in chunks of any size (``feed``), then ``finish``."""

    def __init__(self, trailer: str = DATABASE_TRAILER) -> None:
        self.trailer = trailer
        self._trailer_bytes = trailer.encode()
        self._bytes = 0
        self._trailer_found = False
        self._copy_rows: dict[tuple[str, str], int] = {}
        self._copying: tuple[str, str] | None = None
        self._after_table_data_entry = False
        self._line_head = bytearray()  # the first _LINE_HEAD_BYTES of the line being read
        self._line_tail = b""  # its last bytes, enough to see how a long COPY line ends
        self._line_length = 0  # the whole length so far of the line being read

    def feed(self, data: bytes) -> None:
        self._bytes += len(data)
        position, end = 0, len(data)
        while position < end:
            if self._copying is not None and self._line_length == 0:
                position = self._count_rows(data, position)
                continue
            newline = data.find(b"\n", position)
            if newline < 0:
                self._keep_partial_line(data, position, end)
                return
            self._keep_partial_line(data, position, newline)
            self._end_line()
            position = newline + 1

    def finish(self) -> DumpContents:
        if self._line_length and self._copying is None:  # a last line without its newline
            self._end_line()
        return DumpContents(
            trailer=self.trailer,
            bytes=self._bytes,
            trailer_found=self._trailer_found and self._copying is None,
            copy_rows=dict(self._copy_rows),
            cut_inside=self._copying,
        )

    def _keep_partial_line(self, data: bytes, start: int, stop: int) -> None:
        room = _LINE_HEAD_BYTES - len(self._line_head)
        if room > 0:
            self._line_head += data[start : min(stop, start + room)]
        self._line_tail = (self._line_tail + data[max(start, stop - 16) : stop])[-16:]
        self._line_length += stop - start

    def _count_rows(self, data: bytes, position: int) -> int:
        """Inside a COPY block, at the start of a line: count whole rows up to the block's end or
        the chunk's last newline; returns where the scan goes on."""
        if data.startswith(b"\\.\n", position):
            self._copying = None
            return position + 3
        table = self._copying
        assert table is not None  # called only inside a COPY block
        end_of_block = data.find(_ROW_THEN_END_OF_BLOCK, position)
        if end_of_block >= 0:
            self._copy_rows[table] += data.count(b"\n", position, end_of_block + 1)
            self._copying = None
            return end_of_block + len(_ROW_THEN_END_OF_BLOCK)
        last_newline = data.rfind(b"\n", position)
        if last_newline >= 0:
            self._copy_rows[table] += data.count(b"\n", position, last_newline + 1)
            position = last_newline + 1
        # What is left is the start of a line that continues in the next chunk.
        self._keep_partial_line(data, position, len(data))
        return len(data)

    def _end_line(self) -> None:
        head, tail = bytes(self._line_head), self._line_tail
        whole = self._line_length <= _LINE_HEAD_BYTES
        self._line_head.clear()
        self._line_tail = b""
        self._line_length = 0
        if self._copying is not None:
            if head == _END_OF_BLOCK:
                self._copying = None
            else:
                self._copy_rows[self._copying] += 1
            return
        if whole and head == self._trailer_bytes:
            self._trailer_found = True
            return
        if not head or head.startswith(b"--"):
            if head.startswith(b"-- Data for Name: ") or head.startswith(b"-- Name: "):
                self._after_table_data_entry = bool(_TABLE_DATA_ENTRY.match(head))
            return
        if head.startswith(b"\\unrestrict "):
            return
        # A statement: nothing but comments may follow the trailer.
        self._trailer_found = False
        if self._after_table_data_entry:
            self._after_table_data_entry = False
            match = _COPY_LINE.match(head)
            if match and tail.endswith(_COPY_LINE_END):
                table = (_identifier(match.group(1)), _identifier(match.group(2)))
                self._copy_rows.setdefault(table, 0)
                self._copying = table
