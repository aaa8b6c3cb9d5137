"""Reading pg_dump's plain text: one identifier rule and one line scanner for every restore.

Both restores (``database`` into an empty Postgres, ``supabase`` into a fresh project) read the
same dump the same way: every line is SQL, the header pg_dump writes before each entry
(``-- Name: job; Type: TABLE DATA; Schema: cron; Owner: -``), the start of a ``COPY … FROM stdin;``
block, one of its data rows, or the ``\\.`` that ends it. ``read_dump`` says which, once, so no
reader mistakes a data row that happens to start with ``CREATE EXTENSION`` or ``-- Name:`` for SQL.

Identifiers follow Postgres' own rule (``downcase_identifier`` in scan.l): a double-quoted name is
taken as written, with ``""`` standing for one ``"``; an unquoted one is folded to lower case,
ASCII letters only (a UTF-8 server folds nothing else). pg_dump quotes every name that is not
already lower case, so reading its names this way gives the names as stored.
"""

from __future__ import annotations

import enum
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, NamedTuple

# One identifier: double-quoted (``""`` inside), or a bare word up to the next separator.
IDENTIFIER = r'(?:"(?:[^"]|"")+"|[^\s,;."()]+)'
QUALIFIED_NAME = rf"{IDENTIFIER}(?:\.{IDENTIFIER})?"

CREATE_EXTENSION = re.compile(
    rf"^CREATE EXTENSION (?:IF NOT EXISTS )?(?P<name>{IDENTIFIER})"
    rf"(?: WITH SCHEMA (?P<schema>{IDENTIFIER}))?"
)
ENTRY_HEADER = re.compile(
    r"^-- (?:Data for )?Name: (?P<name>.*); Type: (?P<type>[A-Z ]+); "
    r"Schema: (?P<schema>.*); Owner: (?P<owner>.*)$"
)
COPY_START = re.compile(r"^COPY .* FROM stdin;$")
COPY_HEADER = re.compile(rf"^COPY (?P<table>{QUALIFIED_NAME}) \((?P<columns>.*)\) FROM stdin;$")
COPY_END = "\\."

# Role names a statement may name that are not roles (grammar words and the PUBLIC pseudo-role).
RESERVED_ROLE_NAMES = frozenset({"public", "current_user", "session_user", "current_role"})
_POLICY = re.compile(
    rf"^(?:CREATE|ALTER) POLICY {IDENTIFIER} ON {QUALIFIED_NAME}(?: AS \w+)?(?: FOR \w+)?"
    rf" TO (?P<roles>{IDENTIFIER}(?:, {IDENTIFIER})*)"
)
_GRANT = re.compile(
    rf"^(?:GRANT|REVOKE) .* (?:TO|FROM) (?P<roles>{IDENTIFIER}(?:, {IDENTIFIER})*)"
    r"(?: WITH (?:GRANT|ADMIN) OPTION)?(?: GRANTED BY .*)?;$"
)
_OWNER = re.compile(rf"^ALTER .* OWNER TO (?P<roles>{IDENTIFIER});$")
_DEFAULT_PRIVILEGES = re.compile(rf"^ALTER DEFAULT PRIVILEGES FOR ROLE (?P<roles>{IDENTIFIER})")
# Statements whose roles are read: collected across lines up to their ``;``.
_STATEMENTS_WITH_ROLES = ("CREATE POLICY", "ALTER POLICY", "GRANT ", "REVOKE ", "ALTER ")
# A statement still open after this many lines is not one of those (a long ALTER TABLE): let go.
_MAX_STATEMENT_LINES = 1000

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_COPY_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "\\": "\\"}


# --- identifiers and literals ---------------------------------------------------------------------


def unquote_identifier(identifier: str) -> str:
    """The name an identifier as written in SQL stands for (Postgres' rule, see the module)."""
    identifier = identifier.strip()
    if len(identifier) >= 2 and identifier.startswith('"') and identifier.endswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier.translate(_ASCII_LOWER)


def quote_identifier(name: str) -> str:
    """``name`` as a SQL identifier that means exactly it (always quoted: never folded, never a
    keyword)."""
    return '"' + name.replace('"', '""') + '"'


def identifiers_in(text: str) -> list[str]:
    """The names of the identifiers in a list such as ``a, "B", c`` or ``schema.table``."""
    return [unquote_identifier(identifier) for identifier in re.findall(IDENTIFIER, text)]


def split_qualified(name: str) -> tuple[str | None, str]:
    """(schema, name) of ``schema.name``; (None, name) of an unqualified name."""
    parts = identifiers_in(name)
    return (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])


