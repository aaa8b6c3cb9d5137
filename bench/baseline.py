"""Baselines for the Storage export benchmark: the least a downloader of the same bucket has to do.

    .venv/bin/python bench/baseline.py --url http://127.0.0.1:PORT --variant floor [--concurrency 8]

Each variant lists the bucket with list-v2 exactly as the exporter does (POST, 1,000 rows a page,
cursor) and then GETs every object from ``object/authenticated`` with ``--concurrency`` threads:

- ``floor``: one shared ``httpx.Client`` (the exporter's pool size; its download library until the
  downloads moved to urllib3, kept as the baseline so the history stays comparable), 1 MiB chunks,
  bytes discarded. No hashing, no files, no retries, no index. The exporter is compared with it.
- ``floor-http.client``: the same with the standard library's ``http.client``, one keep-alive
  connection per thread, reading 1 MiB at a time. Shows what httpx itself costs.
- ``floor-urllib3``: ``floor`` with urllib3's pool (``preload_content=False``, 1 MiB ``stream()``), the
  library the exporter downloads with: the least the exporter's own HTTP stack can do here.
- ``careful``: ``floor`` plus what a careful minimal script does: writes each object to its own file
  under ``--target`` and computes its SHA-256 while streaming.
- ``auth-pages``: not a Storage variant: every Auth user by ``GET /auth/v1/admin/users`` pages of 1,000
  (the bare counterpart of the backup's Auth export; bench/whole_run.py), written to ``--target``.

``--key`` sends a real key (the sandbox's service key) instead of the bench stand-in's fixed one.

Prints one JSON line: wall seconds (listing + downloads, imports excluded), bytes, objects, CPU
seconds, peak RSS and RSS after imports (so growth can be read apart from the interpreter's share).
Runs in its own process; bench/__main__.py starts one per measurement.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

CHUNK = 1024 * 1024
KEY = "bench-key"
HEADERS = {"apikey": KEY, "Authorization": f"Bearer {KEY}", "Accept-Encoding": "identity"}


def use_key(key: str) -> None:
    """Send ``key`` instead of the stand-in's fixed one (a real project's or the sandbox's key)."""
    HEADERS.update({"apikey": key, "Authorization": f"Bearer {key}"})


def object_path(bucket: str, key: str) -> str:
    # "." and ".." segments are sent encoded: URL libraries resolve them and would ask for another key
    # (a Supabase project may hold "dot/../escape.txt", written before the API refused such names).
    return f"/storage/v1/object/authenticated/{quote(bucket, safe='')}/" + "/".join(
        "%2E" * len(segment) if segment in (".", "..") else quote(segment, safe="")
        for segment in key.split("/"))


def list_keys_httpx(client: httpx.Client, bucket: str) -> list[str]:
    keys: list[str] = []
    cursor = None
    while True:
        body = {"prefix": "", "limit": 1000, "with_delimiter": False}
        if cursor:
            body["cursor"] = cursor
        page = client.post(f"/storage/v1/object/list-v2/{quote(bucket, safe='')}", json=body)
        page.raise_for_status()
        data = page.json()
        keys.extend(row["name"] for row in data["objects"])
        if not data.get("hasNext"):
            return keys
        cursor = data["nextCursor"]


def run_httpx(url: str, bucket: str, concurrency: int, target: Path | None) -> tuple[int, int]:
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60.0,
                      limits=httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)) as client:
        keys = list_keys_httpx(client, bucket)

        def fetch(numbered: tuple[int, str]) -> int:
            number, key = numbered
            size = 0
            with client.stream("GET", object_path(bucket, key)) as response:
                response.raise_for_status()
                if target is None:
                    for chunk in response.iter_bytes(CHUNK):
                        size += len(chunk)
                else:
                    digest = hashlib.sha256()
                    with open(target / f"{number:08d}", "wb") as output:
                        for chunk in response.iter_bytes(CHUNK):
                            output.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                    digest.hexdigest()
            return size

        with ThreadPoolExecutor(concurrency) as pool:
            total = sum(pool.map(fetch, enumerate(keys, 1)))
    return len(keys), total


