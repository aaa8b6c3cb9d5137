"""The official supabase Python client (a pinned dependency) against the sandbox: what it gets back
must be what SPEC §6 says the real servers answer. The product keeps its own streaming client;
this suite keeps the sandbox honest, so the product is tested against the real wire contract."""

from __future__ import annotations

import hashlib
import os
import re

import pytest
from supabase import create_client

import sandbox


@pytest.fixture(scope="module")
def client(sbx):
    return create_client(sbx["api_url"], sbx["service_key"])


@pytest.fixture(scope="module")
def truth(sbx):
    """{bucket: {key: (bytes, stored mimetype)}} read straight from the database and blob files."""
    with sandbox.connect(sbx) as connection:
        rows = connection.execute(
            "SELECT bucket_id, name, id, metadata->>'mimetype' FROM storage.objects").fetchall()
    objects: dict = {}
    for bucket, key, object_id, mimetype in rows:
        path = os.path.join(sbx["state_dir"], "blobs", str(object_id))
        with open(path, "rb") as blob:
            objects.setdefault(bucket, {})[key] = (blob.read(), mimetype)
    return objects


def test_list_buckets(client, sbx):
    with sandbox.connect(sbx) as connection:
        expected = {row[0] for row in connection.execute("SELECT id FROM storage.buckets")}
    buckets = client.storage.list_buckets()
    assert {bucket.id for bucket in buckets} == expected
    assert all(bucket.public in (True, False) for bucket in buckets)


def test_v1_list_defaults_to_100_rows_of_one_level_with_folders_as_null_ids(client, truth):
    bucket = max(truth, key=lambda name: len(truth[name]))
    rows = client.storage.from_(bucket).list()
    # One row per top-level name; v1 is case-insensitive (Case/ and case/ are one folder row), and
    # a key starting with "/" makes a folder row with an empty name, as on the real server.
    files = {key for key in truth[bucket] if "/" not in key}
    folders = {key.split("/", 1)[0].casefold() for key in truth[bucket] if "/" in key}
    assert len(rows) == min(100, len(files) + len(folders - {name.casefold() for name in files}))
    for row in rows:
        if row["id"] is None:  # a folder: no timestamps, no metadata
            assert row["metadata"] is None and any(
                key.startswith(row["name"] + "/") for key in truth[bucket])
        else:
            assert row["name"] in truth[bucket] and row["metadata"]["size"] == len(
                truth[bucket][row["name"]][0])


def test_list_v2_pages_with_its_cursor_to_every_key_without_a_key_field(client, truth):
    bucket = max(truth, key=lambda name: len(truth[name]))
    seen, cursor, pages = [], None, 0
    while True:
        options = {"limit": 7, "with_delimiter": False, **({"cursor": cursor} if cursor else {})}
        page = client.storage.from_(bucket).list_v2(options)
        pages += 1
        seen.extend(item.name for item in page.objects)
        assert page.folders == []
        if not page.hasNext:
            assert page.nextCursor is None
            break
        cursor = page.nextCursor
        assert cursor
    assert sorted(seen) == sorted(truth[bucket]) and len(seen) == len(set(seen))
    assert pages == -(-len(truth[bucket]) // 7)


def test_list_v2_objects_carry_no_key_field_without_a_delimiter(sbx, truth):
    import httpx

    bucket = next(iter(truth))
    reply = httpx.post(f"{sbx['api_url']}/storage/v1/object/list-v2/{bucket}",
                       headers={"Authorization": f"Bearer {sbx['service_key']}"},
                       json={"limit": 3, "with_delimiter": False}).json()
    assert reply["objects"] and all("key" not in item for item in reply["objects"])


def test_download_gives_the_bytes_and_html_is_served_as_plain_text(client, sbx, truth):
    import httpx

    for bucket, objects in truth.items():
        plain = [key for key in objects if re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", key)
                 and not any(part in (".", "..") for part in key.split("/"))]
        for key in plain[:5]:  # the client mangles hostile keys; the product's own client does not
            data = objects[key][0]
            assert hashlib.sha256(client.storage.from_(bucket).download(key)).digest() == \
                hashlib.sha256(data).digest()
    sandbox.add_objects(sbx, "html-check", [("page.html", b"<h1>hi</h1>", "text/html")])
    reply = httpx.get(f"{sbx['api_url']}/storage/v1/object/html-check/page.html",
                      headers={"Authorization": f"Bearer {sbx['service_key']}"})
    assert reply.content == b"<h1>hi</h1>" and reply.headers["content-type"] == "text/plain"
    listed = client.storage.from_("html-check").list()
    assert listed[0]["metadata"]["mimetype"] == "text/html"  # the stored type stays in the listing


def test_auth_admin_list_users_pages_through_every_user(client, sbx):
    with sandbox.connect(sbx) as connection:
        expected = {str(row[0]) for row in connection.execute("SELECT id FROM auth.users")}
    seen, page = [], 1
    while True:
        users = client.auth.admin.list_users(page=page, per_page=50)
        seen.extend(str(user.id) for user in users)
        if len(users) < 50:
            break
        page += 1
    assert set(seen) == expected and len(seen) == len(expected)
    assert client.auth.admin.list_users(page=1, per_page=1)[0].id is not None
