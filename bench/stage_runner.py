"""One measurement of one stage variant, in a fresh process; prints one JSON line.

    python bench/stage_runner.py VARIANT --spec SPEC.json

Wall time starts after imports and ends when the variant's work is done (a baseline's commands
included); CPU seconds are this process's and its children's user + system time; ``peak_rss_mib``
is the larger of this process's peak and its largest child's (a child's figure is an upper bound: it
includes what it inherited at fork); ``rss_growth_mib`` is this process's peak minus its RSS after
imports (what the variant itself held).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

CREATED = datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)


def rss_now_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """VmHWM: this process image's own peak. (ru_maxrss is not used for the process itself: Linux
    carries it over an exec, so it would report the parent's peak.)"""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def planned_members(spec: dict):
    from supabase_backup.archive.build import PlannedMember

    for name, path, size, sha256, content_type in json.loads(Path(spec["members"]).read_text()):
        yield PlannedMember(name, Path(path), size, sha256, content_type)


def compressor(spec: dict, variant: str):
    """zlib level 6 for the ``-zlib`` variants, else the library's default (isal level 2)."""
    from supabase_backup.archive import zip_stream

    return zip_stream.zlib_compressor if variant.endswith("-zlib") else zip_stream.isal_compressor


def s3_client(spec: dict):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=spec["s3_endpoint"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                      request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required"))


class Synthetic:
    """A million-object stand-in for a staged file: 1 KiB of seeded text, made on open."""

    def __init__(self, number: int) -> None:
        self.number = number

    def content(self) -> bytes:
        return synthetic_bytes(self.number)

    def open(self, mode: str = "rb"):
        return io.BytesIO(self.content())


def synthetic_bytes(number: int) -> bytes:
    seed = hashlib.sha256(b"%d" % number).hexdigest().encode()
    return (seed * 16)[:1000] + b"%024d" % number


def synthetic_members(count: int, manifest_path: str | None = None):
    from supabase_backup.archive.members import MANIFEST_MEMBER
    from supabase_backup.archive.build import PlannedMember

    if manifest_path:
        with open(manifest_path, "rb") as manifest_file:
            digest = hashlib.file_digest(manifest_file, "sha256").hexdigest()
        yield PlannedMember(MANIFEST_MEMBER, Path(manifest_path), Path(manifest_path).stat().st_size,
                            digest, "application/json")
    for number in range(count):
        data = synthetic_bytes(number)
        folder = number // 1000
        yield PlannedMember(f"storage/bulk/folder-{folder:04d}/object {number:07d}.txt",
                            Synthetic(number), len(data), hashlib.sha256(data).hexdigest(),
                            "text/plain")


class ZipfileArchive:
    """restore.RestoreArchive's interface over zipfile.ZipFile, the reader restore used before
    issue 10 (a ZipInfo per member, all held): the baseline runs the library's own check and plan
    over it, so only the reader differs."""

    def __init__(self, path: str) -> None:
        import zipfile

        self._zip = zipfile.ZipFile(path)
        self.first_unsafe = None

    def read_central_directory(self) -> int:
        from supabase_backup.archive.members import member_path_problem

        infos = self._zip.infolist()
        for info in infos:
            problem = member_path_problem(info.orig_filename)
            if problem and self.first_unsafe is None:
                self.first_unsafe = (info.orig_filename, problem)
        return len(infos)

    def entry(self, name: str):
        from supabase_backup.archive.zip_stream import ZipEntry

        try:
            info = self._zip.getinfo(name)
        except KeyError:
            return None
        return ZipEntry(info.filename, info.compress_type, info.flag_bits, info.CRC,
                        info.compress_size, info.file_size, info.header_offset)

    def open(self, name: str):
        return self._zip.open(name)

    def close(self) -> None:
        self._zip.close()


def scratch_bytes(folder: str) -> int:
    return sum(path.stat().st_size for path in Path(folder).glob("supabase-backup-restore-*/*"))


def million_restore(variant: str, spec: dict) -> dict:
    """restore over the million-object archive: the name checks and the dry-run plan (``-plan-``),
    the whole ``supabase-backup restore --dry-run`` (verify included), or every object member
    opened by name and read as the storage upload does, without the HTTP (``-read-``)."""
    import contextlib

    from supabase_backup.restore import archive as restore

    if variant == "million-restore-dry-run-ours":
        from supabase_backup.cli import main as command

        with contextlib.redirect_stdout(io.StringIO()) as printed:  # the plan: a few lines
            code = command(["restore", "--dry-run", spec["archive"]])
        if code != 0:
            raise SystemExit(f"restore --dry-run exited {code}")
        return {"plan_lines": printed.getvalue().count("\n")}
    with contextlib.ExitStack() as stack:
        if variant == "million-restore-plan-zipfile":
            archive = ZipfileArchive(spec["archive"])
            stack.callback(archive.close)
        else:
            file = stack.enter_context(open(spec["archive"], "rb"))
            archive = stack.enter_context(restore.RestoreArchive(file, spec["archive"],
                                                                 scratch_folder=spec["scratch"]))
        names = restore.check_member_names(archive)
        result = {"names_checked": names, "scratch_index_bytes": scratch_bytes(spec["scratch"])}
        if variant in ("million-restore-plan-ours", "million-restore-plan-zipfile"):
            plan = restore.plan_restore(archive)
            plan.describe(None, None, None)
            result.update(objects=plan.objects, object_bytes=plan.object_bytes)
        elif variant == "million-restore-read-ours":
            objects = read = 0
            for member in restore.iter_objects(archive):
                with archive.open(member["path"]) as source:
                    while chunk := source.read(1024 * 1024):
                        read += len(chunk)
                objects += 1
            result.update(objects=objects, object_bytes=read)
        else:
            raise SystemExit(f"unknown variant {variant}")
    return result


def run(variant: str, spec: dict, rss_after_imports: float) -> dict:
    scratch = Path(spec["scratch"])
    extra: dict = {}
    if variant == "zip-r":
        output = scratch / "zip-r.zip"
        output.unlink(missing_ok=True)
        subprocess.run(["zip", "-r", "-q", str(output), "."], cwd=spec["tree"], check=True)
        extra["archive_bytes"] = output.stat().st_size
        if spec.get("keep_as"):
            output.rename(spec["keep_as"])
        else:
            output.unlink()
    elif variant == "upload_file":
        # boto3's default TransferConfig (8 MiB parts, 10 threads); the object is left for the caller.
        s3_client(spec).upload_file(spec["file"], spec["s3_bucket"], spec["s3_key"])
        extra["archive_bytes"] = Path(spec["file"]).stat().st_size
    elif variant.startswith("ours-build"):
        from supabase_backup.archive.build import write_archive

        output = scratch / f"{variant}.zip"
        with output.open("wb") as file:
            write_archive(file, planned_members(spec), CREATED,
                          compressor_factory=compressor(spec, variant))
        extra["archive_bytes"] = output.stat().st_size
        if spec.get("keep_as"):
            output.rename(spec["keep_as"])
        else:
            output.unlink()
    elif variant == "build-then-upload_file":
        from supabase_backup.archive.build import write_archive

        output = scratch / "then-upload.zip"
        with output.open("wb") as file:
            write_archive(file, planned_members(spec), CREATED, compressor_factory=compressor(spec, variant))
        client = s3_client(spec)
        key = f"bench/then-upload-{os.getpid()}.zip"
        client.upload_file(str(output), spec["s3_bucket"], key)
        extra["archive_bytes"] = output.stat().st_size
        output.unlink()
        client.delete_object(Bucket=spec["s3_bucket"], Key=key)
    elif variant == "ours-streamed":
        from supabase_backup.destination import s3 as destination
        from supabase_backup.archive.build import write_archive

        client = s3_client(spec)
        result = destination.stream_archive(
            client, lambda out: write_archive(out, planned_members(spec), CREATED,
                                              compressor_factory=compressor(spec, variant)),
            spec["s3_bucket"], f"bench/streamed-{os.getpid()}/", CREATED,
            manifest_sha256="0" * 64, server_side_encryption="none")
        extra["archive_bytes"] = result["bytes"]
        client.delete_object(Bucket=spec["s3_bucket"], Key=result["s3_key"])
    elif variant == "download-unzip-t":
        client = s3_client(spec)
        local = scratch / "downloaded.zip"
        client.download_file(spec["s3_bucket"], spec["s3_key"], str(local))
        subprocess.run(["unzip", "-tq", str(local)], check=True, capture_output=True)
        extra["local_copy_bytes"] = local.stat().st_size
        local.unlink()
    elif variant == "ours-verify-s3":
        from supabase_backup.destination import s3 as destination

        result = destination.read_back_and_verify(
            s3_client(spec), spec["s3_bucket"], spec["s3_key"], size=spec["s3_size"],
            sha256=spec["s3_sha256"])
        extra.update(members_checked=result["members_checked"], bytes_fetched=result["bytes_fetched"])
    elif variant in ("million-write-ours", "million-write-zipfile"):
        output = scratch / f"{variant}.zip"
        if variant == "million-write-ours":
            from supabase_backup.archive.build import write_archive

            with output.open("wb") as file:
                extra.update(write_archive(file, synthetic_members(spec["objects"], spec["manifest"]), CREATED,
                                           compressor_factory=compressor(spec, variant)))
        else:
            import zipfile

            with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
                for member in synthetic_members(spec["objects"], spec["manifest"]):
                    if isinstance(member.source, Path):
                        archive.write(member.source, member.name)
                    else:
                        archive.writestr(member.name, member.source.content())
        extra["archive_bytes"] = output.stat().st_size
        if variant == "million-write-ours" and spec.get("keep_as"):
            output.rename(spec["keep_as"])
        else:
            output.unlink()
    elif variant == "million-verify-ours":
        from supabase_backup.archive.verify import verify_archive

        extra.update(verify_archive(spec["archive"], scratch_folder=spec["scratch"]))
    elif variant == "million-verify-zipfile":
        import zipfile

        with zipfile.ZipFile(spec["archive"]) as archive:
            names = archive.namelist()
            checked = 0
            for info in archive.infolist():
                with archive.open(info) as member:
                    hashlib.sha256(member.read()).hexdigest()
                checked += 1
        extra.update(members_checked=checked, names=len(names))
    elif variant.startswith("million-restore-"):
        extra.update(million_restore(variant, spec))
    elif variant == "pg_dump-f":
        output = scratch / "bare.sql"
        subprocess.run([spec["pg_dump"], "-h", "127.0.0.1", "-p", str(spec["pg_port"]), "-U", "postgres",
                        "-d", "postgres", "--format=plain", "-f", str(output)], check=True)
        extra["dump_bytes"] = output.stat().st_size
        output.unlink()
    elif variant in ("ours-dump_database", "ours-dump_database-counts"):
        import shutil

        from supabase_backup.sources.database import DatabaseSettings, dump_database
        from supabase_backup.staging import StagingArea
        from supabase_backup.sources.table_figures import DEFAULT_MAX_BYTES

        staging = StagingArea.at(f"file://{scratch}/ours-staging")
        # -counts: supabase_backup_exact_figures_max_bytes=0, every table's exact count but no
        # content checksum (the checksum reads every row a second time, beside pg_dump).
        summary = dump_database(
            DatabaseSettings.from_url(f"postgresql://postgres@127.0.0.1:{spec['pg_port']}/postgres"),
            staging, pg_dump_path=spec["pg_dump"],
            exact_figures_max_bytes=0 if variant.endswith("-counts") else DEFAULT_MAX_BYTES)
        extra["dump_bytes"] = summary["bytes"]
        shutil.rmtree(scratch / "ours-staging")
    else:
        raise SystemExit(f"unknown variant {variant}")
    return extra


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant")
    parser.add_argument("--spec", required=True)
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    import supabase_backup.archive.build  # noqa: F401 - imports before the clock starts
    import supabase_backup.destination.s3  # noqa: F401
    import boto3  # noqa: F401
    rss_after_imports = rss_now_mib()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    extra = run(args.variant, spec, rss_after_imports)
    seconds = time.perf_counter() - started
    own_peak = peak_rss_mib()
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"variant": args.variant, "seconds": round(seconds, 3),
                      "cpu_seconds": round(cpu_seconds() - cpu_before, 2),
                      "peak_rss_mib": round(max(own_peak, child_peak), 1),
                      "rss_after_imports_mib": round(rss_after_imports, 1),
                      "rss_growth_mib": round(own_peak - rss_after_imports, 1), **extra}))


if __name__ == "__main__":
    main()
