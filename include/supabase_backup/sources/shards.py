"""Big buckets in shards: a bucket with more objects than ``shard_max_objects`` is exported by
several mapped tasks, each over its own range of keys (issue 10).

Terminology: an *export unit* is what one ``export_bucket`` task exports, a whole bucket or one
shard of it: ``{"bucket", "shard", "of", "start", "stop", "label"}`` (shard counts from 1; ``of``
is 1 for a whole bucket, whose ``start`` and ``stop`` are None).

The ranges are planned from ``storage.objects`` before any export starts (``plan_export_units``,
in one repeatable-read transaction, beside the dump rather than after it): in key order, the key
after every ``max_objects`` keys starts a new range. Key order is ``COLLATE "C"``: UTF-8 byte
order, which is code point order, which is how Python compares strings, whatever the database's
own collation; Supabase's index on ``(bucket_id, name COLLATE "C")`` serves it. Only the boundary
keys leave the database. Ranges are half-open ``[start, stop)``, the first open below and the last
open above, so together they cover every possible key exactly once: a key created after the
planning still falls in exactly one shard, and none can fall between two. Exactness does not
depend on when the boundaries were read; only how full each shard is does.

A shard takes its keys from ``storage.objects`` (``spool_objects_in_range``), not from the Storage
API: the API lists a bucket from its start and cannot begin inside a range, so listing per shard
would read a million-key bucket once per shard. The range's rows are copied through a server-side
cursor into a local spool file in one short transaction (no transaction stays open while objects
download, and memory stays flat), then downloaded like a listing, with the stored metadata a
listing row carries. The database is the exact, case-sensitive inventory, so a sharded bucket has
none of v1 listing's wrong-case paths. What a shard did not see but the dump's snapshot inventory
holds, the reconcile step fetches, exactly as for a one-task export; it reads a bucket's shards
together as one bucket, so the archive cannot tell a sharded export from a one-task one.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import psycopg

from supabase_backup.sources.storage_listing import ListedObject, listed_from_metadata

LISTING_DATABASE = "storage.objects"  # the ``listing`` of a sharded bucket's export summary


@dataclass(frozen=True)
class KeyRange:
    """Keys ``k`` with ``start <= k < stop``; None means unbounded on that side."""

    start: str | None
    stop: str | None

    def holds(self, key: str) -> bool:
        return (self.start is None or key >= self.start) and (self.stop is None or key < self.stop)

    def to_dict(self) -> dict:
        return {"start": self.start, "stop": self.stop}


def ranges_from_boundaries(boundaries: Iterable[str]) -> list[KeyRange]:
    """The ranges that ``boundaries`` (each the first key of a range but the first) cut the key
    space into. Refuses boundaries out of order or repeated: the ranges would overlap or be empty."""
    cuts: list[str] = []
    for key in boundaries:
        if cuts and key <= cuts[-1]:
            raise ValueError(f"shard boundaries are not sorted and unique at {key!r}")
        cuts.append(key)
    return [KeyRange(start, stop) for start, stop in zip([None, *cuts], [*cuts, None])]


def plan_key_ranges(sorted_keys: Iterable[str], max_objects: int) -> list[KeyRange]:
    """Consecutive ranges of at most ``max_objects`` of ``sorted_keys`` each; one range (everything)
    when there are that few. Refuses keys out of order (the split would not be exact). The same
    rule as ``BOUNDARIES_SQL``, for keys already at hand."""
    if max_objects < 1:
        raise ValueError("max_objects must be at least 1")

    def boundaries() -> Iterator[str]:
        previous = None
        for position, key in enumerate(sorted_keys):
            if previous is not None and key <= previous:
                raise ValueError(f"inventory keys are not sorted and unique at {key!r}")
            if position and position % max_objects == 0:
                yield key
            previous = key

    return ranges_from_boundaries(boundaries())


def shard_of(key: str, ranges: list[KeyRange]) -> int:
    """The index of the one range that holds ``key``."""
    # Every range after the first has a start (only the first is open below).
    return bisect.bisect_right([item.start or "" for item in ranges[1:]], key)


# --- export units -----------------------------------------------------------------------------------


def whole_bucket_unit(bucket_id: str) -> dict:
    return {
        "bucket": bucket_id,
        "shard": 1,
        "of": 1,
        "start": None,
        "stop": None,
        "label": bucket_id,
    }


def units_for_bucket(bucket_id: str, ranges: list[KeyRange]) -> list[dict]:
    """One export unit per range, labelled for the Airflow grid (``media [2/4]``)."""
    if len(ranges) <= 1:
        return [whole_bucket_unit(bucket_id)]
    return [
        {
            "bucket": bucket_id,
            "shard": number,
            "of": len(ranges),
            **key_range.to_dict(),
            "label": f"{bucket_id} [{number}/{len(ranges)}]",
        }
        for number, key_range in enumerate(ranges, start=1)
    ]


def shard_counts(units: Iterable[dict]) -> dict[str, int]:
    """How many units each bucket was split into (1 for a bucket exported whole)."""
    return {unit["bucket"]: unit["of"] for unit in units}


# --- reading storage.objects -----------------------------------------------------------------------

OBJECT_COUNTS_SQL = """
SELECT bucket_id, count(*) FROM storage.objects
WHERE bucket_id = ANY(%(buckets)s::text[]) AND name IS NOT NULL
GROUP BY bucket_id
"""

# Positions count from 1 in key order; the key at position max_objects + 1, 2 max_objects + 1, …
# starts a new range (plan_key_ranges applies the same rule to keys at hand).
BOUNDARIES_SQL = """
SELECT name FROM (
    SELECT name, row_number() OVER (ORDER BY name COLLATE "C") AS position
    FROM storage.objects
    WHERE bucket_id = %(bucket)s AND name IS NOT NULL
) numbered
WHERE position > 1 AND (position - 1) %% %(max_objects)s = 0
ORDER BY position
"""

OBJECTS_IN_RANGE_SQL = """
SELECT name, metadata FROM storage.objects
WHERE bucket_id = %(bucket)s AND name IS NOT NULL
  AND (%(start)s::text IS NULL OR name COLLATE "C" >= %(start)s::text)
  AND (%(stop)s::text IS NULL OR name COLLATE "C" < %(stop)s::text)
