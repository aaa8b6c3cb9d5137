"""One measurement against the sandbox's synthetic bulk bucket, in a fresh process; prints one JSON line.

    python bench/bulk_runner.py VARIANT --spec SPEC.json

| variant | what it does |
|---|---|
| ``floor-urllib3`` | the baseline: list-v2 pages (httpx, 1,000 rows, cursor) in one thread feeding ``concurrency`` threads that GET every object through one urllib3 pool, bytes discarded |
| ``exporter`` | ``storage_download.export_bucket`` into a local staging folder (kept for ``reconcile``) |
| ``inventory`` | ``database.write_storage_inventory``: ``storage.objects`` streamed to the staging's JSON lines |
| ``reconcile`` | ``reconcile.reconcile_bucket`` of the exporter's staging against that inventory |

Wall time starts after imports; CPU seconds are this process's user + system time; ``rss_growth_mib``
is VmHWM minus RSS after imports (bench/stage_runner.py owns those measurements).
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stage_runner import cpu_seconds, peak_rss_mib, rss_now_mib

CHUNK = 1024 * 1024
PAGE = 1000


def headers(spec: dict) -> dict:
    key = spec["service_key"]
    return {"apikey": key, "Authorization": f"Bearer {key}", "Accept-Encoding": "identity"}


def floor_urllib3(spec: dict) -> dict:
    """The least a downloader of this bucket does: keys streamed from the listing, never all held."""
    from urllib.parse import quote

    import httpx
    import urllib3

    url, bucket, concurrency = spec["api_url"], spec["bucket"], spec["concurrency"]
    keys: queue.Queue = queue.Queue(maxsize=2 * PAGE)
    done = object()

    def list_keys() -> None:
        with httpx.Client(base_url=url, headers=headers(spec), timeout=60.0) as client:
            cursor = None
            while True:
                body = {"prefix": "", "limit": PAGE, "with_delimiter": False}
                if cursor:
                    body["cursor"] = cursor
                page = client.post(f"/storage/v1/object/list-v2/{quote(bucket, safe='')}", json=body)
                page.raise_for_status()
                data = page.json()
                for row in data["objects"]:
                    keys.put(row["name"])
                if not data.get("hasNext"):
                    break
                cursor = data["nextCursor"]
        for _ in range(concurrency):
            keys.put(done)

    pool = urllib3.PoolManager(maxsize=concurrency + 2, headers=headers(spec))
    prefix = f"{url}/storage/v1/object/authenticated/{quote(bucket, safe='')}/"

    def fetch_all() -> tuple[int, int]:
        objects = size = 0
        while (key := keys.get()) is not done:
            response = pool.request("GET", prefix + "/".join(quote(part, safe="") for part in key.split("/")),
                                    preload_content=False)
            assert response.status == 200, response.status
            for chunk in response.stream(CHUNK):
                size += len(chunk)
            response.release_conn()
            objects += 1
        return objects, size

    lister = threading.Thread(target=list_keys, daemon=True)
    lister.start()
    with ThreadPoolExecutor(concurrency) as threads:
        counts = list(threads.map(lambda _: fetch_all(), range(concurrency)))
    lister.join()
    return {"objects": sum(c[0] for c in counts), "bytes": sum(c[1] for c in counts)}


def staging_area(spec: dict):
    from supabase_backup.staging import StagingArea

    return StagingArea.at(f"file://{spec['staging']}")


def exporter(spec: dict, staging) -> dict:
    from supabase_backup.sources.api_client import ApiSettings
    from supabase_backup.sources.storage_download import export_bucket

    summary = export_bucket(ApiSettings(spec["api_url"], spec["service_key"]), staging.bucket(spec["bucket"]),
                            concurrency=spec["concurrency"])
    summary["exporter_reported_seconds"] = summary.pop("seconds")
    return summary


def inventory(spec: dict, staging) -> dict:
    import psycopg

    from supabase_backup.sources.database import write_storage_inventory

    with psycopg.connect(spec["db_url"]) as connection:
        counts = write_storage_inventory(connection, staging, [spec["bucket"]])
    return {"objects": counts.get(spec["bucket"], 0)}


def reconcile(spec: dict, staging) -> dict:
    from supabase_backup.sources.reconcile import reconcile_bucket

    def fetch_missing(bucket, keys):
        raise AssertionError(f"the export missed {len(keys)} objects")

    summary = reconcile_bucket(staging, spec["bucket"], have_inventory=True, fetch_missing=fetch_missing,
                               keys_still_present=lambda bucket, keys: set(keys))
    summary.pop("unreadable_examples", None)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant", choices=["floor-urllib3", "exporter", "inventory", "reconcile"])
    parser.add_argument("--spec", required=True)
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    # Everything any variant imports, before the clock and the RSS baseline.
    import httpx  # noqa: F401
    import psycopg  # noqa: F401
    import urllib3  # noqa: F401

    staging = None
    if args.variant != "floor-urllib3":
        import supabase_backup.sources.database  # noqa: F401
        import supabase_backup.sources.reconcile  # noqa: F401
        import supabase_backup.sources.storage_download  # noqa: F401

        staging = staging_area(spec)
        staging.run_folder.exists()  # loads the filesystem implementation
    rss_after_imports = rss_now_mib()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    if args.variant == "floor-urllib3":
        extra = floor_urllib3(spec)
    else:
        extra = {"exporter": exporter, "inventory": inventory, "reconcile": reconcile}[args.variant](spec, staging)
    seconds = time.perf_counter() - started
    own_peak = peak_rss_mib()
    print(json.dumps({"variant": args.variant, "seconds": round(seconds, 3),
                      "cpu_seconds": round(cpu_seconds() - cpu_before, 2), "peak_rss_mib": round(own_peak, 1),
                      "rss_after_imports_mib": round(rss_after_imports, 1),
                      "rss_growth_mib": round(own_peak - rss_after_imports, 1), **extra}))


if __name__ == "__main__":
    main()
