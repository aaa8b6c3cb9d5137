"""table_figures.py and the figures dump_database records, on the sandbox's Postgres: a scratch
database with awkward tables is dumped, restored into another database whose collation and session
settings differ, and the figures on both sides must agree; one changed row must change them."""

import hashlib
import uuid
from dataclasses import replace

import psycopg
import pytest

from supabase_backup.sources import database
from supabase_backup.sources import table_figures
from supabase_backup.restore.database import restore_database
from supabase_backup.archive.dump_text import open_text
from supabase_backup.staging import StagingArea

SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE app.keyed (name text PRIMARY KEY, at timestamptz, ratio float8, data bytea, doc jsonb);
CREATE TABLE app.unkeyed (value int, note text);
CREATE TABLE public.big (id int PRIMARY KEY, filler text);
INSERT INTO app.keyed VALUES
  ('zebra', '2026-01-01 10:00+02', 0.1, '\\x00ff', '{"b": 1, "a": [1, 2]}'),
  ('Äpfel', '2026-06-30 23:59:59.123456+00', 1e-300, NULL, NULL),
  ('apple', NULL, 'NaN', '\\x', '{}'),
  ('émigré ☃', '1999-12-31 00:00+14', -0.0, '\\x41', '"x"');
INSERT INTO app.unkeyed VALUES (1, 'twice'), (1, 'twice'), (NULL, NULL);
INSERT INTO public.big SELECT i, repeat('x', 200) FROM generate_series(1, 2000) AS i;
"""


@pytest.fixture
def scratch(small_sandbox):
    """Two new databases on the sandbox's server: a source and a C-collated target."""
    names = [f"figures_{uuid.uuid4().hex[:8]}", f"figures_{uuid.uuid4().hex[:8]}"]
    with small_sandbox.connect() as connection:
        connection.execute(f"CREATE DATABASE {names[0]}")
        connection.execute(f"CREATE DATABASE {names[1]} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    with small_sandbox.connect(names[0]) as connection:
        connection.execute(SCHEMA)
    settings = small_sandbox.settings
    base = database.DatabaseSettings(host=settings["pg_host"], port=settings["pg_port"],
                                     user=settings["pg_user"], password=settings["pg_password"])
    try:
        yield replace(base, dbname=names[0]), replace(base, dbname=names[1])
    finally:
        with small_sandbox.connect() as connection:
            for name in names:
                connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def by_name(entries):
    return {f"{entry['schema']}.{entry['table']}": entry for entry in entries}


def pinned_row_values(source, expression: str) -> list:
    """``expression`` of every row of app.unkeyed, one row at a time, under the pinned settings:
    computed here, not by the aggregate under test."""
    with source.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; "
                           "SET extra_float_digits = 1; SET bytea_output = 'hex'")
        return [row[0] for row in connection.execute(f"SELECT {expression} FROM app.unkeyed t")]


def test_checksum_is_the_sum_of_the_rows_64_bit_hashes(scratch):
    source, _ = scratch
    figures = {item.name: item for item in table_figures.compute_figures_of(source)}
    row_hashes = pinned_row_values(source, "hashtextextended(t::text, 0)")
    assert figures["app.unkeyed"].rows == 3
    # The duplicate row counts twice: the sum is of a multiset, exact (no wrap-around).
    assert figures["app.unkeyed"].checksum == str(sum(row_hashes))
    assert table_figures.CHECKSUM_METHOD == table_figures.HASH_SUM_METHOD


def test_the_first_method_is_still_the_md5_of_sorted_row_md5s(scratch):
    source, _ = scratch
    figures = {item.name: item for item in table_figures.compute_figures_of(
        source, method=table_figures.SORTED_MD5_METHOD)}
    texts = pinned_row_values(source, "t::text")
    row_hashes = sorted(hashlib.md5(text.encode()).hexdigest() for text in texts)
    assert figures["app.unkeyed"].checksum == hashlib.md5("".join(row_hashes).encode()).hexdigest()
    # An archive that names no method was made with this one.
    assert table_figures.recorded_method({"tables": []}) == table_figures.SORTED_MD5_METHOD


