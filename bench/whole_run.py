"""A whole backup run through Airflow against the sum of its stages' bare baselines (issue 10).

    PYTHONPATH=include:. .venv/bin/python -m bench.whole_run [--repeat 3] [--no-record]

Starts the medium sandbox (Postgres 15, the Storage/Auth stand-in, moto S3: what `make demo` uses)
and an Airflow home in a temporary folder set up as tools/demo.py sets it (AIRFLOW_CONN_*, Variables),
then, after one unrecorded warm-up, runs ``--repeat`` interleaved rounds of

- **ours**: ``airflow dags test supabase_backup``, timed around the whole command (start-up, DAG
  parsing, every task, exit); it must end in a verified success row of ``backup_history``;
- **the baselines**, each in a fresh process on the same data and servers, imports outside the clock:
  ``pg_dump -f`` (password from PGPASSWORD), the Auth users by pages of 1,000, the urllib3 floor of
  every bucket (bench/baseline.py), Info-ZIP ``zip -r`` of an equivalent staged tree, boto3
  ``upload_file`` of that zip and boto3 ``download_file`` + ``unzip -t`` (bench/stage_runner.py).

The ratio is ours ÷ the sum of the baselines (medians). The Airflow overhead share is
(ours − the sum of the task instances' durations) ÷ ours, the durations read from the run's
metadata database. The report also splits the wall time into start-up, tasks, gaps between tasks and
exit, and each task's duration into our code (its execute, from the task log) and Airflow's part.
CPU seconds are recorded for every measurement: the measured process and its children, and the three
servers (moto, the API stand-in, Postgres), which share the 2 CPUs. The ``airflow dags test`` process's
CPU is sampled every 50 ms from /proc, so each phase and task gets its CPU seconds too: on a loaded
machine they say more than the wall time, which includes waiting for a CPU.

Writes bench/results/whole-run-latest.json and appends to bench/results/whole-run-history.jsonl.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DAG_ID = "supabase_backup"
BASELINE_ORDER = ["pg_dump-f", "auth-pages", "floor-urllib3", "zip-r", "upload_file", "download-unzip-t"]
# What each baseline stands in for among our tasks (for the per-stage comparison).
BASELINE_STAGE = {
    "pg_dump-f": "dump_database",
    "auth-pages": "export_auth_users",
    "floor-urllib3": "export_bucket (all buckets)",
    "zip-r": "build + upload (streamed)",
    "upload_file": "build + upload (streamed)",
    "download-unzip-t": "verify_upload",
}


# ------------------------------------------------------------------------------------------------
# CPU seconds of processes this benchmark does not wait for (the servers)
# ------------------------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_tree_cpu_seconds(pid: int | None) -> float:
    """user + system seconds of ``pid``, of the children it has reaped, and of its live children
    (Postgres: the postmaster reaps each connection's backend, and its background workers live on)."""
    if pid is None:
        return 0.0
    ticks = 0
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            child = _stat_fields(int(entry.name))
            if child is not None and child[1] == str(pid):
                ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------------------------------
# the run's own facts: task instances from the metadata database, our code's share from the log
# ------------------------------------------------------------------------------------------------
def utc(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def task_instances(airflow_home: Path, run_id: str) -> list[dict]:
    """The run's task instances from the metadata database (SQLite), in the order they started."""
    with sqlite3.connect(airflow_home / "airflow.db") as connection:
        rows = connection.execute(
            "SELECT task_id, map_index, rendered_map_index, state, try_number, queued_dttm, "
            "scheduled_dttm, start_date, end_date, duration FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? ORDER BY start_date", (DAG_ID, run_id)).fetchall()
    instances = []
    for task_id, map_index, rendered, state, tries, queued, scheduled, start, end, duration in rows:
        instances.append({
            "task": task_id if map_index < 0 else f"{task_id}[{rendered or map_index}]",
            "task_id": task_id, "map_index": map_index, "state": state, "try_number": tries,
            "queued": queued, "scheduled": scheduled, "start": start, "end": end,
            "duration": round(duration, 3) if duration is not None else None,
        })
    return instances


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z .*?\] (.*)$")
STARTING = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")


def read_log(log_path: Path) -> dict:
    """From the ``airflow dags test`` log: when each task was in its operator's execute, i.e. our code
    (from the end of the task runner's pre-execute group, the first ``::endgroup::`` after
    the task starts, to the start of its ``Post Execute`` group), and the first and last lines' times."""
    seconds: dict[tuple[str, int], tuple[float, float]] = {}
    current, began = None, None
    first = last = None
    for line in log_path.read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        moment, message = utc(match.group(1)), match.group(2)
        first, last = first or moment, moment
        starting = STARTING.search(message)
        if starting:
            current, began = (starting.group(1), int(starting.group(2))), None
        elif current and began is None and message.startswith("::endgroup::"):
            began = moment
        elif current and began is not None and message.startswith("::group::Post Execute"):
            seconds[current] = (began.timestamp(), moment.timestamp())
            current = None
    return {"execute": seconds, "first_line": first.timestamp(), "last_line": last.timestamp()}


class CpuSamples:
    """A process's CPU seconds (its own and its reaped children's) sampled while it runs, so that the
    CPU of any stretch of its wall time can be read off: the step function of the samples."""

    INTERVAL = 0.05

    def __init__(self) -> None:
        self.times: list[float] = []
        self.seconds: list[float] = []

    def sample(self, pid: int) -> None:
        fields = _stat_fields(pid)
        if fields is not None:
            self.times.append(time.time())
            self.seconds.append(sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK"))

    def at(self, moment: float) -> float:
        index = bisect.bisect_right(self.times, moment) - 1
        return self.seconds[index] if index >= 0 else 0.0

    def between(self, start: float, end: float) -> float:
        return round(self.at(end) - self.at(start), 2)


def breakdown(instances: list[dict], log: dict, started_at: float, ended_at: float,
              cpu: CpuSamples, total_cpu: float) -> dict:
    """Where a run's wall time and CPU went: start-up (command start to the first task: imports
    until the first log line, then bundles, parsing and the run's creation), each task (our execute
    and Airflow's part of its duration), the gaps between tasks, and the exit after the last task
    (the run's end until the last log line, then the process ending)."""
    executes = log["execute"]
    tasks, gaps, gap_cpu = [], 0.0, 0.0
    previous_end = None
    for instance in instances:
        start, end = utc(instance["start"]).timestamp(), utc(instance["end"]).timestamp()
        gap = start - previous_end if previous_end else 0.0
        if gap > 0:
            gaps += gap
            gap_cpu += cpu.between(previous_end, start)
        window = executes.get((instance["task_id"], instance["map_index"]))
        execute = round(window[1] - window[0], 3) if window else None
        tasks.append({**instance, "gap_before": round(gap, 3), "execute": execute,
                      "airflow_in_task": round(instance["duration"] - execute, 3) if execute is not None else None,
                      "cpu": cpu.between(start, end),
                      "execute_cpu": cpu.between(*window) if window else None})
        previous_end = end if previous_end is None or end > previous_end else previous_end
    first_start = utc(instances[0]["start"]).timestamp()
    return {
        "startup_seconds": round(first_start - started_at, 3),
        "startup_to_first_log_line_seconds": round(log["first_line"] - started_at, 3),
        "startup_cpu_seconds": cpu.between(started_at, first_start),
        "task_seconds": round(sum(task["duration"] or 0 for task in tasks), 3),
        "task_cpu_seconds": round(sum(task["cpu"] for task in tasks), 2),
        "execute_seconds": round(sum(task["execute"] or 0 for task in tasks), 3),
        "execute_cpu_seconds": round(sum(task["execute_cpu"] or 0 for task in tasks), 2),
        "gap_seconds": round(gaps, 3),
        "gap_cpu_seconds": round(gap_cpu, 2),
        "exit_seconds": round(ended_at - previous_end, 3),
        "exit_after_last_log_line_seconds": round(ended_at - log["last_line"], 3),
        # The last samples miss the final moments; the process's total comes from getrusage.
        "exit_cpu_seconds": round(total_cpu - cpu.at(previous_end), 2),
        "tasks": tasks,
    }


# ------------------------------------------------------------------------------------------------
# the benchmark
# ------------------------------------------------------------------------------------------------
class WholeRun:
    def __init__(self, settings: dict, scratch: Path) -> None:
        from tools import demo

        self.settings = settings
        self.scratch = scratch
        self.database_environment = demo.libpq_environment(settings["db_url"])
        self.airflow_home = scratch / "airflow"
        self.airflow_home.mkdir()
        self.environment = demo.airflow_environment(settings["env"], self.airflow_home)
        self.airflow = str(Path(sys.executable).parent / "airflow")
        self.tree = scratch / "tree"
        self.spec_path = scratch / "spec.json"
        self.baseline_zip = scratch / "baseline.zip"
        self.baseline_key = "bench/whole-run-baseline.zip"
        self.buckets: list[str] = []
        self.per_bucket: dict[str, int] = {}
        self.truth: dict = {}
        self.last_history_id = 0
        state = Path(settings["state_dir"])
        self.server_pids = {
            "s3": int((state / "s3.pid").read_text()),
            "api": int((state / "api.pid").read_text()),
            "postgres": int((Path(settings["pg_data_dir"]) / "postmaster.pid").read_text().split()[0]),
        }

    # --- set-up, not measured ------------------------------------------------------------------
    def prepare(self) -> None:
        from tools import demo
        from supabase_backup.sources.database import choose_pg_dump

        demo.apply_migration(self.database_environment)
        subprocess.run([self.airflow, "db", "migrate"], env=self.environment, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.buckets = self.query("SELECT id FROM storage.buckets ORDER BY id").splitlines()
        objects, object_bytes = self.query(
            "SELECT count(*), coalesce(sum((metadata->>'size')::bigint), 0) FROM storage.objects").split("|")
        users = int(self.query("SELECT count(*) FROM auth.users"))
        server_major = int(self.query("SHOW server_version_num")) // 10000
        pg_dump, pg_dump_version = choose_pg_dump(server_major)  # the one our dump step picks
        self.truth = {"buckets": len(self.buckets), "objects": int(objects),
                      "object_bytes": int(object_bytes), "users": users,
                      "pg_dump": pg_dump, "pg_dump_version": pg_dump_version}
        counted = dict(line.rsplit("|", 1) for line in self.query(
            "SELECT bucket_id, count(*) FROM storage.objects GROUP BY bucket_id").splitlines())
        self.per_bucket = {bucket: int(counted.get(bucket, 0)) for bucket in self.buckets}
        print(f"medium sandbox: {users:,} users, {len(self.buckets)} buckets, {int(objects):,} objects, "
              f"{int(object_bytes) / 2**20:.1f} MiB; {pg_dump_version}", flush=True)
        # The staged tree the zip baseline packs: the same bytes our run stages (dump, users, every
        # object), written once by the careful floor (objects named by number: there is no setting
        # that keeps a run's staging, and keys such as "a" and "a/b" cannot both be files).
        (self.tree / "db").mkdir(parents=True)
        subprocess.run([pg_dump, "--format=plain", "-f", str(self.tree / "db" / "backup.sql")],
                       env={**os.environ, **self.database_environment}, check=True)
        self.run_baseline_py("auth-pages", target=self.tree / "auth" / "users.json")
        for bucket in self.buckets:
            self.run_baseline_py("careful", bucket=bucket, target=self.tree / "storage" / bucket)
        tree_bytes = sum(path.stat().st_size for path in self.tree.rglob("*") if path.is_file())
        tree_files = sum(1 for path in self.tree.rglob("*") if path.is_file())
        self.truth.update(tree_files=tree_files, tree_bytes=tree_bytes)
        print(f"staged tree for the zip baseline: {tree_files:,} files, {tree_bytes / 2**20:.1f} MiB", flush=True)
        self.spec_path.write_text(json.dumps({
            "pg_dump": pg_dump, "pg_port": self.settings["pg_port"], "scratch": str(self.scratch),
            "tree": str(self.tree), "keep_as": str(self.baseline_zip), "file": str(self.baseline_zip),
            "s3_endpoint": self.settings["s3_endpoint"], "s3_bucket": self.settings["s3_bucket"],
            "s3_key": self.baseline_key,
        }))
        self.last_history_id = int(self.query("SELECT coalesce(max(id), 0) FROM public.backup_history"))

    def query(self, sql: str) -> str:
        return subprocess.run(["psql", "-At", "-c", sql], env={**os.environ, **self.database_environment},
                              check=True, capture_output=True, text=True).stdout.strip()

    def server_cpu(self) -> dict[str, float]:
        return {name: process_tree_cpu_seconds(pid) for name, pid in self.server_pids.items()}

    def measured(self, command: list[str], env: dict, while_running=None,
                 **kwargs) -> tuple[subprocess.CompletedProcess, dict]:
        """Run ``command`` to its end; its wall and CPU seconds (children included) and the servers'.
        ``while_running(process)``, when given, is called once the process has started and must
        return when it has ended."""
        servers_before, cpu_before = self.server_cpu(), children_cpu_seconds()
        started_at, started = time.time(), time.perf_counter()
        if while_running is None:
            done = subprocess.run(command, env=env, cwd=ROOT, **kwargs)
        else:
            with subprocess.Popen(command, env=env, cwd=ROOT, **kwargs) as process:
                while_running(process)
            done = subprocess.CompletedProcess(command, process.returncode)
        seconds, ended_at = time.perf_counter() - started, time.time()
        servers_after = self.server_cpu()
        return done, {
            "process_seconds": round(seconds, 3),
            "process_cpu_seconds": round(children_cpu_seconds() - cpu_before, 2),
            "server_cpu_seconds": {name: round(servers_after[name] - servers_before[name], 2)
                                   for name in servers_before},
            "started_at": started_at, "ended_at": ended_at,
        }

    # --- ours ------------------------------------------------------------------------------------
    def run_ours(self, label: str) -> dict:
        log_path = self.scratch / f"dags-test-{label}.log"
        cpu = CpuSamples()

        def sampling(process: subprocess.Popen) -> None:
            while process.poll() is None:
                cpu.sample(process.pid)
                time.sleep(CpuSamples.INTERVAL)

        with log_path.open("w") as log_file:
            done, figures = self.measured([self.airflow, "dags", "test", DAG_ID, "--conf", "{}"],
                                          self.environment, while_running=sampling,
                                          stdout=log_file, stderr=subprocess.STDOUT)
        from tools import demo

        row = demo.latest_row(self.database_environment)
        verified = (row.get("details") or {}).get("verified") or {}
        if done.returncode != 0 or not row or row["id"] <= self.last_history_id or row["status"] != "success" \
                or verified.get("sha256") != row["sha256"] or not verified.get("members_checked"):
            tail = log_path.read_text(errors="replace")[-4000:]
            sys.exit(f"the backup run did not end in a verified success row (exit {done.returncode}, "
                     f"row {row.get('id')} {row.get('status')}):\n{tail}")
        self.last_history_id = row["id"]
        if (row["storage_objects"], row["auth_users"]) != (self.truth["objects"], self.truth["users"]):
            sys.exit(f"the run backed up {row['storage_objects']} objects and {row['auth_users']} users, "
                     f"the sandbox holds {self.truth['objects']} and {self.truth['users']}")
        instances = task_instances(self.airflow_home, row["run_id"])
        parts = breakdown(instances, read_log(log_path), figures.pop("started_at"), figures.pop("ended_at"),
                          cpu, figures["process_cpu_seconds"])
        # The next run would find this archive's key taken within the same minute; moto holds it in memory.
        self.s3().delete_object(Bucket=row["s3_bucket"], Key=row["s3_key"])
        return {"seconds": figures["process_seconds"], "cpu_seconds": figures["process_cpu_seconds"],
                "server_cpu_seconds": figures["server_cpu_seconds"], "run_id": row["run_id"],
                "archive_bytes": row["size_bytes"], "database_bytes": row["database_bytes"],
                "storage_objects": row["storage_objects"], "auth_users": row["auth_users"], **parts}

    # --- baselines -------------------------------------------------------------------------------
    def run_baseline_py(self, variant: str, bucket: str | None = None, target: Path | None = None) -> dict:
        command = [sys.executable, str(HERE / "baseline.py"), "--url", self.settings["api_url"],
                   "--variant", variant, "--key", self.settings["service_key"]]
        if bucket:
            command += ["--bucket", bucket]
        if target:
            command += ["--target", str(target)]
        done, figures = self.measured(command, {**os.environ}, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{variant} {bucket or ''} failed:\n{done.stderr[-3000:]}")
        return {**json.loads(done.stdout.strip().splitlines()[-1]), **figures}

    def run_stage_runner(self, variant: str) -> dict:
        env = {**os.environ, **self.database_environment, "PYTHONPATH": str(ROOT / "include")}
        done, figures = self.measured([sys.executable, str(HERE / "stage_runner.py"), variant, "--spec",
                                       str(self.spec_path)], env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{variant} failed:\n{done.stderr[-3000:]}")
        return {**json.loads(done.stdout.strip().splitlines()[-1]), **figures}

    def run_baselines(self) -> dict[str, dict]:
        results = {"pg_dump-f": self.run_stage_runner("pg_dump-f"),
                   "auth-pages": self.run_baseline_py("auth-pages")}
        if results["auth-pages"]["objects"] != self.truth["users"]:
            sys.exit(f"auth-pages read {results['auth-pages']['objects']} users of {self.truth['users']}")
        buckets = [self.run_baseline_py("floor-urllib3", bucket=bucket) for bucket in self.buckets]
        for bucket, result in zip(self.buckets, buckets):
            if result["objects"] != self.per_bucket[bucket]:
                sys.exit(f"the floor fetched {result['objects']} of {self.per_bucket[bucket]} objects of {bucket}")
        results["floor-urllib3"] = {
            "seconds": round(sum(result["seconds"] for result in buckets), 3),
            "cpu_seconds": round(sum(result["cpu_seconds"] for result in buckets), 2),
            "process_seconds": round(sum(result["process_seconds"] for result in buckets), 3),
            "process_cpu_seconds": round(sum(result["process_cpu_seconds"] for result in buckets), 2),
            "server_cpu_seconds": {name: round(sum(result["server_cpu_seconds"][name] for result in buckets), 2)
                                   for name in self.server_pids},
            "objects": sum(result["objects"] for result in buckets),
            "bytes": sum(result["bytes"] for result in buckets),
            "buckets": {bucket: result["seconds"] for bucket, result in zip(self.buckets, buckets)},
        }
        results["zip-r"] = self.run_stage_runner("zip-r")
        results["upload_file"] = self.run_stage_runner("upload_file")
        results["download-unzip-t"] = self.run_stage_runner("download-unzip-t")
        self.s3().delete_object(Bucket=self.settings["s3_bucket"], Key=self.baseline_key)
        self.baseline_zip.unlink()
        for result in results.values():
            for name in ("started_at", "ended_at", "variant", "rss_after_imports_mib"):
                result.pop(name, None)
        return results

    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.settings["s3_endpoint"], region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")


# ------------------------------------------------------------------------------------------------
# summary
# ------------------------------------------------------------------------------------------------
def median(values) -> float:
    return round(statistics.median(list(values)), 3)


def server_total(run: dict) -> float:
    return round(sum(run["server_cpu_seconds"].values()), 2)


def summarise(ours_runs: list[dict], baseline_runs: list[dict[str, dict]]) -> dict:
    ours = {
        "median_seconds": median(run["seconds"] for run in ours_runs),
        "min_seconds": min(run["seconds"] for run in ours_runs),
        "max_seconds": max(run["seconds"] for run in ours_runs),
        "median_cpu_seconds": median(run["cpu_seconds"] for run in ours_runs),
        "median_server_cpu_seconds": {name: median(run["server_cpu_seconds"][name] for run in ours_runs)
                                      for name in ours_runs[0]["server_cpu_seconds"]},
        "median_startup_seconds": median(run["startup_seconds"] for run in ours_runs),
        "median_task_seconds": median(run["task_seconds"] for run in ours_runs),
        "median_execute_seconds": median(run["execute_seconds"] for run in ours_runs),
        "median_gap_seconds": median(run["gap_seconds"] for run in ours_runs),
        "median_exit_seconds": median(run["exit_seconds"] for run in ours_runs),
        "median_startup_cpu_seconds": median(run["startup_cpu_seconds"] for run in ours_runs),
        "median_task_cpu_seconds": median(run["task_cpu_seconds"] for run in ours_runs),
        "median_execute_cpu_seconds": median(run["execute_cpu_seconds"] for run in ours_runs),
        "median_gap_cpu_seconds": median(run["gap_cpu_seconds"] for run in ours_runs),
        "median_exit_cpu_seconds": median(run["exit_cpu_seconds"] for run in ours_runs),
        "median_startup_to_first_log_line_seconds": median(run["startup_to_first_log_line_seconds"]
                                                           for run in ours_runs),
        "median_exit_after_last_log_line_seconds": median(run["exit_after_last_log_line_seconds"]
                                                          for run in ours_runs),
    }
    shares = [(run["seconds"] - run["task_seconds"]) / run["seconds"] for run in ours_runs]
    strict = [(run["seconds"] - run["execute_seconds"]) / run["seconds"] for run in ours_runs]
    cpu_shares = [(run["cpu_seconds"] - run["task_cpu_seconds"]) / run["cpu_seconds"] for run in ours_runs]
    cpu_strict = [(run["cpu_seconds"] - run["execute_cpu_seconds"]) / run["cpu_seconds"] for run in ours_runs]
    components = {}
    for name in BASELINE_ORDER:
        runs = [round_results[name] for round_results in baseline_runs]
        components[name] = {
            "stands_in_for": BASELINE_STAGE[name],
            "median_seconds": median(run["seconds"] for run in runs),
            "median_cpu_seconds": median(run["cpu_seconds"] for run in runs),
            "median_process_seconds": median(run["process_seconds"] for run in runs),
            "median_process_cpu_seconds": median(run["process_cpu_seconds"] for run in runs),
            "median_server_cpu_seconds": median(server_total(run) for run in runs),
        }
    sums = [sum(round_results[name]["seconds"] for name in BASELINE_ORDER) for round_results in baseline_runs]
    cpu_sums = [sum(round_results[name]["cpu_seconds"] for name in BASELINE_ORDER) for round_results in baseline_runs]
    process_sums = [sum(round_results[name]["process_seconds"] for name in BASELINE_ORDER)
                    for round_results in baseline_runs]
    server_sums = [sum(server_total(round_results[name]) for name in BASELINE_ORDER) for round_results in baseline_runs]
    baseline = {"median_seconds": median(sums), "min_seconds": round(min(sums), 3), "max_seconds": round(max(sums), 3),
                "median_cpu_seconds": median(cpu_sums), "median_process_seconds": median(process_sums),
                "median_server_cpu_seconds": median(server_sums), "components": components}
    return {
        "ours": ours,
        "baseline_sum": baseline,
        "ours_vs_baseline": round(ours["median_seconds"] / baseline["median_seconds"], 2),
        "ours_vs_baseline_per_round": [round(run["seconds"] / total, 2) for run, total in zip(ours_runs, sums)],
        "airflow_overhead_share": round(statistics.median(shares), 3),
        "airflow_overhead_share_per_round": [round(share, 3) for share in shares],
        "outside_our_code_share": round(statistics.median(strict), 3),
        "airflow_cpu_share": round(statistics.median(cpu_shares), 3),
        "outside_our_code_cpu_share": round(statistics.median(cpu_strict), 3),
        "tasks": task_table(ours_runs),
    }


def task_table(ours_runs: list[dict]) -> list[dict]:
    """Per task, medians over the rounds: duration, our execute, Airflow's part, the gap before it."""
    names = [task["task"] for task in ours_runs[0]["tasks"]]
    table = []
    for name in names:
        rows = [task for run in ours_runs for task in run["tasks"] if task["task"] == name]

        def middle(field):
            values = [row[field] for row in rows if row[field] is not None]
            return median(values) if values else None

        table.append({"task": name, "state": rows[0]["state"], "duration": middle("duration"),
                      "execute": middle("execute"), "airflow_in_task": middle("airflow_in_task"),
                      "gap_before": middle("gap_before"), "cpu": middle("cpu"),
                      "execute_cpu": middle("execute_cpu")})
    return table


def print_report(document: dict) -> None:
    summary = document["summary"]
    ours, baseline = summary["ours"], summary["baseline_sum"]
    print()
    print(f"Whole medium run, median of {document['settings']['repeat']}, {document['machine']['cpus']} CPUs")
    header = f"{'':<34} {'median s':>9} {'CPU s':>7} {'servers CPU s':>14}"
    print(header)
    print("-" * len(header))
    print(f"{'ours: airflow dags test':<34} {ours['median_seconds']:>9.2f} {ours['median_cpu_seconds']:>7.2f} "
          f"{sum(ours['median_server_cpu_seconds'].values()):>14.2f}")
    for name, component in baseline["components"].items():
        print(f"{'  ' + name:<34} {component['median_seconds']:>9.2f} {component['median_cpu_seconds']:>7.2f} "
              f"{component['median_server_cpu_seconds']:>14.2f}")
    print(f"{'baselines, sum':<34} {baseline['median_seconds']:>9.2f} {baseline['median_cpu_seconds']:>7.2f} "
          f"{baseline['median_server_cpu_seconds']:>14.2f}")
    print(f"\nours ÷ baseline sum: {summary['ours_vs_baseline']:.2f}x "
          f"(per round {', '.join(f'{ratio:.2f}' for ratio in summary['ours_vs_baseline_per_round'])})")
    print(f"Airflow overhead share (ours − task durations) ÷ ours: {summary['airflow_overhead_share']:.1%}; "
          f"outside our tasks' execute: {summary['outside_our_code_share']:.1%}")
    print(f"CPU: Airflow's share (ours − task CPU) ÷ ours: {summary['airflow_cpu_share']:.1%}; outside our "
          f"tasks' execute: {summary['outside_our_code_cpu_share']:.1%}; CPU s: start-up "
          f"{ours['median_startup_cpu_seconds']:.2f}, tasks {ours['median_task_cpu_seconds']:.2f} (execute "
          f"{ours['median_execute_cpu_seconds']:.2f}), gaps {ours['median_gap_cpu_seconds']:.2f}, exit "
          f"{ours['median_exit_cpu_seconds']:.2f}")
    print(f"wall time: start-up {ours['median_startup_seconds']:.2f} s, tasks {ours['median_task_seconds']:.2f} s "
          f"(our execute {ours['median_execute_seconds']:.2f} s), gaps {ours['median_gap_seconds']:.2f} s, "
          f"exit {ours['median_exit_seconds']:.2f} s")
    print(f"  start-up: {ours['median_startup_to_first_log_line_seconds']:.2f} s to the first log line "
          f"(interpreter, Airflow imports); exit: {ours['median_exit_after_last_log_line_seconds']:.2f} s "
          f"after the last log line")
    print()
    header = (f"{'task':<30} {'state':<8} {'duration':>9} {'execute':>8} {'Airflow':>8} {'gap before':>11} "
              f"{'CPU':>6} {'exec CPU':>9}")
    print(header)
    print("-" * len(header))

    def cell(value):
        return f"{value:.2f}" if value is not None else "-"

    for row in summary["tasks"]:
        print(f"{row['task']:<30} {row['state']:<8} {cell(row['duration']):>9} {cell(row['execute']):>8} "
              f"{cell(row['airflow_in_task']):>8} {cell(row['gap_before']):>11} {cell(row['cpu']):>6} "
              f"{cell(row['execute_cpu']):>9}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.whole_run", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/results/ alone")
    args = parser.parse_args(argv)
    sys.path[:0] = [str(ROOT / "include"), str(ROOT)]
    import sandbox

    from bench.__main__ import git_state

    started = time.perf_counter()
    load_at_start = [round(value, 2) for value in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-whole-run-", dir="/tmp") as temporary:
        scratch = Path(temporary)
        os.chmod(scratch, 0o711)  # the sandbox's Postgres runs as the postgres OS user
        state_dir = scratch / "sandbox"
        print("starting the medium sandbox …", flush=True)
        settings = sandbox.up(str(state_dir), size="medium")
        try:
            bench = WholeRun(settings, scratch)
            bench.prepare()
            print("warm-up (not recorded): ours, then the baselines …", flush=True)
            bench.run_ours("warm-up")
            bench.run_baselines()
            ours_runs, baseline_runs = [], []
            for round_number in range(1, args.repeat + 1):
                # Alternate which goes first, so drift of this shared machine hits both alike.
                order = ["ours", "baselines"] if round_number % 2 else ["baselines", "ours"]
                for part in order:
                    if part == "ours":
                        ours_runs.append(bench.run_ours(f"round-{round_number}"))
                        run = ours_runs[-1]
                        print(f"round {round_number}/{args.repeat} ours       {run['seconds']:7.2f} s  "
                              f"CPU {run['cpu_seconds']:6.2f} s  tasks {run['task_seconds']:6.2f} s", flush=True)
                    else:
                        baseline_runs.append(bench.run_baselines())
                        results = baseline_runs[-1]
                        total = sum(results[name]["seconds"] for name in BASELINE_ORDER)
                        print(f"round {round_number}/{args.repeat} baselines  {total:7.2f} s  " + "  ".join(
                            f"{name} {results[name]['seconds']:.2f}" for name in BASELINE_ORDER), flush=True)
        finally:
            sandbox.down(str(state_dir), purge=True)

    document = {
        "benchmark": "whole_run",
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_state(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_start": load_at_start,
                    "load_average_at_end": [round(value, 2) for value in os.getloadavg()]},
        "settings": {"repeat": args.repeat, "sandbox": "medium", "dag_id": DAG_ID, "s3": "moto_server (the sandbox's)",
                     "data": bench.truth, "baselines": BASELINE_ORDER},
        "summary": summarise(ours_runs, baseline_runs),
        "runs": {"ours": ours_runs, "baselines": baseline_runs},
    }
    document["suite_seconds"] = round(time.perf_counter() - started, 1)
    print_report(document)
    print(f"\nwhole run benchmark took {document['suite_seconds']:.0f} s")
    if not args.no_record:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "whole-run-latest.json").write_text(json.dumps(document, indent=2) + "\n")
        with (RESULTS / "whole-run-history.jsonl").open("a") as history:
            history.write(json.dumps(document) + "\n")
        print(f"wrote {RESULTS / 'whole-run-latest.json'} and appended to {RESULTS / 'whole-run-history.jsonl'}")


if __name__ == "__main__":
    main()
