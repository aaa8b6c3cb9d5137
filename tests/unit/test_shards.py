"""The shard split is exact: every key — in the inventory or not — is in exactly one range."""

import random

import pytest

from supabase_backup.sources.shards import (
    KeyRange,
    plan_key_ranges,
    ranges_from_boundaries,
    shard_counts,
    shard_of,
    units_for_bucket,
    whole_bucket_unit,
)
from supabase_backup.sources.storage_download import combine_summaries


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


def test_boundaries_out_of_order_or_repeated_are_refused():
    assert ranges_from_boundaries([]) == [KeyRange(None, None)]
    for boundaries in (["b", "a"], ["a", "a"]):
        with pytest.raises(ValueError, match="not sorted and unique"):
            ranges_from_boundaries(boundaries)


def test_units_name_their_shard_for_the_grid_and_a_small_bucket_stays_whole():
    assert units_for_bucket("media", [KeyRange(None, None)]) == [whole_bucket_unit("media")]
    assert whole_bucket_unit("media")["label"] == "media"
    units = units_for_bucket("media", ranges_from_boundaries(["g", "p"]))
    assert [(unit["label"], unit["start"], unit["stop"]) for unit in units] == [
        ("media [1/3]", None, "g"), ("media [2/3]", "g", "p"), ("media [3/3]", "p", None)]
    assert shard_counts([whole_bucket_unit("a"), *units]) == {"a": 1, "media": 3}


def test_a_sharded_buckets_summary_adds_up_its_shards():
    shard = {"bucket": "m", "objects": 2, "bytes": 10, "missing": 1, "unreadable": 0,
             "listing": "storage.objects", "seconds": 1.25, "shard": 1, "of": 2}
    assert combine_summaries("m", [shard, {**shard, "objects": 3, "shard": 2}]) == {
        "bucket": "m", "objects": 5, "bytes": 20, "missing": 2, "unreadable": 0,
        "listing": "storage.objects", "seconds": 2.5, "shards": 2}
