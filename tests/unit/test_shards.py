"""The shard split is exact: every key — in the inventory or not — is in exactly one range."""

import random

import pytest

from supabase_backup.shards import plan_key_ranges, shard_of


def keys(count, seed):
    generator = random.Random(seed)
    alphabet = "ab/ é☃%.\x01Z"
    return sorted({"".join(generator.choices(alphabet, k=generator.randint(1, 6)))
                   for _ in range(count)})


@pytest.mark.parametrize("count, max_objects", [(0, 3), (1, 1), (10, 3), (9, 3), (500, 7), (500, 1000)])
def test_every_key_is_in_exactly_one_range_and_ranges_are_bounded(count, max_objects):
    inventory = keys(count, count)
    ranges = plan_key_ranges(iter(inventory), max_objects)
    assert len(ranges) == max(1, -(-len(inventory) // max_objects))
    per_range = [0] * len(ranges)
    for key in set(inventory + keys(300, 99) + ["", "\U0010ffff"]):  # also keys the inventory lacks
        holders = [index for index, item in enumerate(ranges) if item.holds(key)]
        assert holders == [shard_of(key, ranges)]
        if key in inventory:
            per_range[holders[0]] += 1
    assert sum(per_range) == len(inventory) and max(per_range) <= max_objects
    assert ranges[0].start is None and ranges[-1].stop is None
    assert all(left.stop == right.start for left, right in zip(ranges, ranges[1:]))


def test_unsorted_keys_are_refused():
    with pytest.raises(ValueError, match="not sorted"):
        plan_key_ranges(["b", "a"], 1)
