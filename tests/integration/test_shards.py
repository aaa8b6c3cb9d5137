"""Shards planned from a real ``storage.objects``: the ranges the database's boundaries make, read
back range by range from the database, hold every key exactly once, in the order Python compares
strings (``COLLATE "C"``, whatever the database's own collation), at most ``max_objects`` each."""

from __future__ import annotations

import json
import random

import pytest

from supabase_backup.sources.database import DatabaseSettings
from supabase_backup.sources.shards import (
    KeyRange,
    plan_export_units,
    read_spool,
    shard_of,
    spool_objects_in_range,
)

BUCKET = "shard-planning"
SMALL_BUCKET = "shard-planning-small"
TRICKY_KEYS = [
    "x", "x/y", "x0", "x y", "x-y", "x//y", "x/", " leading space", "a b", "a b/c", "a", "B", "b",
    "Z", "z", "e", "é", "é/x", "f", "ä", "\u00ff", "\u0100", "\U0001f600", "\U0001f600/x",
    "Case/x", "case/x", "100% done.txt", "tab\there", "..hidden", "a..b", "q?/what?.txt",
]


def random_keys(count: int) -> list[str]:
    generator = random.Random(10)
    alphabet = "ab/ é☃%.Z_-x\U0001f600"
    return ["".join(generator.choices(alphabet, k=generator.randint(1, 6))) for _ in range(count)]


KEYS = sorted(set(TRICKY_KEYS + random_keys(120)))


def metadata(key: str) -> dict:
    return {"size": len(key.encode()), "eTag": f'"{len(key)}"', "mimetype": "text/plain",
            "cacheControl": "no-cache"}


@pytest.fixture(scope="module")
def database(small_sandbox):
    settings = small_sandbox.settings
    database_settings = DatabaseSettings(
        host=settings["pg_host"], port=settings["pg_port"], user=settings["pg_user"],
        password=settings["pg_password"], dbname=settings["pg_dbname"])
    with small_sandbox.connect() as connection:
        for bucket, keys in ((BUCKET, KEYS), (SMALL_BUCKET, ["only", "two"])):
            connection.execute("INSERT INTO storage.buckets (id, name) VALUES (%s, %s)",
                               (bucket, bucket))
            with connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO storage.objects (bucket_id, name, metadata) VALUES (%s, %s, %s)",
                    [(bucket, key, json.dumps(metadata(key))) for key in keys])
    try:
        yield database_settings
    finally:
        with small_sandbox.connect() as connection:
            for bucket in (BUCKET, SMALL_BUCKET):
                connection.execute("DELETE FROM storage.objects WHERE bucket_id = %s", (bucket,))
                connection.execute("DELETE FROM storage.buckets WHERE id = %s", (bucket,))


def keys_in(database: DatabaseSettings, unit: dict, tmp_path) -> list[str]:
    with (tmp_path / f"spool-{unit['shard']}").open("w+", encoding="utf-8") as spool:
        with database.connect() as connection:
            count = spool_objects_in_range(connection, unit["bucket"],
                                           KeyRange(unit["start"], unit["stop"]), spool)
        keys = [listed.key for listed in read_spool(spool)]
    assert count == len(keys)
    return keys


