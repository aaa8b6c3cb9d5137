"""The archive stages against bare baselines measured in the same run (SPEC §7, issue 10).

    PYTHONPATH=include .venv/bin/python -m bench.stages [--repeat 3] [--million 1000000] [--no-record]

Each variant runs in a fresh process (bench/stage_runner.py), interleaved with its baseline, after
one unrecorded warm-up of each; medians of ``--repeat`` are reported and every ratio is ours ÷
baseline on median wall seconds.

| stage | ours | baseline |
|---|---|---|
| archive build, medium tree | ``build.write_archive`` (isal deflate; and zlib) | Info-ZIP ``zip -r`` default level |
| build + upload, 1 GiB tree | ``destination.stream_archive`` (zip written into the multipart upload) | ``write_archive`` to a file, then boto3 ``upload_file`` |
| verify from S3, 1 GiB archive | ``destination.read_back_and_verify`` (ranged reads) | boto3 ``download_file`` then ``unzip -t`` |
| 1M × 1 KB archive (``--million``) | ``write_archive`` / ``verify_archive`` | ``zipfile`` writing / reading the same members |
| restore, same archive (``--million``) | ``restore.check_member_names`` + ``plan_restore`` over ``RestoreArchive``; the whole ``restore --dry-run``; every object read by name | the same check and plan over ``zipfile.ZipFile`` |

S3 is bench/s3_standin.py on 127.0.0.1 (objects as files, ranges by seeking; moto copies the whole
object on every ranged GET), sharing the 2 CPUs with the measured process; its CPU seconds are recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
WORDS = ("select from where insert into values users orders public storage objects bucket the of and "
         "to in is that it was for on are as with at be this alice bob carol dave erin frank").split()


def sql_text(seed: int, size: int) -> bytes:
    """COPY-like rows: numbers, timestamps, a few words; compresses like a real dump (~0.35)."""
    generator = random.Random(seed)
    lines, total, number = [], 0, 0
    while total < size:
        number += 1
        line = (f"{number}\t{generator.randint(1, 10**6)}\t2026-{generator.randint(1, 12):02d}-"
                f"{generator.randint(1, 28):02d} {generator.randint(0, 23):02d}:{generator.randint(0, 59):02d}:00+00\t"
                f"{' '.join(generator.choices(WORDS, k=generator.randint(3, 12)))}\t"
                f"{generator.random():.6f}\n")
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def json_text(seed: int, size: int) -> bytes:
    generator = random.Random(seed)
    parts, total = [], 0
    while total < size:
        user = hashlib.md5(str(generator.random()).encode()).hexdigest()
        part = json.dumps({"id": user, "email": f"{user[:8]}@example.com", "aud": "authenticated",
                           "created_at": f"2026-0{generator.randint(1, 9)}-1{generator.randint(0, 9)}T10:00:00Z",
                           "app_metadata": {"provider": "email"}, "user_metadata": {}}) + "\n"
        parts.append(part)
        total += len(part)
    return "".join(parts).encode()[:size]


def make_tree(root: Path, *, sql_mib: int, media: list[tuple[str, int]], small: int, seed: int) -> list:
    """Write a staging-like tree; returns [name, path, size, sha256, content_type] sorted by name."""
    generator = random.Random(seed)
    files: dict[str, tuple[bytes | None, str]] = {}

    def put(name: str, data: bytes, content_type: str) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[name] = (hashlib.sha256(data).hexdigest(), content_type, len(data))

    block = sql_text(seed, min(sql_mib, 40) * 2**20)
    sql_path = root / "db" / "backup.sql"
    sql_path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with sql_path.open("wb") as sql_file:
        left = sql_mib * 2**20
        while left:
            piece = block[:left]
            sql_file.write(piece)
            digest.update(piece)
            left -= len(piece)
    files["db/backup.sql"] = (digest.hexdigest(), "application/sql", sql_mib * 2**20)
    put("auth/users.json", json_text(seed, 5 * 2**20), "application/json")
    for name, mib in media:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with path.open("wb") as media_file:
            for _ in range(mib):
                chunk = generator.randbytes(2**20)
                media_file.write(chunk)
                digest.update(chunk)
        files[name] = (digest.hexdigest(), "video/mp4" if name.endswith(".mp4") else None, mib * 2**20)
    for number in range(small):
        size = generator.randint(1, 16 * 1024)
        kind = number % 5
        if kind == 0:
            put(f"storage/public/img/{number:05d}.png", generator.randbytes(size), "image/png")
        elif kind == 1:
            put(f"storage/public/pages/{number:05d}.html",
                (b"<p>" + sql_text(number, size) + b"</p>")[:size], "text/html")
        elif kind == 2:
            put(f"storage/private/data/{number:05d}.json", json_text(number, size), "application/json")
        else:
            put(f"storage/private/docs/{number:05d} notes.txt", sql_text(number, size), "text/plain")
    return [[name, str(root / name), files[name][2], files[name][0], files[name][1]]
            for name in sorted(files)]


def run_variant(variant: str, spec_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    done = subprocess.run([sys.executable, str(HERE / "stage_runner.py"), variant, "--spec",
                           str(spec_path)], capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    seconds = [run["seconds"] for run in runs]
    summary = {
        "median_seconds": round(statistics.median(seconds), 3),
        "min_seconds": min(seconds), "max_seconds": max(seconds),
        "median_cpu_seconds": round(statistics.median(run["cpu_seconds"] for run in runs), 2),
        "median_peak_rss_mib": round(statistics.median(run["peak_rss_mib"] for run in runs), 1),
        "median_rss_growth_mib": round(statistics.median(run["rss_growth_mib"] for run in runs), 1),
        "max_rss_growth_mib": max(run["rss_growth_mib"] for run in runs),
    }
    if "server_cpu_seconds" in runs[0]:
        summary["median_server_cpu_seconds"] = round(
            statistics.median(run["server_cpu_seconds"] for run in runs), 2)
    for name in ("archive_bytes", "dump_bytes"):
        if name in runs[0]:
            summary[name] = runs[0][name]
    return summary


def process_cpu_seconds(pid: int | None) -> float:
    """user + system seconds of another process (the S3 server), from /proc."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, variants: list[str], baseline: str, spec: dict, scratch: Path, repeat: int,
            warm_up: bool = True, server_pid: int | None = None) -> dict:
    spec_path = scratch / f"spec-{name}.json"
    spec_path.write_text(json.dumps(spec))
    if warm_up:
        for variant in variants:
            run_variant(variant, spec_path)
    runs: dict[str, list[dict]] = {variant: [] for variant in variants}
    for round_number in range(1, repeat + 1):
        for variant in variants:
            server_before = process_cpu_seconds(server_pid)
            result = run_variant(variant, spec_path)
            if server_pid is not None:
                result["server_cpu_seconds"] = round(process_cpu_seconds(server_pid) - server_before, 2)
            runs[variant].append(result)
            print(f"  {name} round {round_number}/{repeat} {variant:<24} {result['seconds']:7.2f} s  "
                  f"CPU {result['cpu_seconds']:6.2f} s  RSS +{result['rss_growth_mib']:.1f} MiB", flush=True)
    summaries = {variant: {"summary": summarise(runs[variant]), "runs": runs[variant]}
                 for variant in variants}
    base = summaries[baseline]["summary"]["median_seconds"]
    ratios = {variant: round(summaries[variant]["summary"]["median_seconds"] / base, 2)
              for variant in variants}
    return {"baseline": baseline, "variants": summaries, "ratios": ratios}