def quote_literal(value: str | None) -> str:
    """``value`` as a SQL string literal (standard_conforming_strings, as pg_dump sets), or NULL."""
    if value is None:
        return "NULL"
    return "'" + value.replace("'", "''") + "'"


def decode_copy_field(value: str) -> str | None:
    """One field of COPY's text format (``\\N`` is NULL; backslash escapes)."""
    if value == "\\N":
        return None
    return re.sub(r"\\(.)", lambda match: _COPY_ESCAPES.get(match[1], match[1]), value)


def created_extension(text: str) -> tuple[str, str | None] | None:
    """(name, schema or None) of a ``CREATE EXTENSION`` line, else None."""
    match = CREATE_EXTENSION.match(text) if text.startswith("CREATE EXTENSION") else None
    if match is None:
        return None
    schema = match["schema"]
    return unquote_identifier(match["name"]), unquote_identifier(schema) if schema else None


def roles_named_in(statement: str) -> set[str]:
    """The roles a policy, grant, owner or default-privileges statement names (not PUBLIC,
    CURRENT_USER and the like, nor Postgres' own ``pg_…`` roles)."""
    for pattern in (_POLICY, _GRANT, _OWNER, _DEFAULT_PRIVILEGES):
        match = pattern.match(statement)
        if match:
            return {
                role
                for role in identifiers_in(match["roles"])
                if role not in RESERVED_ROLE_NAMES and not role.startswith("pg_")
            }
    return set()


# --- the line scanner -----------------------------------------------------------------------------


class LineKind(enum.Enum):
    SQL = "sql"  # a statement's line, a blank line or a comment
    ENTRY_HEADER = "entry header"  # ``-- Name: …; Type: …; Schema: …; Owner: …``
    COPY_START = "copy start"  # ``COPY table (columns) FROM stdin;``
    COPY_ROW = "copy row"  # one row of COPY data
    COPY_END = "copy end"  # the ``\.`` after the rows


class EntryHeader(NamedTuple):
    name: str
    type: str
    schema: str  # ``-`` for an entry outside any schema
    owner: str


class CopyTarget(NamedTuple):
    table: tuple[str | None, str] | None  # (schema, table); None when the header does not parse
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DumpLine:
    line: str  # as read, with its newline: what a filter passes on
    text: str  # without the newline
    kind: LineKind
    entry: EntryHeader | None = None  # on ENTRY_HEADER lines
    copy: CopyTarget | None = None  # on COPY_START, COPY_ROW and COPY_END lines: their COPY
    # With ``statements=True``: the whole policy, grant or owner statement, on the line ending it.
    statement: str | None = None


def _copy_target(text: str) -> CopyTarget:
    header = COPY_HEADER.match(text)
    if header is None:
        return CopyTarget(None, ())
    return CopyTarget(split_qualified(header["table"]), tuple(identifiers_in(header["columns"])))


def read_dump(lines: Iterable[str], *, statements: bool = False) -> Iterator[DumpLine]:
    """Every line of a plain dump with what it is. ``statements`` also joins the lines of each
    statement roles are read from (``roles_named_in``) and hands it over on its last line."""
    copy: CopyTarget | None = None
    pending: list[str] = []
    for line in lines:
        text = line.rstrip("\n")
        if copy is not None:
            if text == COPY_END:
                yield DumpLine(line, text, LineKind.COPY_END, copy=copy)
                copy = None
            else:
                yield DumpLine(line, text, LineKind.COPY_ROW, copy=copy)
            continue
        if COPY_START.match(text):
            copy = _copy_target(text)
            yield DumpLine(line, text, LineKind.COPY_START, copy=copy)
            continue
        entry = None
        if text.startswith("-- ") and (header := ENTRY_HEADER.match(text)):
            entry = EntryHeader(header["name"], header["type"], header["schema"], header["owner"])
        kind = LineKind.SQL if entry is None else LineKind.ENTRY_HEADER
        statement = None
        if statements and (pending or text.startswith(_STATEMENTS_WITH_ROLES)):
            pending.append(text)
            if text.endswith(";"):
                statement = " ".join(pending)
                pending = []
            elif len(pending) > _MAX_STATEMENT_LINES:
                pending = []
        yield DumpLine(line, text, kind, entry=entry, statement=statement)


def open_text(binary: IO[bytes]) -> IO[str]:
    """A dump member as text, split only at \\n and written back byte for byte."""
    return io.TextIOWrapper(binary, encoding="utf-8", newline="\n")