def test_dump_records_figures_that_a_restore_reproduces(scratch, tmp_path):
    source, target = scratch
    staging = StagingArea.at(f"file://{tmp_path}")
    summary = database.dump_database(source, staging, include_inventory=False,
                                     exact_figures_max_bytes=100_000)
    recorded = by_name(summary["tables"])
    assert recorded["app.keyed"]["rows"] == 4 and recorded["app.unkeyed"]["rows"] == 3
    assert summary["exact_figures"]["method"] == table_figures.HASH_SUM_METHOD
    assert int(recorded["app.keyed"]["checksum"]) != 0
    big = recorded["public.big"]
    assert big["rows"] == 2000 and big["checksum"] is None
    assert big["checksum_skipped"].startswith("larger than") and big["bytes"] > 100_000
    assert summary["snapshot_time"] and summary["exact_figures"]["checksums"] == 2

    dump = tmp_path / "db" / "backup.sql"
    restore_database(lambda: open_text(dump.open("rb")), target)
    # Another session time zone on the reading side must not matter: the figures pin their own.
    with target.connect(autocommit=False, options="-c TimeZone=Pacific/Chatham") as connection:
        restored = table_figures.compute_figures(connection, max_bytes=100_000)
    comparison = table_figures.compare_figures(summary["tables"], restored)
    assert comparison.ok, comparison.differences
    assert comparison.compared == 3 and comparison.checksums_compared == 2
    assert comparison.rows == 2007

    with target.connect(autocommit=True) as connection:
        connection.execute("UPDATE app.keyed SET ratio = 0.2 WHERE name = 'zebra'")
        connection.execute("DELETE FROM public.big WHERE id = 7")
    comparison = table_figures.compare_figures(summary["tables"],
                                               table_figures.compute_figures_of(target, 100_000))
    assert not comparison.ok
    assert [line.split(":")[0] for line in comparison.differences] == ["app.keyed", "public.big"]
    assert "1,999 rows restored, 2,000 at dump time" in comparison.differences[1]


def test_figures_read_the_snapshot_not_later_writes(scratch, tmp_path):
    source, _ = scratch
    with source.connect(autocommit=False) as connection:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.execute("SELECT 1")  # the snapshot starts here
        with source.connect(autocommit=True) as writer:
            writer.execute("INSERT INTO app.unkeyed VALUES (2, 'later')")
        figures = {item.name: item for item in table_figures.compute_figures(connection)}
    assert figures["app.unkeyed"].rows == 3


def test_a_restore_checks_with_the_method_its_archive_recorded(scratch, tmp_path):
    source, target = scratch
    with source.connect(autocommit=False) as connection:
        old_figures = table_figures.compute_figures(connection, max_bytes=100_000,
                                                    method=table_figures.SORTED_MD5_METHOD)
    recorded = [item.to_manifest() for item in old_figures]
    staging = StagingArea.at(f"file://{tmp_path}")
    database.dump_database(source, staging, include_inventory=False, exact_figures_max_bytes=None)
    restore_database(lambda: open_text((tmp_path / "db" / "backup.sql").open("rb")), target)

    tables, method, unknown = table_figures.checksum_tables_and_method(
        recorded, table_figures.SORTED_MD5_METHOD)
    assert (tables, unknown) == ({"app.keyed", "app.unkeyed"}, None)
    comparison = table_figures.compare_figures(
        recorded, table_figures.compute_figures_of(target, checksum_tables=tables, method=method))
    assert comparison.ok and comparison.checksums_compared == 2, comparison.differences

    # A method this version does not know: the counts are still compared, the checksums are not.
    tables, method, unknown = table_figures.checksum_tables_and_method(recorded, "sha3(rows)")
    assert tables == set() and "sha3(rows)" in unknown
    comparison = table_figures.compare_figures(
        recorded, table_figures.compute_figures_of(target, checksum_tables=tables, method=method))
    assert comparison.ok and comparison.compared == 3
    assert len(comparison.not_compared) == 2  # the two checksums