def start_s3(port: int, data: Path) -> subprocess.Popen:
    """The thin S3 stand-in (bench/s3_standin.py: moto copies the whole object on every ranged GET)."""
    server = subprocess.Popen([sys.executable, str(HERE / "s3_standin.py"), "--data", str(data),
                               "--port", str(port)])
    import socket

    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return server
        except OSError:
            time.sleep(0.05)
    sys.exit("the S3 stand-in did not start")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def archive_with_manifest(members: list, scratch: Path, output: Path) -> tuple[int, str]:
    """A real backup archive (manifest first) of ``members``, for the verify stage."""
    import io

    from supabase_backup.archive import build
    from supabase_backup.archive.members import MANIFEST_MEMBER
    from supabase_backup.archive import manifest
    from supabase_backup.archive.hashing import HashingWriter

    manifest_path = scratch / "verify-manifest.json"
    with manifest_path.open("w", encoding="utf-8") as manifest_file:
        manifest.write_manifest(manifest_file, {"run": {"run_id": "bench"}},
                                ({"path": name, "size": size, "sha256": sha256}
                                 for name, _, size, sha256, _ in members))
    manifest_bytes = manifest_path.read_bytes()
    planned = [build.PlannedMember(MANIFEST_MEMBER, manifest_path, len(manifest_bytes),
                                     hashlib.sha256(manifest_bytes).hexdigest())]
    planned += [build.PlannedMember(name, Path(path), size, sha256, content_type)
                for name, path, size, sha256, content_type in members]
    del io
    with output.open("wb") as file:
        writer = HashingWriter(file)
        build.write_archive(writer, planned, archive_created())
    return writer.size, writer.sha256


