"""The synthetic bulk bucket (sandbox/bulk.py): rows without files, bytes made on GET from (seed, key).

The default suite exports a 3,000-object bulk bucket with the real exporter and checks every object
against the generator. The ``slow`` test puts a million rows in a sandbox of its own and proves, each
in a fresh process, that the listing, the inventory and the reconcile step hold bounded memory at a
million objects (peak RSS growth ≤ 100 MiB). None of them measures time: bench/bulk_export.py does.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sandbox
from sandbox import bulk
from tests.sandbox_fixtures import running_sandbox

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SMALL_OBJECTS = 3000
MILLION = 1_000_000
MAX_RSS_GROWTH_MIB = 100


@pytest.fixture(scope="module")
def bulk_bucket(sbx):
    spec = sandbox.add_bulk_bucket(sbx, "bulk-small", SMALL_OBJECTS, size=1024, seed=7)
    yield spec
    sandbox.remove_bulk_bucket(sbx, "bulk-small")


def test_keys_and_bytes_are_a_function_of_seed_and_key():
    assert bulk.object_key(123) == "bulk/000/000123.bin"
    assert bulk.object_key(999_999) == "bulk/999/999999.bin"
    assert bulk.object_key(1_234_567) == "bulk/1234/1234567.bin"
    data = bulk.object_bytes(7, "bulk/000/000001.bin", 1024)
    assert len(data) == 1024 and data == bulk.object_bytes(7, "bulk/000/000001.bin", 1024)
    assert data != bulk.object_bytes(8, "bulk/000/000001.bin", 1024)
    assert bulk.object_sha256(7, "bulk/000/000001.bin", 1024) == hashlib.sha256(data).hexdigest()


def test_rows_carry_metadata_and_no_files(sbx, db, bulk_bucket):
    rows = db.execute("SELECT name, metadata, id FROM storage.objects WHERE bucket_id = 'bulk-small' "
                      "ORDER BY name COLLATE \"C\"").fetchall()
    assert [name for name, _, _ in rows] == [bulk.object_key(n) for n in range(SMALL_OBJECTS)]
    name, metadata, object_id = rows[1234]
    assert metadata["size"] == metadata["contentLength"] == 1024
    assert metadata["eTag"] == bulk.object_etag(7, name)
    assert metadata["mimetype"] == "application/octet-stream" and metadata["cacheControl"] == "max-age=3600"
    assert not os.path.exists(os.path.join(sbx["blobs_dir"], str(object_id)))
    # idempotent: the same spec again inserts nothing
    before = db.execute("SELECT min(id::text) FROM storage.objects WHERE bucket_id = 'bulk-small'").fetchone()
    sandbox.add_bulk_bucket(sbx, "bulk-small", SMALL_OBJECTS, size=1024, seed=7)
    assert db.execute("SELECT min(id::text) FROM storage.objects WHERE bucket_id = 'bulk-small'").fetchone() == before


def test_wire_contract_of_a_bulk_bucket(api, bulk_bucket):
    key = bulk.object_key(2345)
    expected = bulk.object_bytes(7, key, 1024)
    r = api.get(f"/storage/v1/object/authenticated/bulk-small/{key}")
    assert r.status_code == 200 and r.content == expected
    assert r.headers["content-length"] == "1024" and r.headers["etag"] == bulk.object_etag(7, key)
    r = api.get(f"/storage/v1/object/bulk-small/{key}", headers={"range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == expected[100:200]
    info = api.get(f"/storage/v1/object/info/bulk-small/{key}").json()
    assert info["size"] == 1024 and info["etag"] == bulk.object_etag(7, key)

    # a delimited listing has folders: 1,000 objects a folder
    r = api.post("/storage/v1/object/list-v2/bulk-small", json={"prefix": "bulk/", "with_delimiter": True})
    assert [f["key"] for f in r.json()["folders"]] == ["bulk/000/", "bulk/001/", "bulk/002/"]
    r = api.post("/storage/v1/object/list-v2/bulk-small",
                 json={"prefix": "bulk/", "with_delimiter": True, "limit": 2, "sortBy": {"order": "desc"}})
    assert [f["key"] for f in r.json()["folders"]] == ["bulk/002/", "bulk/001/"] and r.json()["hasNext"]
    r = api.post("/storage/v1/object/list-v2/bulk-small",
                 json={"prefix": "bulk/", "with_delimiter": True, "cursor": r.json()["nextCursor"]})
    assert [f["key"] for f in r.json()["folders"]] == ["bulk/000/"] and not r.json()["hasNext"]
    v1 = api.post("/storage/v1/object/list/bulk-small", json={"prefix": "bulk/001", "limit": 3}).json()
    assert [row["name"] for row in v1] == ["001000.bin", "001001.bin", "001002.bin"]

    # an upload replaces a generated object with a stored one; a delete removes it like any other
    r = api.post(f"/storage/v1/object/bulk-small/{key}", content=b"uploaded",
                 headers={"content-type": "text/plain", "x-upsert": "true"})
    assert r.status_code == 200, r.text
    assert api.get(f"/storage/v1/object/authenticated/bulk-small/{key}").content == b"uploaded"
    assert api.delete(f"/storage/v1/object/bulk-small/{key}").status_code == 200
    r = api.get(f"/storage/v1/object/authenticated/bulk-small/{key}")
    assert r.status_code == 400 and r.json()["code"] == "NoSuchKey"


def test_the_exporter_stages_every_bulk_object_as_generated(sbx, bulk_bucket, tmp_path):
    from supabase_backup.sources.api_client import ApiSettings
    from supabase_backup.staging import StagingArea
    from supabase_backup.sources.storage_download import export_bucket

    # the wire test replaced and deleted one object: a different count re-creates the bucket's rows
    sandbox.add_bulk_bucket(sbx, "bulk-small", SMALL_OBJECTS, size=1024, seed=7)
    staging = StagingArea.at(f"file://{tmp_path}/run").bucket("bulk-small")
    summary = export_bucket(ApiSettings(sbx["api_url"], sbx["service_key"]), staging, concurrency=8)
    assert summary["listing"] == "list-v2"
    assert summary["missing"] == 0 and summary["unreadable"] == 0
    expected = {key: sha256 for key, _, sha256 in bulk.iter_objects(bulk_bucket)}
    staged = {}
    folder = Path(staging.folder.path)
    for line in (folder / "index.jsonl").read_text().splitlines():
        record = json.loads(line)
        data = (folder / record["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"] and len(data) == 1024
        staged[record["key"]] = record["sha256"]
    assert summary["objects"] == len(staged) == SMALL_OBJECTS
    assert staged == expected


# ------------------------------------------------------------------------------------- a million objects
@pytest.fixture(scope="module")
def million_sandbox():
    with running_sandbox("million", backup_tables=False) as started:
        spec = sandbox.add_bulk_bucket(started.settings, "million", MILLION, size=1024, seed=3)
        yield started.settings, spec


def probe(path: str, spec: dict, tmp_path: Path) -> dict:
    spec_path = tmp_path / f"spec-{path}.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'include'}{os.pathsep}{ROOT}",
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, str(HERE / "million_probe.py"), path, str(spec_path)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_exported_index(staging_run: Path, spec: dict) -> None:
    """index.jsonl as export_bucket writes it for this bucket, made from the generator (the bytes
    themselves are not needed by reconcile)."""
    folder = staging_run / "storage" / spec["bucket"]
    folder.mkdir(parents=True)
    with (folder / "index.jsonl").open("w", encoding="utf-8") as index:
        for number, (key, size, sha256) in enumerate(bulk.iter_objects(spec), 1):
            etag = bulk.object_etag(spec["seed"], key)
            index.write(json.dumps({
                "key": key, "file": f"objects/{number:08d}", "size": size, "sha256": sha256,
                "content_type": "application/octet-stream", "cache_control": "max-age=3600", "etag": etag,
                "last_modified": "Sun, 01 Jun 2025 00:00:00 GMT", "listed_size": size, "listed_etag": etag,
                "listed_content_type": "application/octet-stream", "listed_cache_control": "max-age=3600",
            }) + "\n")


@pytest.mark.slow
def test_listing_inventory_and_reconcile_hold_bounded_memory_at_a_million_objects(million_sandbox, tmp_path):
    settings, bucket = million_sandbox
    staging_run = tmp_path / "run"
    spec = {"api_url": settings["api_url"], "service_key": settings["service_key"], "db_url": settings["db_url"],
            "bucket": bucket["bucket"], "staging": str(staging_run)}

    listing = probe("listing", spec, tmp_path)
    assert listing["method"] == "list-v2" and listing["in_order"]
    assert listing["objects"] == MILLION and listing["last"] == bulk.object_key(MILLION - 1)
    assert listing["rss_growth_mib"] <= MAX_RSS_GROWTH_MIB, listing

    inventory = probe("inventory", spec, tmp_path)
    assert inventory["objects"] == MILLION
    assert inventory["rss_growth_mib"] <= MAX_RSS_GROWTH_MIB, inventory

    write_exported_index(staging_run, bucket)
    reconciled = probe("reconcile", spec, tmp_path)
    assert reconciled["objects"] == MILLION and reconciled["bytes"] == MILLION * 1024
    # the inventory's eTags (made by SQL) and the generator's agree on every object
    assert reconciled["changed_after_snapshot"] == reconciled["created_after_snapshot"] == 0
    assert reconciled["fetched_after_listing"] == reconciled["unreadable"] == 0
    assert reconciled["rss_growth_mib"] <= MAX_RSS_GROWTH_MIB, reconciled
    with (staging_run / "storage" / bucket["bucket"] / "reconciled.jsonl").open() as lines:
        assert sum(1 for _ in lines) == MILLION
    print(f"RSS growth at {MILLION:,} objects: listing +{listing['rss_growth_mib']} MiB, "
          f"inventory +{inventory['rss_growth_mib']} MiB, reconcile +{reconciled['rss_growth_mib']} MiB")
