"""Exact figures of every table: its row count and a content checksum, computed by Postgres.

The backup computes them inside the dump's snapshot (``database.dump_database``) and records them in
the manifest's ``database.tables``; a restore and the restore drill compute the same figures on the
restored database and compare. Equal figures mean the restored table holds the same rows, row for row.

The checksum of a table is ``sum(hashtextextended(t::text, 0))``: the exact (numeric) sum of a
64-bit hash of each row's text. A sum does not depend on the order rows are read in, so it is
independent of the database's collation (a scratch server with another default collation would
order text keys differently), of whether the table has a primary key, and it counts duplicate rows.
``hashtextextended`` is the function hash partitioning relies on, so Postgres keeps it the same
across major versions (a backup of 15 compares with a restore into 17). It replaced the first
method, ``md5(string_agg(md5(t::text), '' ORDER BY md5(t::text) COLLATE "C"))``, which sorted every
row's md5 and took about 4 times as long as pg_dump on pgbench scale 20 (8.5 s against 1.1 s for
2M rows); archives recording that method are still checked with it (``METHODS``). A sum of 64-bit
hashes catches accidental loss or change (a collision is about 2**-64), not a forged table. A row's
text depends on a few session settings (time zone, date and interval styles, float digits, bytea
output); ``SESSION_SETTINGS`` pins them on both sides.

Tables larger than ``max_bytes`` (``pg_total_relation_size``) get a count only: the checksum reads
every row. Tables owned by an extension whose data pg_dump does not dump (not in the
extension's ``extconfig``) are left out: a restore recreates them empty by design.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from supabase_backup.units import format_bytes

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2**30
# The manifest records the method by name (database.exact_figures.method); each maps to its query.
SORTED_MD5_METHOD = "md5(string_agg(md5(row::text), '' ORDER BY md5(row::text) COLLATE \"C\"))"
HASH_SUM_METHOD = "sum(hashtextextended(row::text, 0))"
METHODS = {
    HASH_SUM_METHOD: "SELECT count(*), COALESCE(sum(hashtextextended(t::text, 0)), 0)::text "
    "FROM {} AS t",
    SORTED_MD5_METHOD: "SELECT count(*), md5(COALESCE(string_agg(md5(t::text), '' "
    "ORDER BY md5(t::text) COLLATE \"C\"), '')) FROM {} AS t",
}
CHECKSUM_METHOD = HASH_SUM_METHOD  # what new backups record

# Pinned for the transaction (SET LOCAL), so a row's text is the same on the backup's server and
# on any restore target.
SESSION_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
}

TABLES_SQL = """
SELECT n.nspname, c.relname, pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
  AND NOT EXISTS (  -- an extension's own table whose rows pg_dump leaves out
      SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
        AND d.refclassid = 'pg_extension'::regclass
        AND NOT (c.oid = ANY(COALESCE(e.extconfig, '{}'::oid[]))))
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class TableFigures:
    schema: str
    table: str
    rows: int
    checksum: Any  # as the method's SQL gives it (text for md5 sums); None: not taken
    bytes: int
    checksum_skipped: str | None = None

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    def to_manifest(self) -> dict:
        entry = {
            "schema": self.schema,
            "table": self.table,
            "rows": self.rows,
            "checksum": self.checksum,
            "bytes": self.bytes,
        }
        if self.checksum_skipped:
            entry["checksum_skipped"] = self.checksum_skipped
        return entry


def pin_session_settings(connection) -> None:
    """SET LOCAL every setting a row's text depends on (inside the current transaction)."""
    for name, value in SESSION_SETTINGS.items():
        connection.execute(
            sql.SQL("SELECT set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value))
        )


def table_figures(
    connection,
    schema: str,
    table: str,
    size: int,
    max_bytes: int,
    checksum: bool | None = None,
    method: str = CHECKSUM_METHOD,
) -> TableFigures:
    """One table's figures; ``checksum`` True/False overrides the size rule (a restore computes a
    checksum exactly where the backup recorded one)."""
    relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    if checksum is False or (checksum is None and size > max_bytes):
        rows = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(relation)).fetchone()[0]
        return TableFigures(
            schema,
            table,
            rows,
            None,
            size,
            f"larger than {format_bytes(max_bytes)} ({format_bytes(size)}): "
            "count only (Variable supabase_backup_exact_figures_max_bytes)",
        )
    figures = connection.execute(sql.SQL(METHODS[method]).format(relation)).fetchone()
    assert figures is not None  # an aggregate over the table returns one row
    rows, checksum = figures
    return TableFigures(schema, table, rows, checksum, size)