ORDER BY name COLLATE "C"
"""


def plan_export_units(connection, bucket_ids: list[str], max_objects: int) -> list[dict]:
    """The export units of ``bucket_ids``, in their order: one per bucket of at most
    ``max_objects`` objects, several for a bigger one (see the module docstring). ``connection`` is
    a psycopg connection with no transaction open; the counts and boundaries are read in one
    repeatable-read, read-only transaction, so they agree with each other."""
    if max_objects < 1:
        raise ValueError("max_objects must be at least 1")

    connection.autocommit = False
    connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    connection.read_only = True
    try:
        present = connection.execute(
            "SELECT to_regclass('storage.objects') IS NOT NULL"
        ).fetchone()[0]
        counts = (
            dict(connection.execute(OBJECT_COUNTS_SQL, {"buckets": list(bucket_ids)}).fetchall())
            if present
            else {}
        )
        units = []
        for bucket_id in bucket_ids:
            if counts.get(bucket_id, 0) <= max_objects:
                units.append(whole_bucket_unit(bucket_id))
                continue
            boundaries = [
                row[0]
                for row in connection.execute(
                    BOUNDARIES_SQL, {"bucket": bucket_id, "max_objects": max_objects}
                )
            ]
            units.extend(units_for_bucket(bucket_id, ranges_from_boundaries(boundaries)))
    finally:
        connection.rollback()  # read only: nothing to commit
    return units


def spool_objects_in_range(
    connection, bucket_id: str, key_range: KeyRange, spool: IO[str], *, batch_rows: int = 5000
) -> int:
    """Copy every object of ``bucket_id`` in ``key_range`` (name and stored metadata, in key order)
    into ``spool``, a text file, through a server-side cursor in one short transaction; returns how
    many. Memory holds one batch, and no transaction stays open while the objects download
    (``read_spool`` reads them back). ``connection`` must have no transaction open."""
    count = 0
    connection.autocommit = False
    try:
        with connection.cursor(name="shard_objects") as cursor:
            cursor.itersize = batch_rows
            cursor.execute(OBJECTS_IN_RANGE_SQL, {"bucket": bucket_id, **key_range.to_dict()})
            for name, metadata in cursor:
                spool.write(json.dumps([name, metadata], ensure_ascii=False) + "\n")
                count += 1
    finally:
        connection.rollback()  # read only: nothing to commit
    spool.flush()
    return count


def read_spool(spool: IO[str]) -> Iterator[ListedObject]:
    """The objects ``spool_objects_in_range`` wrote, in the same order, as a listing gives them."""
    spool.seek(0)
    for line in spool:
        name, metadata = json.loads(line)
        yield listed_from_metadata(name, metadata)
