"""Benchmark suite: the Storage bucket export against baselines measured in the same run (SPEC §7).

    PYTHONPATH=include .venv/bin/python -m bench [--small 2000] [--big-mib 100] [--concurrency 8] [--repeat 3]
        [--million N] [--bulk N]

Generates one bucket (2,000 small objects of 1 B-16 KiB and one 100 MiB object), serves it from the thin
stand-in in bench/storage_export.py, then runs, each in a fresh process, ``--repeat`` rounds of

    floor, exporter, careful, floor-http.client

(interleaved, so drift of this noisy machine hits every variant alike) after one unrecorded warm-up.
``floor`` is the minimal concurrent downloader (httpx, same concurrency, bytes discarded); ``careful``
also writes and hashes every object; ``floor-http.client`` uses the standard library instead of httpx;
``exporter`` is ``supabase_backup.storage_download.export_bucket``. See bench/baseline.py and bench/README.md.

Prints a table of medians and the ratio of each variant's median seconds to ``floor``'s, writes the
run to bench/results/latest.json (overwritten) and appends it as one line to bench/results/history.jsonl.

Then it runs the archive stages (bench/stages.py; ``--skip-stages``) and a whole medium backup through
Airflow against the sum of its bare baselines (bench/whole_run.py; ``--skip-whole-run``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.storage_export import make_data

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BASELINE = "floor"
ORDER = ["floor", "exporter", "careful", "floor-http.client", "floor-urllib3"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(port: int, server: subprocess.Popen) -> None:
    for _ in range(200):
        if server.poll() is not None:
            sys.exit("the stand-in server exited before it listened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("the stand-in server did not listen within 10 s")


def run_variant(variant: str, url: str, scratch: Path, concurrency: int, run: str) -> dict:
    """One measurement in a fresh process; returns its JSON line with the common fields.

    Its files stay until the suite ends (the scratch folder goes then): on an ext4 without a journal
    (this machine's) a new file is never given an inode freed in the last minute or more, and the
    allocator reads past each such inode one by one. Deleting each variant's 2,000 files right after
    it ran made the next file-writing variant pay for them: 0.5-1 ms of system CPU per file created
    instead of 0.03 ms.
    """
    target = scratch / f"out-{variant}-{run}"
    if variant == "exporter":
        command = [sys.executable, str(HERE / "storage_export.py"), "export", "--url", url,
                   "--staging", str(target), "--concurrency", str(concurrency)]
    else:
        command = [sys.executable, str(HERE / "baseline.py"), "--url", url, "--variant", variant,
                   "--concurrency", str(concurrency), "--target", str(target)]
    env = {**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING", "PYTHONPATH": str(ROOT / "include")}
    finished = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if finished.returncode != 0:
        sys.exit(f"{variant} failed:\n{finished.stderr}")
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    if variant == "exporter":
        result["cpu_seconds"] = result.pop("exporter_cpu_seconds")
        result["rss_growth_mib"] = result.pop("export_rss_growth_mib")
    return result


def git_state() -> dict:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "include_dirty": bool(git("status", "--porcelain", "--", "include"))}


def summarise(runs: list[dict]) -> dict:
    seconds = [run["seconds"] for run in runs]
    median_seconds = statistics.median(seconds)
    return {
        "median_seconds": round(median_seconds, 3),
        "min_seconds": min(seconds),
        "max_seconds": max(seconds),
        "mib_per_second": round(runs[0]["bytes"] / 2**20 / median_seconds, 1),
        "median_cpu_seconds": round(statistics.median(run["cpu_seconds"] for run in runs), 2),
        "median_user_cpu_seconds": round(statistics.median(run["user_cpu_seconds"] for run in runs), 2),
        "median_system_cpu_seconds": round(statistics.median(run["system_cpu_seconds"] for run in runs), 2),
        "median_peak_rss_mib": round(statistics.median(run["peak_rss_mib"] for run in runs), 1),
        "median_rss_after_imports_mib": round(statistics.median(run["rss_after_imports_mib"] for run in runs), 1),
        "median_rss_growth_mib": round(statistics.median(run["rss_growth_mib"] for run in runs), 1),
        "max_rss_growth_mib": max(run["rss_growth_mib"] for run in runs),
    }


def print_table(document: dict) -> None:
    variants = document["variants"]
    print()
    print(f"Storage export: {document['settings']['small_objects']} small objects + {document['settings']['big_mib']} MiB object, "
          f"{document['settings']['concurrency']} threads, median of {document['settings']['repeat']}, {document['machine']['cpus']} CPUs")
    header = (f"{'variant':<18} {'median s':>9} {'min-max s':>13} {'MiB/s':>7} {'CPU s':>6} {'user':>5} {'sys':>5} "
              f"{'peak RSS':>9} {'RSS growth':>11} {'vs floor':>9}")
    print(header)
    print("-" * len(header))
    for name in ORDER:
        if name not in variants:
            continue
        summary = variants[name]["summary"]
        spread = f"{summary['min_seconds']:.2f}-{summary['max_seconds']:.2f}"
        print(f"{name:<18} {summary['median_seconds']:>9.2f} {spread:>13} {summary['mib_per_second']:>7.1f} "
              f"{summary['median_cpu_seconds']:>6.2f} {summary['median_user_cpu_seconds']:>5.2f} "
              f"{summary['median_system_cpu_seconds']:>5.2f} {summary['median_peak_rss_mib']:>8.1f}M "
              f"{summary['median_rss_growth_mib']:>10.1f}M {document['ratios_vs_floor'][name]:>8.2f}x")
    exporter = variants["exporter"]["summary"]
    print()
    print(f"exporter / floor (median seconds): {document['ratios_vs_floor']['exporter']:.2f}x   "
          f"exporter / careful: {document['exporter_vs_careful']:.2f}x   "
          f"exporter / floor-http.client: {document['exporter_vs_http_client']:.2f}x   "
          f"exporter / floor-urllib3: {document['exporter_vs_floor_urllib3']:.2f}x")
    print(f"exporter RSS: {exporter['median_rss_after_imports_mib']:.1f} MiB after imports, "
          f"+{exporter['median_rss_growth_mib']:.1f} MiB during the export (max +{exporter['max_rss_growth_mib']:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000, help="number of small objects (default 2000)")
    parser.add_argument("--big-mib", type=int, default=100, help="size of the one big object in MiB (default 100)")
    parser.add_argument("--concurrency", type=int, default=8, help="download threads, every variant (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/results/ alone")
    parser.add_argument("--skip-export", action="store_true", help="leave out the storage export suite")
    parser.add_argument("--skip-stages", action="store_true",
                        help="leave out the archive stages (bench/stages.py)")
    parser.add_argument("--skip-whole-run", action="store_true",
                        help="leave out the whole medium run through Airflow (bench/whole_run.py)")
    parser.add_argument("--million", type=int, default=0,
                        help="stages: also write and verify an archive of this many 1 KB objects "
                             "(e.g. 1000000; minutes, memory figures)")
    parser.add_argument("--bulk", type=int, default=0,
                        help="also export and reconcile the sandbox's synthetic bulk bucket of this many 1 KB "
                             "objects (bench/bulk_export.py; e.g. 1000000: about half an hour)")
    args = parser.parse_args()
    if not args.skip_export:
        run_export_suite(args)
    if not args.skip_stages or args.million:
        from bench import stages

        stage_arguments = ["--repeat", str(args.repeat)]
        if args.skip_stages:
            stage_arguments += ["--only", ""]
        if args.million:
            stage_arguments += ["--million", str(args.million)]
        if args.no_record:
            stage_arguments.append("--no-record")
        stages.main(stage_arguments)
    if not args.skip_whole_run:
        from bench import whole_run

        whole_run.main(["--repeat", str(args.repeat)] + (["--no-record"] if args.no_record else []))
    if args.bulk:
        from bench import bulk_export

        bulk_export.main(["--objects", str(args.bulk), "--concurrency", str(args.concurrency)]
                         + (["--no-record"] if args.no_record else []))


def run_export_suite(args) -> None:

    started = time.perf_counter()
    expected_objects = args.small + (1 if args.big_mib else 0)
    runs: dict[str, list[dict]] = {name: [] for name in ORDER}
    with tempfile.TemporaryDirectory(prefix="bench-") as temporary:
        scratch = Path(temporary)
        data_dir = scratch / "data"
        make_data(data_dir, args.small, args.big_mib)
        expected_bytes = sum(entry["size"] for entry in json.loads((data_dir / "manifest.json").read_text()).values())
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, str(HERE / "storage_export.py"), "serve", "--data", str(data_dir), "--port", str(port)])
        try:
            wait_for(port, server)
            run_variant(BASELINE, url, scratch, args.concurrency, "warm-up")  # warm-up: page cache, server, imports
            for round_number in range(1, args.repeat + 1):
                for name in ORDER:
                    result = run_variant(name, url, scratch, args.concurrency, str(round_number))
                    if result["objects"] != expected_objects or result["bytes"] != expected_bytes or result.get("missing", 0):
                        sys.exit(f"{name} did not fetch the whole bucket: {result}")
                    runs[name].append(result)
                    print(f"round {round_number}/{args.repeat} {name:<18} {result['seconds']:7.3f} s  "
                          f"peak RSS {result['peak_rss_mib']:6.1f} MiB", flush=True)
        finally:
            server.terminate()
            server.wait()

    variants = {name: {"summary": summarise(runs[name]), "runs": runs[name]} for name in ORDER}
    floor_seconds = variants[BASELINE]["summary"]["median_seconds"]
    document = {
        "benchmark": "storage_export",
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_state(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"small_objects": args.small, "big_mib": args.big_mib, "objects": expected_objects,
                     "bytes": expected_bytes, "concurrency": args.concurrency, "repeat": args.repeat,
                     "order": ORDER, "baseline": BASELINE},
        "ratios_vs_floor": {name: round(variants[name]["summary"]["median_seconds"] / floor_seconds, 2) for name in ORDER},
        "exporter_vs_careful": round(variants["exporter"]["summary"]["median_seconds"]
                                     / variants["careful"]["summary"]["median_seconds"], 2),
        "exporter_vs_http_client": round(variants["exporter"]["summary"]["median_seconds"]
                                         / variants["floor-http.client"]["summary"]["median_seconds"], 2),
        "exporter_vs_floor_urllib3": round(variants["exporter"]["summary"]["median_seconds"]
                                           / variants["floor-urllib3"]["summary"]["median_seconds"], 2),
        "variants": variants,
        "suite_seconds": round(time.perf_counter() - started, 1),
    }
    print_table(document)
    print(f"\nsuite took {document['suite_seconds']:.0f} s")
    if not args.no_record:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
        with (RESULTS / "history.jsonl").open("a") as history:
            history.write(json.dumps(document) + "\n")
        print(f"wrote {RESULTS / 'latest.json'} and appended to {RESULTS / 'history.jsonl'}")


if __name__ == "__main__":
    main()