def compute_figures(
    connection,
    max_bytes: int = DEFAULT_MAX_BYTES,
    checksum_tables: set[str] | None = None,
    method: str = CHECKSUM_METHOD,
) -> list[TableFigures]:
    """Figures of every table, in the connection's current transaction (the caller's snapshot).

    ``checksum_tables`` (``schema.table`` names), when given, replaces the size rule: exactly those
    tables get a checksum, computed with ``method`` (one of ``METHODS``: a restore uses the one
    its archive recorded). Pins the session settings with SET LOCAL, so the caller's transaction
    must be open (``autocommit=False``)."""
    if method not in METHODS:
        raise ValueError(f"unknown checksum method {method!r} (known: {', '.join(METHODS)})")
    started = time.monotonic()
    pin_session_settings(connection)
    tables = connection.execute(TABLES_SQL).fetchall()
    figures = [
        table_figures(
            connection,
            schema,
            table,
            size,
            max_bytes,
            None if checksum_tables is None else f"{schema}.{table}" in checksum_tables,
            method,
        )
        for schema, table, size in tables
    ]
    log.info(
        "Exact figures of %d tables (%s rows, %d count only) in %.1f s",
        len(figures),
        f"{sum(item.rows for item in figures):,}",
        sum(1 for item in figures if item.checksum is None),
        time.monotonic() - started,
    )
    return figures


def compute_figures_of(
    settings,
    max_bytes: int = DEFAULT_MAX_BYTES,
    checksum_tables: set[str] | None = None,
    method: str = CHECKSUM_METHOD,
) -> list[TableFigures]:
    """Figures of every table of the database ``settings`` (a DatabaseSettings) points at, in one
    repeatable-read transaction of their own."""

    with settings.connect(autocommit=False) as connection:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        figures = compute_figures(connection, max_bytes, checksum_tables, method)
        connection.rollback()
    return figures


@dataclass
class Comparison:
    """Recorded figures against a restored database's."""

    compared: int = 0
    rows: int = 0
    checksums_compared: int = 0
    differences: list[str] = field(default_factory=list)  # one line per table that differs
    not_compared: list[str] = field(default_factory=list)  # tables left out on purpose, with why

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict:
        return {
            "tables_compared": self.compared,
            "rows_compared": self.rows,
            "checksums_compared": self.checksums_compared,
            "differences": self.differences,
            "not_compared": self.not_compared,
        }


def compare_figures(
    recorded: list[dict],
    restored: list[TableFigures],
    *,
    not_compared_schemas: dict[str, str] | None = None,
) -> Comparison:
    """Compare the manifest's ``database.tables`` entries with figures of a restored database.

    ``not_compared_schemas`` maps a schema to the reason its tables are left out (an extension the
    restore target lacks). Entries without ``rows`` (archives from before exact figures) cannot
    be compared and are listed as such."""
    not_compared_schemas = not_compared_schemas or {}
    found = {item.name: item for item in restored}
    result = Comparison()
    for entry in recorded:
        name = f"{entry['schema']}.{entry['table']}"
        if entry["schema"] in not_compared_schemas:
            result.not_compared.append(f"{name}: {not_compared_schemas[entry['schema']]}")
            continue
        if entry.get("rows") is None:
            result.not_compared.append(f"{name}: the manifest has no exact figures for it")
            continue
        result.compared += 1
        mine = found.get(name)
        if mine is None:
            result.differences.append(
                f"{name}: missing from the restored database (backup has {entry['rows']:,} rows)"
            )
            continue
        result.rows += mine.rows
        if mine.rows != entry["rows"]:
            result.differences.append(
                f"{name}: {mine.rows:,} rows restored, {entry['rows']:,} at dump time"
            )
        elif entry.get("checksum") is not None:
            result.checksums_compared += 1
            if mine.checksum is None:
                result.not_compared.append(f"{name}: checksum not computed on the restored side")
            elif mine.checksum != entry["checksum"]:
                result.differences.append(
                    f"{name}: content checksum {mine.checksum} restored, "
                    f"{entry['checksum']} at dump time (same row count)"
                )
    recorded_names = {f"{entry['schema']}.{entry['table']}" for entry in recorded}
    for name in sorted(set(found) - recorded_names):
        if name.split(".", 1)[0] not in not_compared_schemas:
            result.differences.append(f"{name}: in the restored database, not in the backup")
    return result


def checksum_tables_and_method(
    recorded: list[dict], method: str
) -> tuple[set[str], str, str | None]:
    """The tables a restore computes checksums for (those the backup recorded one for), the method,
    and why none are compared when the archive names a method this version does not know (a newer
    release wrote it): then counts are still compared."""
    wanted = {
        f"{entry['schema']}.{entry['table']}"
        for entry in recorded
        if entry.get("checksum") is not None
    }
    if method in METHODS:
        return wanted, method, None
    return (
        set(),
        CHECKSUM_METHOD,
        (
            f"checksums recorded with a method this version does not "
            f"know ({method}): row counts compared only"
        ),
    )


def recorded_method(database_section: dict) -> str:
    """The checksum method an archive's ``database`` section recorded (the first method for the
    archives that only ever used it)."""
    return (database_section.get("exact_figures") or {}).get("method") or SORTED_MD5_METHOD
