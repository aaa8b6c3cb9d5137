"""Benchmark: export one bucket of 2,000 small objects and one 100 MiB object (SPEC §7).

    .venv/bin/python bench/storage_export.py [--small 2000] [--big-mib 100] [--concurrency 8 ...]

Starts a minimal Storage stand-in (raw ASGI on uvicorn with httptools: list-v2 and authenticated
downloads from files, nothing else) in its own process, then runs ``storage.export_bucket`` in a fresh
process per setting and reports wall time, throughput and that process's peak RSS. The stand-in is
deliberately thin so the numbers measure the exporter, not the server; the sandbox's server is a
correctness stand-in with a database behind it and is slower per request.

Results are printed as JSON lines and appended to bench/results/storage_export.jsonl.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHUNK = 1024 * 1024


# --- the stand-in server ----------------------------------------------------------------------------


def make_app(data_dir: Path):
    manifest = json.loads((data_dir / "manifest.json").read_text())
    keys = sorted(manifest)

    async def read_body(receive) -> bytes:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                return body

    async def send_json(send, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["raw_path"].decode()
        if scope["method"] == "POST" and path.startswith("/storage/v1/object/list-v2/"):
            body = json.loads(await read_body(receive))
            limit = min(body.get("limit", 1000), 1000)
            start = int(body["cursor"]) if body.get("cursor") else 0
            page = keys[start:start + limit]
            reply = {"hasNext": start + limit < len(keys), "folders": [], "objects": [
                {"name": key, "id": str(index), "metadata": {"size": manifest[key]["size"], "eTag": manifest[key]["etag"]}}
                for index, key in enumerate(page, start)]}
            if reply["hasNext"]:
                reply["nextCursor"] = str(start + limit)
            await send_json(send, 200, reply)
            return
        prefix = "/storage/v1/object/authenticated/"
        if scope["method"] == "GET" and path.startswith(prefix):
            bucket, _, rest = path[len(prefix):].partition("/")
            key = "/".join(unquote(segment) for segment in rest.split("/"))
            entry = manifest.get(key)
            if entry is None:
                await send_json(send, 400, {"statusCode": "404", "code": "NoSuchKey", "error": "not_found", "message": "Object not found"})
                return
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/octet-stream"), (b"content-length", str(entry["size"]).encode()),
                (b"etag", entry["etag"].encode()), (b"cache-control", b"max-age=3600"),
                (b"last-modified", b"Wed, 25 Nov 2026 10:00:00 GMT")]})
            with open(data_dir / entry["file"], "rb") as source:
                while True:
                    chunk = source.read(CHUNK)
                    more = len(chunk) == CHUNK
                    await send({"type": "http.response.body", "body": chunk, "more_body": more})
                    if not more:
                        break
            return
        await send_json(send, 404, {"statusCode": 404, "error": "Not Found", "message": "Route not found"})

    return app


def serve(data_dir: Path, port: int) -> None:
    import uvicorn

    uvicorn.run(make_app(data_dir), host="127.0.0.1", port=port, log_level="warning",
                http="httptools", loop="uvloop", access_log=False)


def make_data(data_dir: Path, small: int, big_mib: int) -> None:
    random.seed(7)
    (data_dir / "files").mkdir(parents=True, exist_ok=True)
    manifest = {}
    for number in range(small):
        size = random.randint(1, 16 * 1024)
        content = random.randbytes(size)
        key = f"users/{number % 50:03d}/photo {number:05d}.jpg"
        (data_dir / "files" / str(number)).write_bytes(content)
        manifest[key] = {"file": f"files/{number}", "size": size, "etag": f'"{hashlib.md5(content).hexdigest()}"'}
    if big_mib:
        block = random.randbytes(CHUNK)
        digest = hashlib.md5()
        with open(data_dir / "files" / "big", "wb") as output:
            for _ in range(big_mib):
                output.write(block)
                digest.update(block)
        manifest["videos/big.bin"] = {"file": "files/big", "size": big_mib * CHUNK, "etag": f'"{digest.hexdigest()}"'}
    (data_dir / "manifest.json").write_text(json.dumps(manifest))


# --- the measured side ------------------------------------------------------------------------------


def export(url: str, staging_dir: Path, concurrency: int) -> None:
    sys.path.insert(0, str(ROOT / "include"))
    from airflow.sdk import ObjectStoragePath

    from supabase_backup.sources.api_client import ApiSettings
    from supabase_backup.staging import StagingArea
    from supabase_backup.sources.storage_download import export_bucket

    staging = StagingArea(ObjectStoragePath(f"file://{staging_dir}")).bucket("media")
    # Importing Airflow's SDK alone takes ~85 MiB; report it so the exporter's own share is visible.
    rss_after_imports_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    started = time.perf_counter()
    summary = export_bucket(ApiSettings(url, "bench-key"), staging, concurrency=concurrency)
    seconds = time.perf_counter() - started
    # The wall time above is what the baselines measure too; keep the exporter's own figure apart.
    summary["exporter_reported_seconds"] = summary.pop("seconds")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_rss_mib = usage.ru_maxrss / 1024
    cpu_seconds = usage.ru_utime + usage.ru_stime - cpu_before
    # Split, because creating thousands of files costs system time that depends on the file system's
    # state far more than on the exporter (a crowded ext4 block group: 0.05 s or 1.5 s for 2,000 files).
    print(json.dumps({"seconds": round(seconds, 3), "exporter_cpu_seconds": round(cpu_seconds, 2),
                      "user_cpu_seconds": round(usage.ru_utime - before.ru_utime, 2),
                      "system_cpu_seconds": round(usage.ru_stime - before.ru_stime, 2),
                      "peak_rss_mib": round(peak_rss_mib, 1),
                      "rss_after_imports_mib": round(rss_after_imports_mib, 1),
                      "export_rss_growth_mib": round(peak_rss_mib - rss_after_imports_mib, 1), **summary}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    serve_parser = sub.add_parser("serve")
    serve_parser.add_argument("--data", type=Path, required=True)
    serve_parser.add_argument("--port", type=int, required=True)
    export_parser = sub.add_parser("export")
    export_parser.add_argument("--url", required=True)
    export_parser.add_argument("--staging", type=Path, required=True)
    export_parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--big-mib", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    if args.command == "serve":
        serve(args.data, args.port)
        return
    if args.command == "export":
        export(args.url, args.staging, args.concurrency)
        return

    with tempfile.TemporaryDirectory(prefix="bench-storage-") as temporary:
        data_dir = Path(temporary) / "data"
        make_data(data_dir, args.small, args.big_mib)
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "serve", "--data", str(data_dir), "--port", str(port)])
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            results_path = HERE / "results" / "storage_export.jsonl"
            results_path.parent.mkdir(exist_ok=True)
            for concurrency in args.concurrency:
                for attempt in range(args.repeat):
                    staging_dir = Path(temporary) / f"staging-{concurrency}-{attempt}"
                    finished = subprocess.run(
                        [sys.executable, __file__, "export", "--url", f"http://127.0.0.1:{port}",
                         "--staging", str(staging_dir), "--concurrency", str(concurrency)],
                        capture_output=True, text=True, env={**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"},
                    )
                    if finished.returncode != 0:
                        sys.exit(finished.stderr)
                    result = json.loads(finished.stdout.strip().splitlines()[-1])
                    result.update(concurrency=concurrency, small_objects=args.small, big_mib=args.big_mib,
                                  mib_per_second=round(result["bytes"] / 2**20 / result["seconds"], 1),
                                  cpus=os.cpu_count(), recorded=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                    print(json.dumps(result))
                    with results_path.open("a") as results:
                        results.write(json.dumps(result) + "\n")
                    subprocess.run(["rm", "-rf", str(staging_dir)], check=True)
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