def run_http_client(url: str, bucket: str, concurrency: int) -> tuple[int, int]:
    parts = urlsplit(url)
    local = threading.local()

    def connection() -> http.client.HTTPConnection:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        return local.connection

    keys: list[str] = []
    cursor = None
    while True:
        body = {"prefix": "", "limit": 1000, "with_delimiter": False}
        if cursor:
            body["cursor"] = cursor
        conn = connection()
        conn.request("POST", f"/storage/v1/object/list-v2/{quote(bucket, safe='')}", body=json.dumps(body),
                     headers={**HEADERS, "Content-Type": "application/json"})
        response = conn.getresponse()
        data = json.loads(response.read())
        assert response.status == 200, data
        keys.extend(row["name"] for row in data["objects"])
        if not data.get("hasNext"):
            break
        cursor = data["nextCursor"]

    def fetch(key: str) -> int:
        conn = connection()
        conn.request("GET", object_path(bucket, key), headers=HEADERS)
        response = conn.getresponse()
        assert response.status == 200, response.status
        size = 0
        while chunk := response.read(CHUNK):
            size += len(chunk)
        return size

    with ThreadPoolExecutor(concurrency) as pool:
        total = sum(pool.map(fetch, keys))
    return len(keys), total


def run_urllib3(url: str, bucket: str, concurrency: int) -> tuple[int, int]:
    import urllib3

    with httpx.Client(base_url=url, headers=HEADERS, timeout=60.0) as client:
        keys = list_keys_httpx(client, bucket)
    pool_manager = urllib3.PoolManager(maxsize=concurrency + 2, headers=HEADERS)

    def fetch(key: str) -> int:
        response = pool_manager.request("GET", url + object_path(bucket, key), preload_content=False)
        assert response.status == 200, response.status
        size = 0
        for chunk in response.stream(CHUNK):
            size += len(chunk)
        response.release_conn()
        return size

    with ThreadPoolExecutor(concurrency) as pool:
        total = sum(pool.map(fetch, keys))
    return len(keys), total


def run_auth_pages(url: str, target: Path | None, per_page: int = 1000) -> tuple[int, int]:
    """Every Auth user, page by page (``GET /auth/v1/admin/users``) until a page comes back short; the
    users are written to ``target`` as one JSON array when it is given."""
    users: list = []
    received = 0
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60.0) as client:
        page = 1
        while True:
            response = client.get("/auth/v1/admin/users", params={"page": page, "per_page": per_page})
            response.raise_for_status()
            received += len(response.content)
            batch = response.json()["users"]
            users.extend(batch)
            if len(batch) < per_page:
                break
            page += 1
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(users))
    return len(users), received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--bucket", default="media")
    parser.add_argument("--variant", choices=["floor", "floor-http.client", "floor-urllib3", "careful", "auth-pages"], required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--target", type=Path,
                        help="folder for the careful variant's files; auth-pages: the users' JSON file")
    parser.add_argument("--key", help="the API key to send (default: the bench stand-in's)")
    args = parser.parse_args()
    if args.key:
        use_key(args.key)

    rss_after_imports_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if args.variant == "floor":
        objects, total = run_httpx(args.url, args.bucket, args.concurrency, None)
    elif args.variant == "careful":
        args.target.mkdir(parents=True, exist_ok=True)
        objects, total = run_httpx(args.url, args.bucket, args.concurrency, args.target)
    elif args.variant == "auth-pages":
        objects, total = run_auth_pages(args.url, args.target)
    elif args.variant == "floor-urllib3":
        objects, total = run_urllib3(args.url, args.bucket, args.concurrency)
    else:
        objects, total = run_http_client(args.url, args.bucket, args.concurrency)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_rss_mib = usage.ru_maxrss / 1024
    print(json.dumps({
        "seconds": round(seconds, 3), "objects": objects, "bytes": total,
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime, 2),
        "user_cpu_seconds": round(usage.ru_utime - before.ru_utime, 2),
        "system_cpu_seconds": round(usage.ru_stime - before.ru_stime, 2),
        "peak_rss_mib": round(peak_rss_mib, 1), "rss_after_imports_mib": round(rss_after_imports_mib, 1),
        "rss_growth_mib": round(peak_rss_mib - rss_after_imports_mib, 1),
    }))


if __name__ == "__main__":
    main()