def archive_created():
    from datetime import datetime, timezone

    return datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)


def million_manifest(count: int, path: Path, *, objects: bool = False) -> None:
    """The million case's manifest; ``objects``: each member also records its bucket and key, as
    a backup's do, so restore can plan and read it (the write and verify stages leave them out)."""
    sys.path.insert(0, str(HERE))
    from stage_runner import synthetic_members  # noqa: E402

    from supabase_backup.archive import manifest
    from supabase_backup.archive.members import key_of_member

    def listed(member):
        entry = {"path": member.name, "size": member.size, "sha256": member.sha256}
        if objects:
            bucket, key = key_of_member(member.name)
            entry["object"] = {"bucket": bucket, "key": key, "content_type": member.content_type}
        return entry

    header = {"run": {"run_id": "bench-million"}}
    if objects:
        header["storage"] = {"buckets": [{"bucket": "bulk", "settings": {"name": "bulk"}}]}
    with path.open("w", encoding="utf-8") as manifest_file:
        manifest.write_manifest(manifest_file, header,
                                (listed(member) for member in synthetic_members(count)))


def run_stages(repeat: int, million: int, scratch: Path, only: set[str]) -> dict:
    stages: dict[str, dict] = {}
    settings: dict[str, object] = {"repeat": repeat}

    if "archive_build" in only:
        medium_stage(stages, settings, scratch, repeat)
    if only & {"build_upload", "verify_s3"}:
        large_stages(stages, settings, scratch, repeat, only)
    if "database" in only:
        database_stage(stages, settings, scratch, repeat)
    if million:
        million_stages(stages, settings, scratch, million,
                       {part for part in only if part.startswith("million_")} or set(MILLION_STAGES))
    return {"settings": settings, "stages": stages}


def medium_stage(stages: dict, settings: dict, scratch: Path, repeat: int) -> None:
    print("archive build, medium tree: generating …", flush=True)
    medium = scratch / "medium"
    members = make_tree(medium, sql_mib=40, media=[("storage/media/big.bin", 200)], small=2000, seed=1)
    (scratch / "medium-members.json").write_text(json.dumps(members))
    settings["medium_tree"] = {"files": len(members), "bytes": sum(m[2] for m in members)}
    stages["archive_build"] = measure(
        "archive_build", ["zip-r", "ours-build", "ours-build-zlib"], "zip-r",
        {"tree": str(medium), "members": str(scratch / "medium-members.json"), "scratch": str(scratch)},
        scratch, repeat)
    shutil.rmtree(medium)


