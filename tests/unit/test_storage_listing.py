"""storage_listing: object URLs, list-v2 with its cursor and the v1 walk (against storage_fake)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from urllib.parse import unquote

import httpx
import pytest

from supabase_backup.sources.api_client import open_client
from supabase_backup.errors import ApiNotFound
from supabase_backup.sources.storage_listing import (
    encode_path_segment,
    list_buckets,
    list_objects,
    object_route,
    read_ahead,
)
from tests.unit.storage_fake import (
    SETTINGS,
    TRICKY_KEYS,
    FakeStorage,
    storage_error,
    to_httpx,
)


# --- object URLs ------------------------------------------------------------------------------------



@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_object_keys_round_trip_through_httpx_unchanged(key):
    route = object_route("my bucket", key)
    with open_client(SETTINGS, transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client:
        raw_path = client.build_request("GET", route).url.raw_path.decode("ascii")
    prefix = "/storage/v1/object/authenticated/my%20bucket/"
    assert raw_path.startswith(prefix)
    segments = raw_path[len(prefix) :].split("/")
    assert "/".join(unquote(segment) for segment in segments) == key
    # No segment reaches the server as a dot segment it (or a proxy) could resolve.
    assert not any(segment in (".", "..") for segment in segments)


def test_dot_segments_are_encoded_and_other_dots_are_not():
    assert encode_path_segment(".") == "%2E"
    assert encode_path_segment("..") == "%2E%2E"
    assert encode_path_segment("...") == "..."
    assert encode_path_segment("..hidden") == "..hidden"
    assert encode_path_segment("a/b") == "a%2Fb"
    assert encode_path_segment("?#%") == "%3F%23%25"
    assert object_route("b", "dot/../escape.txt") == "/storage/v1/object/authenticated/b/dot/%2E%2E/escape.txt"
    assert object_route("..", "x", route="object/info") == "/storage/v1/object/info/%2E%2E/x"


# --- listing ----------------------------------------------------------------------------------------


def test_list_buckets():
    fake = FakeStorage({"avatars": {}, "media": {}})
    with open_client(SETTINGS, transport=fake.transport()) as client:
        assert [bucket["id"] for bucket in list_buckets(client)] == ["avatars", "media"]


def test_list_v2_pages_with_the_cursor():
    keys = {f"folder{n % 7}/file{n:05d}": b"" for n in range(2345)}
    fake = FakeStorage({"media": keys})
    with open_client(SETTINGS, transport=fake.transport()) as client:
        listing = list_objects(client, "media", page_size=1000)
        listed = list(listing)
    assert listing.method == "list-v2"
    assert sorted(item.key for item in listed) == sorted(keys)
    assert len(fake.list_bodies) == 3
    assert fake.list_bodies[0] == {"prefix": "", "limit": 1000, "with_delimiter": False}
    assert all("cursor" in body for body in fake.list_bodies[1:])


@pytest.mark.parametrize("list_v2", ["feature-not-enabled", "no-route"])
def test_v1_walk_when_list_v2_is_missing(list_v2):
    keys = {
        "top.txt": b"1",
        "a/one.txt": b"22",
        "a/b/two.txt": b"333",
        "a/b/c/three.txt": b"4444",
        "a/b/.emptyFolderPlaceholder": b"",
        **{f"many/{n:03d}.bin": b"x" * n for n in range(7)},
    }
    fake = FakeStorage({"media": keys}, list_v2=list_v2)
    with open_client(SETTINGS, transport=fake.transport()) as client:
        listing = list_objects(client, "media", page_size=3)
        listed = {item.key: item for item in listing}
    assert listing.method == "v1"
    assert set(listed) == set(keys)
    assert listed["a/b/c/three.txt"].size == 4
    assert listed["a/b/c/three.txt"].etag == f'"{hashlib.md5(b"4444").hexdigest()}"'
    # Explicit limit on every call, offset paging within a folder, sorted by name.
    assert all(body["limit"] == 3 and body["sortBy"] == {"column": "name", "order": "asc"} for body in fake.list_bodies)
    many_offsets = [body["offset"] for body in fake.list_bodies if body["prefix"] == "many/"]
    assert many_offsets == [0, 3, 6]


def test_v1_limit_is_clamped_to_the_server_cap():
    fake = FakeStorage({"media": {f"k{n:04d}": b"" for n in range(1600)}}, list_v2="feature-not-enabled")
    with open_client(SETTINGS, transport=fake.transport()) as client:
        assert len(list(list_objects(client, "media", page_size=5000))) == 1600
    assert [body["limit"] for body in fake.list_bodies] == [1500, 1500]


def test_a_missing_bucket_is_not_mistaken_for_a_missing_route():
    fake = FakeStorage({})
    with open_client(SETTINGS, transport=fake.transport()) as client, pytest.raises(ApiNotFound):
        list_objects(client, "gone")



def test_v1_walk_never_loops_on_empty_or_repeated_folder_names():
    """A real v1 server answers a key like ``a//b`` with a folder row named "" under ``a/``, and
    the same again under ``a//``: a naive walk recurses forever. Reconcile fetches such keys."""
    prefixes = []

    def handle(request: httpx.Request) -> httpx.Response:
        if "list-v2" in request.url.path:
            return to_httpx(storage_error("400", "FeatureNotEnabled", "not enabled"))
        prefix = json.loads(request.content)["prefix"]
        prefixes.append(prefix)
        assert len(prefixes) < 50, "the walk is looping"
        rows = [{"name": "", "id": None, "metadata": None}]
        if prefix == "":
            rows = [{"name": "a", "id": None, "metadata": None},
                    {"name": "top.txt", "id": "1", "metadata": {"size": 1, "eTag": '"e"'}}]
        return httpx.Response(200, json=rows)

    with open_client(SETTINGS, transport=httpx.MockTransport(handle)) as client:
        keys = [item.key for item in list_objects(client, "media")]
    assert keys == ["top.txt"]
    assert prefixes == ["", "a/"]


# --- read_ahead -------------------------------------------------------------------------------------


def test_read_ahead_gives_every_item_in_order_never_more_than_max_items_ahead():
    produced = []

    def items():
        for number in range(5000):
            produced.append(number)
            yield number

    taken = []
    for item in read_ahead(items(), max_items=100, thread_name="test-read-ahead"):
        taken.append(item)
        assert len(produced) - len(taken) <= 100
    assert taken == list(range(5000))


def test_read_ahead_raises_the_listing_error_after_the_items_before_it():
    def items():
        yield from range(30)
        raise RuntimeError("page 2 failed")

    taken = []
    with pytest.raises(RuntimeError, match="page 2 failed"):
        for item in read_ahead(items(), max_items=10, thread_name="test-read-ahead"):
            taken.append(item)
    assert taken == list(range(30))


def test_read_ahead_keeps_up_with_a_slow_listing_and_stops_when_closed():
    def slow_items():
        for number in range(20):
            time.sleep(0.001)
            yield number

    assert list(read_ahead(slow_items(), max_items=1, thread_name="test-read-ahead")) == list(range(20))

    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    ahead = read_ahead(endless(), max_items=10, thread_name="test-read-ahead-endless")
    assert next(ahead) == 0
    ahead.close()
    count = len(produced)
    time.sleep(0.1)
    assert len(produced) == count <= 12
    assert not any(thread.name == "test-read-ahead-endless" for thread in threading.enumerate())
