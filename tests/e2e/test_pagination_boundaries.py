"""Paging at every boundary: objects per folder around both listings' page sizes (list-v2: 1000;
v1: 100 by default, capped at 1500) and users around the Auth API's default page (50) and ours
(1000). Each case must come back complete: exactly the keys and ids the database holds.

A sandbox of its own, because these tests rewrite its users and buckets."""

from __future__ import annotations

from pathlib import Path

import pytest
from upath import UPath

import sandbox as sandbox_package
from supabase_backup.sources.api_client import ApiSettings
from supabase_backup.sources.auth_users import export_auth_users
from supabase_backup.staging import StagingArea
from supabase_backup.sources.storage_download import export_bucket
from tests.sandbox_fixtures import running_sandbox

OBJECTS_PER_FOLDER = (1, 99, 100, 101, 999, 1000, 1001, 1500, 1501)
USER_COUNTS = (0, 1, 49, 50, 51, 999, 1000, 1001)


@pytest.fixture(scope="module")
def paging_sandbox():
    with running_sandbox("paging") as sandbox:
        yield sandbox


def api(sandbox) -> ApiSettings:
    return ApiSettings(sandbox.settings["api_url"], sandbox.settings["service_key"])


@pytest.fixture(scope="module")
def paging_bucket(paging_sandbox):
    """A bucket with one folder per count, plus an empty bucket (0 objects)."""
    items = [(f"n{count:04d}/object-{index:04d}.txt", b"%d" % index, "text/plain")
             for count in OBJECTS_PER_FOLDER for index in range(count)]
    sandbox_package.add_objects(paging_sandbox.settings, "paging", items)
    with paging_sandbox.connect() as connection:
        connection.execute("INSERT INTO storage.buckets (id, name) VALUES ('paging-empty', "
                           "'paging-empty') ON CONFLICT DO NOTHING")
    return {key for key, _, _ in items}


@pytest.mark.parametrize("listing", ["list-v2", "v1"])
def test_every_object_at_every_folder_size_is_exported(paging_sandbox, paging_bucket, listing,
                                                       tmp_path):
    paging_sandbox.set_faults(list_v2_disabled=listing == "v1")
    try:
        staging = StagingArea(UPath(f"file://{tmp_path}"))
        summary = export_bucket(api(paging_sandbox), staging.bucket("paging"))
        empty = export_bucket(api(paging_sandbox), staging.bucket("paging-empty"))
    finally:
        paging_sandbox.clear_faults()
    assert summary["listing"] == listing
    index = staging.bucket("paging").index_path.read_text().splitlines()
    import json

    keys = [json.loads(line)["key"] for line in index]
    assert len(keys) == len(set(keys)) and set(keys) == paging_bucket
    assert (summary["objects"], summary["missing"], summary["unreadable"]) == (
        len(paging_bucket), 0, 0)
    assert (empty["objects"], empty["listing"]) == (0, listing)


def set_user_count(sandbox, count: int) -> set[str]:
    with sandbox.connect() as connection:
        connection.execute("TRUNCATE auth.users CASCADE")
        connection.execute(
            "INSERT INTO auth.users (instance_id, id, aud, role, email, created_at, updated_at) "
            "SELECT '00000000-0000-0000-0000-000000000000', gen_random_uuid(), 'authenticated', "
            "'authenticated', 'user' || n || '@paging.test', now() - n * interval '1 minute', now() "
            "FROM generate_series(1, %s) n", (count,))
        return {str(row[0]) for row in connection.execute("SELECT id FROM auth.users")}


@pytest.mark.parametrize("count", USER_COUNTS)
def test_every_user_at_every_page_boundary_is_exported(paging_sandbox, count, tmp_path):
    import json

    expected = set_user_count(paging_sandbox, count)
    for per_page in (50, 1000):
        target = UPath(f"file://{tmp_path}/users-{per_page}.json")
        summary = export_auth_users(api(paging_sandbox), target, per_page=per_page)
        users = json.loads(Path(target.path).read_text())
        assert {user["id"] for user in users} == expected and len(users) == count
        assert (summary["users"], summary["total_reported"]) == (count, count)