def large_stages(stages: dict, settings: dict, scratch: Path, repeat: int, only: set[str]) -> None:
    print("build + upload and verify, 1 GiB tree: generating …", flush=True)
    large = scratch / "large"
    members = make_tree(large, sql_mib=200, media=[(f"storage/video/clip-{n}.mp4", 256) for n in range(3)],
                        small=2000, seed=2)
    (scratch / "large-members.json").write_text(json.dumps(members))
    settings["large_tree"] = {"files": len(members), "bytes": sum(m[2] for m in members)}
    port = free_port()
    s3_server = start_s3(port, scratch / "s3")
    try:
        import boto3
        from botocore.config import Config

        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing",
                              config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                            request_checksum_calculation="when_required",
                                            response_checksum_validation="when_required"))
        common = {"members": str(scratch / "large-members.json"), "scratch": str(scratch),
                  "s3_endpoint": endpoint, "s3_bucket": "bench"}
        if "build_upload" in only:
            stages["build_upload"] = measure(
                "build_upload", ["build-then-upload_file", "ours-streamed"],
                "build-then-upload_file", common, scratch, repeat, server_pid=s3_server.pid)
        if "verify_s3" not in only:
            return
        verify_archive_path = scratch / "verify.zip"
        size, sha256 = archive_with_manifest(members, scratch, verify_archive_path)
        client.upload_file(str(verify_archive_path), "bench", "bench/verify.zip")
        verify_archive_path.unlink()
        settings["verify_archive_bytes"] = size
        stages["verify_s3"] = measure(
            "verify_s3", ["download-unzip-t", "ours-verify-s3"], "download-unzip-t",
            {**common, "s3_key": "bench/verify.zip", "s3_size": size, "s3_sha256": sha256},
            scratch, repeat, server_pid=s3_server.pid)
    finally:
        s3_server.terminate()
        s3_server.wait()
    shutil.rmtree(large)


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def database_stage(stages: dict, settings: dict, scratch: Path, repeat: int) -> None:
    """pgbench scale 20 in a throwaway Postgres 15 cluster (run as the postgres OS user)."""
    import shutil as shell

    if not (PG_BIN / "pgbench").exists():
        print("database stage skipped: no Postgres 15 binaries", flush=True)
        return
    cluster = Path(tempfile.mkdtemp(prefix="bench-pg-", dir="/tmp"))
    os.chmod(cluster, 0o755)
    data, port = cluster / "data", free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shell.chown(cluster, "postgres", "postgres")
    subprocess.run(as_postgres + [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                  "--auth=trust", "--no-sync"], check=True, capture_output=True)
    subprocess.run(as_postgres + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(cluster / "log"),
                                  "-o", f"-p {port} -k {cluster} -c listen_addresses=127.0.0.1 -c fsync=off",
                                  "start"], check=True, capture_output=True)
    try:
        print("database stage: pgbench -i -s 20 …", flush=True)
        subprocess.run([str(PG_BIN / "pgbench"), "-i", "-s", "20", "-q", "-h", "127.0.0.1", "-p", str(port),
                        "-U", "postgres", "postgres"], check=True, capture_output=True)
        settings["database"] = {"pgbench_scale": 20, "server": "PostgreSQL 15"}
        stages["database"] = measure(
            "database", ["pg_dump-f", "ours-dump_database", "ours-dump_database-counts"], "pg_dump-f",
            {"pg_dump": str(PG_BIN / "pg_dump"), "pg_port": port, "scratch": str(scratch)},
            scratch, repeat)
    finally:
        subprocess.run(as_postgres + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shell.rmtree(cluster, ignore_errors=True)


MILLION_STAGES = ("million_write", "million_verify", "million_restore")


def million_stages(stages: dict, settings: dict, scratch: Path, million: int, parts: set[str]) -> None:
    settings["million_objects"] = million
    if parts & {"million_write", "million_verify"}:
        print(f"{million:,} objects: manifest …", flush=True)
        manifest_path = scratch / "million-manifest.json"
        million_manifest(million, manifest_path)
        kept = scratch / "million.zip"
        spec = {"objects": million, "manifest": str(manifest_path), "scratch": str(scratch),
                "keep_as": str(kept)}
        # One round each: these take minutes and measure memory, which does not vary run to run.
        stages["million_write"] = measure("million_write", ["million-write-zipfile", "million-write-ours"],
                                          "million-write-zipfile", spec, scratch, 1, warm_up=False)
        stages["million_verify"] = measure("million_verify", ["million-verify-zipfile", "million-verify-ours"],
                                           "million-verify-zipfile", {**spec, "archive": str(kept)},
                                           scratch, 1, warm_up=False)
        kept.unlink()
    if "million_restore" in parts:
        million_restore_stage(stages, scratch, million)


def million_restore_stage(stages: dict, scratch: Path, million: int) -> None:
    """restore's name checks and dry-run plan over the million-object archive against the same
    check and plan over zipfile's reader; the whole dry run (verify included); and every object
    opened by name and read, as the storage upload does (issue 10)."""
    print(f"{million:,} objects: restore archive (manifest with buckets and keys) …", flush=True)
    manifest_path = scratch / "million-restore-manifest.json"
    million_manifest(million, manifest_path, objects=True)
    kept = scratch / "million-restore.zip"
    spec = {"objects": million, "manifest": str(manifest_path), "scratch": str(scratch),
            "keep_as": str(kept)}
    spec_path = scratch / "spec-million-restore-build.json"
    spec_path.write_text(json.dumps(spec))
    run_variant("million-write-ours", spec_path)  # the input, not a measurement
    manifest_path.unlink()
    stages["million_restore"] = measure(
        "million_restore", ["million-restore-plan-zipfile", "million-restore-plan-ours",
                            "million-restore-dry-run-ours", "million-restore-read-ours"],
        "million-restore-plan-zipfile", {**spec, "archive": str(kept)}, scratch, 1, warm_up=False)
    kept.unlink()


def print_stages(document: dict) -> None:
    print()
    header = f"{'stage':<15} {'variant':<24} {'median s':>9} {'CPU s':>7} {'RSS growth':>11} {'peak RSS':>9} {'MiB out':>8} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for stage, result in document["stages"].items():
        for variant, data in result["variants"].items():
            summary = data["summary"]
            out = summary.get("archive_bytes")
            print(f"{stage:<15} {variant:<24} {summary['median_seconds']:>9.2f} {summary['median_cpu_seconds']:>7.2f} "
                  f"{summary['median_rss_growth_mib']:>10.1f}M {summary['median_peak_rss_mib']:>8.1f}M "
                  f"{(out / 2**20 if out else 0):>8.1f} {result['ratios'][variant]:>5.2f}x")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--million", type=int, default=0,
                        help="also write and verify an archive of this many 1 KB objects (e.g. 1000000)")
    parser.add_argument("--only", default="archive_build,build_upload,verify_s3,database",
                        help="comma-separated stages to run (default: all but the million case); "
                             "with --million, naming million_write,million_verify (run together) "
                             "or million_restore runs only those of the million case")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--record-as", metavar="NAME",
                        help="results file name: NAME-latest.json and NAME-history.jsonl "
                             "(default: stages, or stages-million with --million)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sys.path.insert(0, str(ROOT / "include"))
    from bench.__main__ import git_state  # one definition of the recorded git state

    with tempfile.TemporaryDirectory(prefix="bench-stages-") as temporary:
        document = {"benchmark": "stages", "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "git": git_state(), "machine": {"cpus": os.cpu_count()},
                    **run_stages(args.repeat, args.million, Path(temporary),
                                   {part for part in args.only.split(",") if part})}
    document["suite_seconds"] = round(time.perf_counter() - started, 1)
    print_stages(document)
    print(f"\nstages took {document['suite_seconds']:.0f} s")
    if not args.no_record:
        RESULTS.mkdir(exist_ok=True)
        name = args.record_as or ("stages-million" if args.million else "stages")
        (RESULTS / f"{name}-latest.json").write_text(json.dumps(document, indent=2) + "\n")
        with (RESULTS / f"{name}-history.jsonl").open("a") as history:
            history.write(json.dumps(document) + "\n")
        print(f"wrote {RESULTS / (name + '-latest.json')}")


if __name__ == "__main__":
    main()