@pytest.mark.parametrize("max_objects", [1, 7, 40, len(KEYS) - 1, len(KEYS), len(KEYS) + 1])
def test_every_key_is_in_exactly_one_shard_in_code_point_order(database, tmp_path, max_objects):
    with database.connect() as connection:
        units = plan_export_units(connection, [SMALL_BUCKET, BUCKET], max_objects)
    small = [unit for unit in units if unit["bucket"] == SMALL_BUCKET]
    assert small == [{"bucket": SMALL_BUCKET, "shard": 1, "of": 1, "start": None, "stop": None,
                      "label": SMALL_BUCKET}] or max_objects == 1
    units = [unit for unit in units if unit["bucket"] == BUCKET]
    assert len(units) == -(-len(KEYS) // max_objects)
    assert [unit["shard"] for unit in units] == list(range(1, len(units) + 1))
    per_shard = [keys_in(database, unit, tmp_path) for unit in units]
    # Read back range by range, the shards are the whole bucket in Python's order, once each.
    assert [key for keys in per_shard for key in keys] == KEYS
    assert all(len(keys) == max_objects for keys in per_shard[:-1])
    assert 1 <= len(per_shard[-1]) <= max_objects
    # A boundary key is the first key of the shard it starts, never the last of the one before.
    for unit, keys in zip(units[1:], per_shard[1:]):
        assert keys[0] == unit["start"]
    if len(units) > 1:
        assert units[0]["label"] == f"{BUCKET} [1/{len(units)}]"


def test_a_key_created_after_planning_falls_in_exactly_one_shard(database, small_sandbox,
                                                                  tmp_path):
    with database.connect() as connection:
        units = plan_export_units(connection, [BUCKET], 9)
    ranges = [KeyRange(unit["start"], unit["stop"]) for unit in units]
    # Below every key, just after a boundary, inside a folder, above every key.
    late = ["", "\x01", units[2]["start"] + "\x01", units[3]["start"] + " ", "x/y/z",
            "\U0010ffff"]
    late = [key for key in dict.fromkeys(late) if key not in KEYS]
    with small_sandbox.connect() as connection:
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO storage.objects (bucket_id, name, metadata) VALUES (%s, %s, %s)",
                [(BUCKET, key, json.dumps(metadata(key))) for key in late])
    try:
        per_shard = [keys_in(database, unit, tmp_path) for unit in units]
        assert [key for keys in per_shard for key in keys] == sorted(KEYS + late)
        for key in late:
            holders = [index for index, keys in enumerate(per_shard) if key in keys]
            assert holders == [shard_of(key, ranges)], key
    finally:
        with small_sandbox.connect() as connection:
            connection.execute(
                "DELETE FROM storage.objects WHERE bucket_id = %s AND name = ANY(%s)",
                (BUCKET, late))


def test_a_shards_objects_carry_their_stored_metadata(database, tmp_path):
    unit = {"bucket": BUCKET, "shard": 1, "start": "x", "stop": "x0"}
    with (tmp_path / "spool").open("w+", encoding="utf-8") as spool:
        with database.connect() as connection:
            spool_objects_in_range(connection, BUCKET, KeyRange(unit["start"], unit["stop"]),
                                   spool)
        listed = list(read_spool(spool))
    assert [item.key for item in listed] == [key for key in KEYS if "x" <= key < "x0"]
    assert "x/y" in [item.key for item in listed] and "x0" not in [item.key for item in listed]
    first = listed[0]
    assert (first.key, first.size, first.etag, first.content_type, first.cache_control) == (
        "x", 1, '"1"', "text/plain", "no-cache")


def test_the_split_ignores_the_databases_own_collation(small_sandbox, tmp_path):
    """Under an ICU collation ("a" < "B", "x y" < "x/y" < "x0"… differ from byte order) the
    boundaries and the ranges' contents still follow byte order: every comparison says
    COLLATE "C"."""
    name = "shards_icu_collation"
    with small_sandbox.connect() as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.execute(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                           "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
    try:
        with small_sandbox.connect(name) as connection:
            in_database_order = connection.execute(
                "SELECT array_agg(key ORDER BY key) FROM unnest(%s::text[]) AS key",
                (KEYS,)).fetchone()[0]
            assert in_database_order != KEYS  # the database's own order is not byte order
            connection.execute("CREATE SCHEMA storage")
            connection.execute("CREATE TABLE storage.objects (bucket_id text, name text, "
                               "metadata jsonb)")
            with connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO storage.objects VALUES (%s, %s, %s)",
                    [(BUCKET, key, json.dumps(metadata(key))) for key in KEYS])
        settings = small_sandbox.settings
        database = DatabaseSettings(host=settings["pg_host"], port=settings["pg_port"],
                                    user=settings["pg_user"], password=settings["pg_password"],
                                    dbname=name)
        with database.connect() as connection:
            units = plan_export_units(connection, [BUCKET], 11)
        per_shard = [keys_in(database, unit, tmp_path) for unit in units]
        assert [key for keys in per_shard for key in keys] == KEYS
        assert [unit["start"] for unit in units[1:]] == KEYS[11::11]
    finally:
        with small_sandbox.connect() as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name}")
