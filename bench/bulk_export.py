"""Storage export and reconcile at a million small objects, against the sandbox's synthetic bulk bucket.

    PYTHONPATH=include:. .venv/bin/python -m bench.bulk_export [--objects 1000000] [--size 1024]
        [--concurrency 8] [--no-record]          (also: python -m bench --bulk N)

Starts a sandbox (sandbox/, the Storage stand-in backed by Postgres) in a temporary state dir with a
bulk bucket of ``--objects`` rows (bytes made on each GET from (seed, key), no files; sandbox/bulk.py),
then runs, one fresh process each (bench/bulk_runner.py), in this order:

    floor-urllib3   the baseline: list-v2 + GET every object with urllib3, bytes discarded
    exporter        storage_download.export_bucket into a local staging folder
    inventory       database.write_storage_inventory of the bucket (the snapshot's N rows)
    reconcile       reconcile.reconcile_bucket of the exporter's staging against that inventory

One run each: at a million objects a run takes minutes, and what it is for is memory, which does not
vary run to run. Every run is checked: the floor and the exporter fetched every object and byte, and
every staged object's sha256 is the generator's. The server side (the sandbox's API process and its
Postgres cluster) shares the machine's CPUs with the measured process; its CPU seconds are recorded per
variant beside the client's, so a ratio can be read against who was busy.

Writes bench/results/bulk-export-latest.json (overwritten) and appends to bulk-export-history.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BUCKET = "bulk"
SEED = 10
ORDER = ["floor-urllib3", "exporter", "inventory", "reconcile"]


def process_cpu_seconds(pid: int, children: bool = False) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def cluster_cpu_seconds(postmaster: int) -> float:
    """The Postgres cluster's CPU: the postmaster with its reaped children, plus every live backend."""
    total = process_cpu_seconds(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def server_cpu(settings: dict) -> dict:
    state = Path(settings["state_dir"])
    api_pid = int((state / "api.pid").read_text())
    postmaster = int(Path(settings["pg_data_dir"], "postmaster.pid").read_text().split()[0])
    return {"api": process_cpu_seconds(api_pid), "postgres": cluster_cpu_seconds(postmaster)}


def run_variant(variant: str, spec_path: Path, settings: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'include'}{os.pathsep}{ROOT}",
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
    before = server_cpu(settings)
    done = subprocess.run([sys.executable, str(HERE / "bulk_runner.py"), variant, "--spec", str(spec_path)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    after = server_cpu(settings)
    if done.returncode != 0:
        sys.exit(f"{variant} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["server_api_cpu_seconds"] = round(after["api"] - before["api"], 2)
    result["server_postgres_cpu_seconds"] = round(after["postgres"] - before["postgres"], 2)
    return result


def check_staged(staging_folder: Path, spec: dict) -> int:
    """Every staged object is the generator's: its sha256 recorded in the index and on disk."""
    from sandbox import bulk

    index = staging_folder / "storage" / BUCKET / "index.jsonl"
    seen = 0
    with index.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            expected = bulk.object_sha256(spec["seed"], record["key"], spec["size"])
            if record["sha256"] != expected:
                sys.exit(f"staged {record['key']} has sha256 {record['sha256']}, the generator {expected}")
            seen += 1
    if seen != spec["objects"]:
        sys.exit(f"the index holds {seen} objects, the bucket {spec['objects']}")
    return seen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk_export", description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per object (default 1024)")
    parser.add_argument("--concurrency", type=int, default=8, help="download threads (default 8, the DAG's)")
    parser.add_argument("--only", default=",".join(ORDER), help="comma-separated variants (default: all)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import sandbox
    from bench.__main__ import git_state

    variants = [name for name in ORDER if name in args.only.split(",")]
    started = time.perf_counter()
    state_dir = Path(tempfile.mkdtemp(prefix="bench-bulk-", dir="/tmp"))
    os.chmod(state_dir, 0o711)  # the postgres OS user must reach STATE/pg
    scratch = Path(tempfile.mkdtemp(prefix="bench-bulk-staging-"))
    results: dict[str, dict] = {}
    try:
        print(f"sandbox with a bulk bucket of {args.objects:,} × {args.size:,} B …", flush=True)
        up_started = time.perf_counter()
        settings = sandbox.up(str(state_dir), size="small")
        sandbox_seconds = time.perf_counter() - up_started
        insert_started = time.perf_counter()
        bulk_spec = sandbox.add_bulk_bucket(settings, BUCKET, args.objects, size=args.size, seed=SEED)
        insert_seconds = time.perf_counter() - insert_started
        print(f"  sandbox {sandbox_seconds:.1f} s, {args.objects:,} rows inserted and analysed in "
              f"{insert_seconds:.1f} s", flush=True)
        spec = {"api_url": settings["api_url"], "service_key": settings["service_key"],
                "db_url": settings["db_url"], "bucket": BUCKET, "concurrency": args.concurrency,
                "staging": str(scratch / "run")}
        spec_path = scratch / "spec.json"
        spec_path.write_text(json.dumps(spec))
        for variant in variants:
            result = run_variant(variant, spec_path, settings)
            if variant in ("floor-urllib3", "exporter"):
                if result["objects"] != args.objects or result["bytes"] != args.objects * args.size:
                    sys.exit(f"{variant} did not fetch the whole bucket: {result}")
            if variant == "exporter":
                check_staged(scratch / "run", bulk_spec)
            if variant == "reconcile" and result["objects"] != args.objects:
                sys.exit(f"reconcile did not keep every object: {result}")
            results[variant] = result
            if not args.no_record:  # a run cut short still leaves the variants it finished
                RESULTS.mkdir(exist_ok=True)
                (RESULTS / "bulk-export-latest.json").write_text(json.dumps(
                    {"benchmark": "bulk_export", "complete": False, "objects": args.objects,
                     "variants": results}, indent=2) + "\n")
            print(f"  {variant:<14} {result['seconds']:8.1f} s  CPU {result['cpu_seconds']:7.1f} s  "
                  f"RSS +{result['rss_growth_mib']:.1f} MiB  server CPU: API {result['server_api_cpu_seconds']:.1f} s, "
                  f"Postgres {result['server_postgres_cpu_seconds']:.1f} s", flush=True)
    finally:
        sandbox.down(str(state_dir), purge=True)
        shutil.rmtree(state_dir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)

    document = {
        "benchmark": "bulk_export", "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_state(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"objects": args.objects, "object_bytes": args.size, "concurrency": args.concurrency,
                     "server": "sandbox (sandbox/server.py + Postgres 15), synthetic bulk bucket",
                     "baseline": "floor-urllib3", "rows_insert_seconds": round(insert_seconds, 1)},
        "variants": results,
        "suite_seconds": round(time.perf_counter() - started, 1),
        "complete": True,
    }
    if "floor-urllib3" in results and "exporter" in results:
        document["exporter_vs_floor"] = round(results["exporter"]["seconds"] / results["floor-urllib3"]["seconds"], 2)
        print(f"\nexporter / floor-urllib3: {document['exporter_vs_floor']:.2f}x wall")
    print(f"took {document['suite_seconds']:.0f} s")
    if not args.no_record:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "bulk-export-latest.json").write_text(json.dumps(document, indent=2) + "\n")
        with (RESULTS / "bulk-export-history.jsonl").open("a") as history:
            history.write(json.dumps(document) + "\n")
        print(f"wrote {RESULTS / 'bulk-export-latest.json'}")


if __name__ == "__main__":
    main()
