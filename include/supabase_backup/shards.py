"""Split a big bucket into key ranges for several export tasks (issue 10, step 4 — the split only;
the DAG does not map over shards yet).

The ranges come from the snapshot inventory (keys sorted by code point, i.e. ``ORDER BY name
COLLATE "C"``): every ``max_objects``-th inventory key starts a new range. Ranges are half-open
``[start, stop)`` with the first open below and the last open above, so together they cover every
possible key exactly once — a key created after the snapshot still falls in exactly one shard, and
no key can fall between two. Only the boundaries are held (one key per shard).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class KeyRange:
    """Keys ``k`` with ``start <= k < stop``; None means unbounded on that side."""

    start: str | None
    stop: str | None

    def holds(self, key: str) -> bool:
        return (self.start is None or key >= self.start) and (self.stop is None or key < self.stop)

    def to_dict(self) -> dict:
        return {"start": self.start, "stop": self.stop}


def plan_key_ranges(sorted_keys: Iterable[str], max_objects: int) -> list[KeyRange]:
    """Consecutive ranges of at most ``max_objects`` inventory keys each; one range (everything)
    when the inventory is that small. Refuses keys out of order (the split would not be exact)."""
    if max_objects < 1:
        raise ValueError("max_objects must be at least 1")
    boundaries: list[str] = []
    previous = None
    for position, key in enumerate(sorted_keys):
        if previous is not None and key <= previous:
            raise ValueError(f"inventory keys are not sorted and unique at {key!r}")
        if position and position % max_objects == 0:
            boundaries.append(key)
        previous = key
    starts = [None, *boundaries]
    stops = [*boundaries, None]
    return [KeyRange(start, stop) for start, stop in zip(starts, stops)]


def shard_of(key: str, ranges: list[KeyRange]) -> int:
    """The index of the one range that holds ``key``."""
    return bisect.bisect_right([item.start for item in ranges[1:]], key)
