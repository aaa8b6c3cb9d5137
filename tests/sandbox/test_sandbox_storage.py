"""The Storage stand-in honours the wire contract of SPEC section 6."""

from __future__ import annotations

import hashlib
import os
from urllib.parse import quote

import httpx
import pytest

import sandbox

FOLDER_NULLS = ("id", "updated_at", "created_at", "last_accessed_at", "metadata")


def enc(key: str) -> str:
    """Percent-encode each segment; '.'/'..' segments as %2E so no client normalises them."""
    out = []
    for seg in key.split("/"):
        if seg in (".", ".."):
            out.append(seg.replace(".", "%2E"))
        else:
            out.append(quote(seg, safe=""))
    return "/".join(out)


def blob_bytes(sbx, db, bucket: str, key: str) -> bytes:
    row = db.execute("SELECT id FROM storage.objects WHERE bucket_id = %s AND name = %s", (bucket, key)).fetchone()
    assert row, key
    with open(os.path.join(sbx["blobs_dir"], str(row[0])), "rb") as fh:
        return fh.read()


def v1(api, bucket, **body):
    body.setdefault("prefix", "")
    r = api.post(f"/storage/v1/object/list/{bucket}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def cap_bucket(sbx):
    """A bucket with 1,600 objects in one folder (over the v1 cap of 1,500)."""
    sandbox.add_objects(sbx, "cap-test", ((f"many/obj-{i:05d}.txt", b"x", "text/plain") for i in range(1600)))
    return "cap-test"


# ---------------------------------------------------------------------------------------------- buckets
def test_bucket_list(api):
    r = api.get("/storage/v1/bucket")
    assert r.status_code == 200
    buckets = {b["id"]: b for b in r.json()}
    assert {"avatars", "documents", "public-assets", "empty-bucket"} <= set(buckets)
    assert buckets["public-assets"]["public"] is True
    assert buckets["documents"]["public"] is False
    for b in buckets.values():
        assert set(b) >= {"id", "name", "owner", "public", "type", "file_size_limit", "allowed_mime_types",
                          "created_at", "updated_at"}
    r = api.get("/storage/v1/bucket/documents")
    assert r.status_code == 200 and r.json()["id"] == "documents"
    r = api.get("/storage/v1/bucket/nope")
    assert r.status_code == 400 and r.json()["statusCode"] == "404"


# ---------------------------------------------------------------------------------------------- v1 list
def test_v1_default_limit_100_and_offset(api, db):
    first = v1(api, "documents", prefix="logs")
    assert len(first) == 100
    rest = v1(api, "documents", prefix="logs", offset=100)
    names = [e["name"] for e in first + rest]
    expected = [r[0][len("logs/"):] for r in db.execute(
        "SELECT name FROM storage.objects WHERE bucket_id='documents' AND name LIKE 'logs/%' "
        "ORDER BY lower(name) COLLATE \"C\"")]
    assert names == expected  # names are relative to the prefix, sorted by name
    assert len(names) == 106


def test_v1_cap_1500_and_offset_pages_past_it(api, cap_bucket):
    page1 = v1(api, cap_bucket, prefix="many/", limit=5000)
    assert len(page1) == 1500
    page2 = v1(api, cap_bucket, prefix="many/", limit=5000, offset=1500)
    assert len(page2) == 100
    assert len({e["name"] for e in page1 + page2}) == 1600


def test_v1_folder_rows_have_null_id_and_metadata(api):
    rows = v1(api, "documents", prefix="", limit=1000)
    folders = [r for r in rows if r["id"] is None]
    files = [r for r in rows if r["id"] is not None]
    assert {"reports", "logs", "my folder", "deep"} <= {f["name"] for f in folders}
    for f in folders:
        for key in FOLDER_NULLS:
            assert key in f and f[key] is None
    assert files
    for f in files:
        md = f["metadata"]
        assert set(md) >= {"eTag", "size", "mimetype", "cacheControl", "lastModified", "contentLength",
                           "httpStatusCode"}
        assert md["eTag"].startswith('"') and md["size"] == md["contentLength"]


def test_v1_is_case_insensitive(api):
    root = [r["name"] for r in v1(api, "documents", limit=1000)]
    # Case/ and case/ collapse into one folder row
    assert sum(1 for n in root if n.lower() == "case") == 1
    merged = sorted(r["name"] for r in v1(api, "documents", prefix="CASE"))
    assert merged == ["x.txt", "y.txt"]
    assert [r["name"] for r in v1(api, "documents", prefix="REPORTS/2024")] == [
        r["name"] for r in v1(api, "documents", prefix="reports/2024")]


def test_v1_nested_and_placeholders(api):
    rows = v1(api, "documents", prefix="reports/2024")
    names = [r["name"] for r in rows]
    assert ".emptyFolderPlaceholder" in names
    assert {"q1", "q2", "q3", "q4"} <= set(names)
    assert [r["name"] for r in v1(api, "documents", prefix="deep/l1/l2/l3/l4/l5")] == ["leaf.txt"]


# ---------------------------------------------------------------------------------------------- v2 list
def test_v2_flat_paging_with_cursor(api, db):
    seen, pages, cursor = [], 0, None
    while True:
        body = {"prefix": "", "limit": 40, "with_delimiter": False}
        if cursor:
            body["cursor"] = cursor
        r = api.post("/storage/v1/object/list-v2/documents", json=body)
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["folders"] == []
        seen += [o["name"] for o in data["objects"]]
        pages += 1
        if not data["hasNext"]:
            assert "nextCursor" not in data and "nextCursorKey" not in data
            break
        assert data["nextCursorKey"] == data["objects"][-1]["name"]
        cursor = data["nextCursor"]
    expected = [r[0] for r in db.execute(
        "SELECT name FROM storage.objects WHERE bucket_id='documents' ORDER BY name COLLATE \"C\"")]
    assert seen == expected  # full keys, every object once, nested included
    assert pages == -(-len(expected) // 40)
    assert "dot/../escape.txt" in seen and "a//b" in seen and "/leading.txt" in seen


def test_v2_is_case_sensitive_and_prefix_flat(api):
    def names(prefix):
        r = api.post("/storage/v1/object/list-v2/documents", json={"prefix": prefix})
        return [o["name"] for o in r.json()["objects"]]

    assert names("Case/") == ["Case/x.txt"]
    assert names("case/") == ["case/y.txt"]
    assert names("CASE/") == []
    assert names("deep/") == ["deep/l1/l2/l3/l4/l5/leaf.txt"]


def test_v2_object_row_shape(api):
    r = api.post("/storage/v1/object/list-v2/documents", json={"prefix": "logs/", "limit": 1})
    obj = r.json()["objects"][0]
    assert set(obj) >= {"id", "name", "metadata", "updated_at", "created_at", "last_accessed_at"}
    assert obj["metadata"]["mimetype"] == "text/plain"


def test_v2_limit_capped_at_1000(api, cap_bucket):
    r = api.post(f"/storage/v1/object/list-v2/{cap_bucket}", json={"limit": 5000})
    data = r.json()
    assert len(data["objects"]) == 1000 and data["hasNext"] is True
    r = api.post(f"/storage/v1/object/list-v2/{cap_bucket}", json={"cursor": data["nextCursor"]})
    assert len(r.json()["objects"]) == 600 and r.json()["hasNext"] is False


def test_v2_with_delimiter(api):
    r = api.post("/storage/v1/object/list-v2/documents", json={"prefix": "reports/", "with_delimiter": True})
    data = r.json()
    assert [f["name"] for f in data["folders"]] == ["reports/2024/"]
    assert [o["name"] for o in data["objects"]] == ["reports/.emptyFolderPlaceholder"]


def test_v2_feature_not_enabled_switch(api, faults):
    faults(list_v2_disabled=True)
    r = api.post("/storage/v1/object/list-v2/documents", json={"prefix": ""})
    assert r.status_code == 400
    assert r.json() == {"statusCode": "400", "error": "FeatureNotEnabled",
                        "message": "This feature is not available for your tenant", "code": "FeatureNotEnabled"}
    # v1 still works
    assert v1(api, "documents", prefix="logs", limit=1)


# ---------------------------------------------------------------------------------------------- download
NASTY = ["my folder/my file.txt", "a//b", "trailing/", "/leading.txt", "..hidden", "a..b", "q?/what?.txt",
         "it's & ok=yes;@:+,$!*", "Case/x.txt", "case/y.txt", "café/naïve ☃.txt", "100% done.txt",
         "dot/../escape.txt", "back\\slash.txt", "hash#1.txt", "blobs/zero.bin", "reports/.emptyFolderPlaceholder"]


@pytest.mark.parametrize("key", NASTY)
def test_download_bytes_match_blob(api, sbx, db, key):
    r = api.get(f"/storage/v1/object/documents/{enc(key)}")
    assert r.status_code == 200, (key, r.text)
    assert r.content == blob_bytes(sbx, db, "documents", key)
    md = db.execute("SELECT metadata FROM storage.objects WHERE bucket_id='documents' AND name=%s", (key,)).fetchone()[0]
    assert r.headers["etag"] == md["eTag"] == f'"{hashlib.md5(r.content).hexdigest()}"'
    assert r.headers["content-type"] == md["mimetype"]
    assert r.headers["cache-control"] == md["cacheControl"]
    assert int(r.headers["content-length"]) == md["size"] == len(r.content)
    assert "last-modified" in r.headers
    r2 = api.get(f"/storage/v1/object/authenticated/documents/{enc(key)}")
    assert r2.status_code == 200 and r2.content == r.content


def test_download_png_and_info(api, sbx, db):
    key = db.execute("SELECT name FROM storage.objects WHERE bucket_id='avatars' AND name LIKE '%.png' "
                     "ORDER BY name LIMIT 1").fetchone()[0]
    r = api.get(f"/storage/v1/object/avatars/{enc(key)}")
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert r.headers["content-type"] == "image/png"
    info = api.get(f"/storage/v1/object/info/avatars/{enc(key)}").json()
    assert info["name"] == key and info["size"] == len(r.content) and info["content_type"] == "image/png"
    assert info["etag"] == r.headers["etag"] and info["bucket_id"] == "avatars"
    assert {"id", "version", "cache_control", "metadata", "created_at", "last_modified"} <= set(info)


def test_unencoded_dot_segment_is_normalised_by_clients(api):
    # httpx removes the ".." segment: the server sees "documents/escape.txt", which does not exist
    r = api.get("/storage/v1/object/documents/dot/../escape.txt")
    assert r.status_code in (400, 404)


def test_missing_object_shape(api):
    r = api.get("/storage/v1/object/documents/no/such/key.txt")
    assert r.status_code == 400
    assert r.json() == {"statusCode": "404", "code": "NoSuchKey", "error": "not_found", "message": "Object not found"}
    r = api.head("/storage/v1/object/documents/no/such/key.txt")
    assert r.status_code == 400 and r.content == b""
    r = api.get("/storage/v1/object/documents/CASE/x.txt")  # downloads are case-sensitive
    assert r.status_code == 400 and r.json()["code"] == "NoSuchKey"


def test_head_and_range(api):
    h = api.head("/storage/v1/object/documents/blobs/data.bin")
    assert h.status_code == 200 and h.headers["content-length"] == str(64 * 1024) and h.content == b""
    full = api.get("/storage/v1/object/documents/blobs/data.bin").content
    r = api.get("/storage/v1/object/documents/blobs/data.bin", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == full[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(full)}"


def test_public_route_only_for_public_buckets(sbx):
    r = httpx.get(f"{sbx['api_url']}/storage/v1/object/public/public-assets/index.html")
    assert r.status_code == 200 and b"sandbox" in r.content
    r = httpx.get(f"{sbx['api_url']}/storage/v1/object/public/documents/logs/empty.log")
    assert r.status_code == 400


# ---------------------------------------------------------------------------------------------- upload
def test_upload_key_validation(api, db):
    base = "/storage/v1/object/documents/"
    ok_keys = ["upload-test/plain.txt", "upload-test/it's & ok=yes;@:+,$!*", "upload-test/q?/what?.txt",
               "upload-test/a//b", "upload-test/..hidden", "upload-test/trailing/"]
    try:
        for key in ok_keys:
            r = api.post(base + enc(key), content=b"hello", headers={"content-type": "text/plain"})
            assert r.status_code == 200, (key, r.text)
            assert r.json()["Key"] == f"documents/{key}"
        for key in ["upload-test/café.txt", "upload-test/100%.txt", "upload-test/x#y", "upload-test/back\\slash",
                    "upload-test/../x", "upload-test/./x", "upload-test/tab\there", "upload-test/{x}",
                    'upload-test/"q"', "upload-test/a~b"]:
            r = api.post(base + enc(key), content=b"x")
            assert r.status_code == 400, key
            assert r.json()["code"] == "InvalidKey" and r.json()["statusCode"] == "400", key
        # duplicate without upsert, then upsert
        r = api.post(base + "upload-test/plain.txt", content=b"again")
        assert r.status_code == 400 and r.json()["statusCode"] == "409"
        r = api.post(base + "upload-test/plain.txt", content=b"again", headers={"x-upsert": "true"})
        assert r.status_code == 200
        assert api.get(base + "upload-test/plain.txt").content == b"again"
        # .emptyFolderPlaceholder must be empty
        r = api.post(base + "upload-test/f/.emptyFolderPlaceholder", content=b"not empty")
        assert r.status_code == 400 and r.json()["code"] == "EntityTooLarge"
        r = api.post(base + "upload-test/f/.emptyFolderPlaceholder", content=b"")
        assert r.status_code == 200
        md = db.execute("SELECT metadata FROM storage.objects WHERE bucket_id='documents' AND name=%s",
                        ("upload-test/plain.txt",)).fetchone()[0]
        assert md["size"] == 5 and md["eTag"] == f'"{hashlib.md5(b"again").hexdigest()}"'
    finally:
        names = [r[0] for r in db.execute(
            "SELECT name FROM storage.objects WHERE bucket_id='documents' AND name LIKE 'upload-test/%'")]
        r = api.request("DELETE", "/storage/v1/object/documents", json={"prefixes": names})
        assert r.status_code == 200
    assert db.execute("SELECT count(*) FROM storage.objects WHERE name LIKE 'upload-test/%'").fetchone()[0] == 0


def test_update_and_delete_single(api):
    path = "/storage/v1/object/documents/tmp-single.txt"
    assert api.put(path, content=b"x").json()["code"] == "NoSuchKey"
    assert api.post(path, content=b"one", headers={"cache-control": "max-age=60"}).status_code == 200
    assert api.put(path, content=b"two").status_code == 200
    assert api.get(path).content == b"two"
    assert api.delete(path).json() == {"message": "Successfully deleted"}
    assert api.get(path).json()["code"] == "NoSuchKey"


# ---------------------------------------------------------------------------------------------- auth/errors
def test_wrong_or_missing_key_answers_like_the_real_server(sbx):
    """supabase/storage 1.11: no Authorization → HTTP 400, statusCode "400" (InvalidRequest); a bad
    JWT → HTTP 400, statusCode "403" (AccessDenied). The hosted gateway's own refusal of a wrong
    apikey is a real 401."""
    url = f"{sbx['api_url']}/storage/v1/bucket"
    r = httpx.get(url)
    assert (r.status_code, r.json()["statusCode"], r.json()["code"]) == (400, "400", "InvalidRequest")
    for token, message in (("nope", "Invalid Compact JWS"),
                           (f"{sbx['service_role_jwt']}x", "signature verification failed")):
        r = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert (r.status_code, r.json()["statusCode"], r.json()["code"]) == (400, "403", "AccessDenied")
        assert r.json()["message"] == message
    r = httpx.get(url, headers={"Authorization": f"Bearer {sbx['service_key']}", "apikey": "wrong"})
    assert (r.status_code, r.json()["statusCode"]) == (401, "401")
    # the legacy service_role JWT works too; the anon key only sees public buckets
    r = httpx.get(url, headers={"Authorization": f"Bearer {sbx['service_role_jwt']}"})
    assert r.status_code == 200 and len(r.json()) >= 4
    r = httpx.get(url, headers={"Authorization": f"Bearer {sbx['anon_key']}"})
    assert [b["id"] for b in r.json()] == ["public-assets"]


def test_unknown_routes_are_real_404(api):
    assert api.get("/storage/v1/nothing").status_code == 404
    assert api.get("/nothing").status_code == 404
    assert api.post("/storage/v1/object/list").status_code == 404
