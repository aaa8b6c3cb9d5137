"""The Supabase Postgres database: connection settings, the snapshot, and pg_dump.

One repeatable-read transaction exports a snapshot (``pg_export_snapshot()``); inside it we read the
server version, table row estimates and the exact, case-sensitive inventory of ``storage.objects``,
then run ``pg_dump --snapshot=…`` against that same snapshot while the transaction stays open. The
dump and the storage inventory therefore describe the same instant, which is what lets the
reconcile step say which objects changed after it.

A dump counts only when its own stream proves it whole (``archive.dump_scanner``, read in the same
pass that stages and hashes it): it ends with pg_dump's trailer, closes every COPY block, and each
table's rows in it equal the exact count taken in the same snapshot (``table_figures``). pg_dump's
exit status alone once let an empty, a cut and a junk output pass as backups.

The password reaches pg_dump only through the environment (``PGPASSWORD``), never argv, and no
message built here contains it.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
import psycopg.sql

from supabase_backup.archive.dump_scanner import CLUSTER_TRAILER, DATABASE_TRAILER, DumpScanner
from supabase_backup.archive.hashing import copy_hashing
from supabase_backup.archive.members import DATABASE_MEMBER, ROLES_MEMBER
from supabase_backup.errors import (
    BackupError,
    ConfigurationError,
    DatabaseDumpFailed,
    DatabaseDumpIncomplete,
    DatabaseFailed,
    DatabaseLoginRefused,
    DatabaseMissing,
    DatabaseUnreachable,
    PgDumpNotFound,
    PgDumpTooOld,
    PgDumpUnusable,
)
from supabase_backup.records.sql import scalar
from supabase_backup.sources.table_figures import (
    CHECKSUM_METHOD,
    DEFAULT_MAX_BYTES,
    compute_figures,
)
from supabase_backup.staging import StagingArea, ensure_parent
from supabase_backup.units import format_bytes, format_rate

log = logging.getLogger(__name__)

# What ``pg_dump --version`` prints: "pg_dump (PostgreSQL) 17.6" or "pg_dump (PostgreSQL) 15.18
# (Debian 15.18-0+deb12u1)"; nothing else is taken for a pg_dump.
PG_DUMP_VERSION_PATTERN = re.compile(r"pg_dump \(PostgreSQL\) (\d+)(?:\.\d+)?")
PG_DUMP_FLAGS = ("--no-owner", "--no-privileges", "--format=plain", "--verbose")


@dataclass(frozen=True)
class DatabaseSettings:
    """libpq parameters for the Supabase database (use the session pooler, port 5432)."""

    host: str
    port: int = 5432
    user: str = "postgres"
    password: str | None = field(default=None, repr=False)
    dbname: str = "postgres"
    sslmode: str | None = None
    connect_timeout: int = 15

    @classmethod
    def from_connection(cls, connection) -> DatabaseSettings:
        """From an Airflow Connection (``AIRFLOW_CONN_SUPABASE_DB='postgresql://…'``)."""
        extra = connection.extra_dejson or {}
        return cls(
            host=connection.host or "localhost",
            port=int(connection.port or 5432),
            user=connection.login or "postgres",
            password=connection.password or None,
            dbname=connection.schema or "postgres",
            sslmode=extra.get("sslmode"),
            connect_timeout=int(extra.get("connect_timeout", 15)),
        )

    @classmethod
    def from_url(cls, url: str) -> DatabaseSettings:
        """From a plain Postgres URL, ``postgresql://user:password@host:port/dbname?sslmode=require``
        (what the Supabase dashboard shows). The password is kept for libpq's environment only."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ConfigurationError(
                f"the database URL must start with postgresql:// (got {parts.scheme or 'no'} scheme)"
            )
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        try:
            port = parts.port or 5432
        except ValueError:
            raise ConfigurationError("the database URL has a port that is not a number") from None
        return cls(
            host=unquote(parts.hostname or "localhost"),
            port=port,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password) if parts.password is not None else None,
            dbname=unquote(parts.path.lstrip("/")) or "postgres",
            sslmode=query.get("sslmode"),
            connect_timeout=int(query.get("connect_timeout", 15)),
        )

    def describe(self) -> str:
        """Host, port, database and user: safe to log and put in errors."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def connect_kwargs(self) -> dict:
        kwargs = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "connect_timeout": self.connect_timeout,
            "application_name": "supabase-backup",
        }
        if self.password is not None:
            kwargs["password"] = self.password
        if self.sslmode:
            kwargs["sslmode"] = self.sslmode
        return kwargs

    def connect(self, **options) -> psycopg.Connection:
        return psycopg.connect(**self.connect_kwargs(), **options)

    def libpq_environment(self) -> dict[str, str]:
        """Environment for libpq programs (pg_dump, psql): argv then holds no credentials."""
        environment = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.dbname,
            "PGCONNECT_TIMEOUT": str(self.connect_timeout),
            "PGAPPNAME": "supabase-backup",
        }
        if self.password is not None:
            environment["PGPASSWORD"] = self.password
        if self.sslmode:
            environment["PGSSLMODE"] = self.sslmode
        return environment


# What libpq says when a connection fails (it gives no SQLSTATE then, only text). The server's
# part follows "FATAL:"; libpq's own follows the last "failed:".
_LOGIN_REFUSED = re.compile(
    r"password authentication failed|no password supplied|no pg_hba\.conf entry|"
    r"pg_hba\.conf rejects|role \S+ does not exist|permission denied for database|"
    r"authentication failed|is not permitted to log in",
    re.IGNORECASE,
)
_DATABASE_MISSING = re.compile(r'database "[^"]*" does not exist', re.IGNORECASE)
_UNREACHABLE = re.compile(
    r"connection refused|could not translate host name|failed to resolve host|timeout expired|"
    r"no route to host|network is unreachable|server closed the connection unexpectedly|"
    r"connection timed out|could not connect to server|the database system is (starting up|"
    r"shutting down)|consuming input failed|connection is lost|connection reset",
    re.IGNORECASE,
)


def connection_failure(settings: DatabaseSettings, error: psycopg.OperationalError) -> BackupError:
    """The error tree's account of a failed or lost connection: a refused login (exit 7), no
    server answering (15), a database the server lacks (16), else the server's words (2). The
    text is libpq's, which never holds the password; it is scrubbed of it all the same."""
    said = " ".join(str(error).split())
    if settings.password:
        said = said.replace(settings.password, "***")
    server_said = said.rsplit("FATAL:", 1)[-1].strip() if "FATAL:" in said else None
    if _DATABASE_MISSING.search(said):
        return DatabaseMissing(settings.host, settings.port, settings.dbname)
    if _LOGIN_REFUSED.search(said):
        reason = server_said or said.rsplit("failed:", 1)[-1].strip()
        if "no password supplied" in reason:
            reason = f"it asks user {settings.user!r} for a password and none was given"
        return DatabaseLoginRefused(settings.describe(), reason)
    if _UNREACHABLE.search(said):
        reason = (server_said or said.rsplit("failed:", 1)[-1]).split("Is the server running")[0]
        return DatabaseUnreachable(settings.host, settings.port, reason.strip().rstrip(".") or said)
    return DatabaseFailed(settings.describe(), said)


# ---------------------------------------------------------------------------------------------
# pg_dump discovery and version check


def server_major_version(server_version_num: int) -> int:
    return server_version_num // 10000


def pg_dump_version(path: str) -> tuple[int, str]:
    """(major, full version text) of a pg_dump binary, e.g. (15, '15.18')."""
    output = subprocess.run(
        [path, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    match = PG_DUMP_VERSION_PATTERN.match(output.strip())
    if not match:
        raise PgDumpUnusable(path, output.strip()[:200])
    return int(match.group(1)), match.group(0).rsplit(" ", 1)[-1]


def candidate_pg_dumps() -> list[str]:
    """Every pg_dump on this worker: PATH first, then the usual versioned install folders."""
    candidates = []
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(on_path)
    for pattern in (
        "/usr/lib/postgresql/*/bin/pg_dump",
        "/usr/pgsql-*/bin/pg_dump",
        "/opt/homebrew/opt/postgresql@*/bin/pg_dump",
        "/usr/local/opt/postgresql@*/bin/pg_dump",
    ):
        candidates.extend(sorted(glob.glob(pattern)))
    return list(dict.fromkeys(candidates))


def choose_pg_dump(server_major: int, configured_path: str | None = None) -> tuple[str, str]:
    """The pg_dump to use for a server of ``server_major``: (path, version text).

    A configured path must be new enough; otherwise the newest pg_dump found wins. pg_dump refuses
    a server newer than itself, so we check first and say which client to install.
    """
    candidates = [configured_path] if configured_path else candidate_pg_dumps()
    if not candidates:
        raise PgDumpNotFound("PATH and /usr/lib/postgresql/*/bin", server_major)
    versions = []
    for path in candidates:
        try:
            major, text = pg_dump_version(path)
        except (OSError, subprocess.SubprocessError, PgDumpUnusable) as error:
            if configured_path and isinstance(error, PgDumpUnusable):
                raise
            if configured_path:
                raise PgDumpNotFound(configured_path, server_major) from None
            log.warning("Ignoring pg_dump at %s: %s", path, error)
            continue
        versions.append((major, text, path))
    if not versions:
        raise PgDumpNotFound(", ".join(candidates), server_major)
    major, text, path = max(versions)
    if major < server_major:
        raise PgDumpTooOld(text, server_major)
    return path, text


def pg_dump_arguments(pg_dump_path: str, client_major: int, snapshot: str | None) -> list[str]:
    """argv for pg_dump. Connection details come from the environment, so none appear here."""
    arguments = [pg_dump_path, *PG_DUMP_FLAGS]
    # --blobs was renamed --large-objects in 16; both mean "include large objects".
    arguments.append("--large-objects" if client_major >= 16 else "--blobs")
    if snapshot:
        arguments.append(f"--snapshot={snapshot}")
    return arguments


# ---------------------------------------------------------------------------------------------
# The snapshot and what we read inside it

ROW_ESTIMATES_SQL = """
SELECT n.nspname, c.relname, GREATEST(c.reltuples, 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
ORDER BY 1, 2
"""

INVENTORY_SQL = """
SELECT bucket_id, name, version,
       (metadata->>'size')::bigint, metadata->>'eTag', metadata->>'mimetype',
       metadata->>'cacheControl', updated_at
FROM storage.objects
WHERE (%(buckets)s::text[] IS NULL OR bucket_id = ANY(%(buckets)s::text[]))
ORDER BY bucket_id COLLATE "C", name COLLATE "C"
"""


# Tables whose COPY block rightly holds other rows than count(*) in the same snapshot: a parent's
# count(*) includes its inheritance children and partitions (pg_dump writes each child's rows under
# the child), and of an extension's configuration table pg_dump writes only the rows matching the
# condition the extension registered (pg_extension_config_dump).
DUMP_ROWS_MAY_DIFFER_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid)
UNION
SELECT n.nspname, c.relname
FROM pg_extension e
CROSS JOIN LATERAL unnest(e.extconfig, e.extcondition) AS config(relation, condition)
JOIN pg_class c ON c.oid = config.relation JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE COALESCE(config.condition, '') <> ''
"""


def storage_schema_exists(connection: psycopg.Connection) -> bool:
    row = connection.execute("SELECT to_regclass('storage.objects') IS NOT NULL").fetchone()
    return bool(row and row[0])


def iter_storage_inventory(
    connection: psycopg.Connection, buckets: list[str] | None
) -> Iterator[dict]:
    """storage.objects in the current transaction's snapshot, streamed with a server-side cursor."""
    with connection.cursor(name="storage_inventory") as cursor:
        cursor.itersize = 5000
        cursor.execute(INVENTORY_SQL, {"buckets": buckets})
        for bucket_id, name, version, size, etag, mimetype, cache_control, updated_at in cursor:
            yield {
                "bucket": bucket_id,
                "key": name,
                "version": version,
                "size": size,
                "etag": etag,
                "content_type": mimetype,
                "cache_control": cache_control,
                "updated_at": updated_at.isoformat() if updated_at else None,
            }


def write_storage_inventory(
    connection: psycopg.Connection, staging: StagingArea, buckets: list[str] | None
) -> dict[str, int]:
    """Write the inventory to staging as JSON lines; returns object counts per bucket."""
    counts: dict[str, int] = {}
    target = ensure_parent(staging.storage_inventory)
    with target.open("w", encoding="utf-8") as output:
        if storage_schema_exists(connection):
            for row in iter_storage_inventory(connection, buckets):
                output.write(json.dumps(row, ensure_ascii=False) + "\n")
                counts[row["bucket"]] = counts.get(row["bucket"], 0) + 1
        else:
            log.warning("No storage.objects table: the storage inventory is empty")
    return counts


def dump_database(
    settings: DatabaseSettings,
    staging: StagingArea,
    *,
    include_dump: bool = True,
    include_inventory: bool = True,
    inventory_buckets: list[str] | None = None,
    pg_dump_path: str | None = None,
    exact_figures_max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> dict:
    """Export a snapshot, write the storage inventory and (optionally) pg_dump it to staging.

    Returns a summary for the manifest: versions, snapshot id and time, every table's row estimate
    and (with the dump) exact row count and content checksum in the snapshot (``table_figures``;
    a checksum only for tables up to ``exact_figures_max_bytes``), inventory counts, dump size and
    sha256.
    """
    started = time.monotonic()
    log.info("Connecting to %s", settings.describe())
    with settings.connect(autocommit=False) as connection:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        exported = connection.execute(
            "SELECT pg_export_snapshot(), statement_timestamp()"
        ).fetchone()
        assert exported is not None  # a SELECT without FROM returns its one row
        snapshot, snapshot_time = exported
        server_version_num = int(scalar(connection, "SHOW server_version_num"))
        server_version = scalar(connection, "SHOW server_version").split()[0]
        row_estimates = [
            {"schema": schema, "table": table, "row_estimate": rows}
            for schema, table, rows in connection.execute(ROW_ESTIMATES_SQL).fetchall()
        ]
        summary: dict = {
            "included": include_dump,
            "snapshot": snapshot,
            "snapshot_time": snapshot_time.isoformat(),
            "server_version": server_version,
            "tables": row_estimates,
        }
        # The exact figures run beside the inventory and pg_dump, on a second connection that
        # imports this snapshot: they describe exactly the rows pg_dump writes, and the wait is
        # the longer of the two rather than their sum. The snapshot lives until this
        # transaction ends, which is after both are done.
        figures_job = None
        rows_may_differ: set[tuple[str, str]] = set()
        if include_dump and exact_figures_max_bytes is not None:
            figures_job = FiguresInSnapshot(settings, snapshot, exact_figures_max_bytes)
            figures_job.start()
        try:
            if include_inventory:
                counts = write_storage_inventory(connection, staging, inventory_buckets)
                summary["inventory_objects"] = sum(counts.values())
                summary["inventory_by_bucket"] = counts
                log.info(
                    "Storage inventory in snapshot %s: %d objects", snapshot, sum(counts.values())
                )
            if include_dump:
                server_major = server_major_version(server_version_num)
                path, client_version = choose_pg_dump(server_major, pg_dump_path)
                client_major = int(client_version.split(".")[0])
                rows_may_differ = {
                    (schema, table)
                    for schema, table in connection.execute(DUMP_ROWS_MAY_DIFFER_SQL).fetchall()
                }
                summary["client_version"] = client_version
                summary["pg_dump"] = path
                # Roles are outside any snapshot, so pg_dumpall runs beside pg_dump rather than
                # after it (dump_roles never raises: a failure is recorded in its result).
                with ThreadPoolExecutor(1, thread_name_prefix="roles") as roles_thread:
                    roles = roles_thread.submit(dump_roles, path, settings, staging)
                    summary.update(
                        run_pg_dump(
                            pg_dump_arguments(path, client_major, snapshot),
                            settings.libpq_environment(),
                            staging,
                        )
                    )
                    summary["member"] = DATABASE_MEMBER
                    summary["roles"] = roles.result()
        finally:
            if figures_job is not None:
                figures_job.join()
        if figures_job is not None:
            figures = {(item.schema, item.table): item for item in figures_job.result()}
            for entry in row_estimates:
                item = figures.get((entry["schema"], entry["table"]))
                if item is not None:
                    entry.update(item.to_manifest())
            summary["exact_figures"] = {
                "method": CHECKSUM_METHOD,
                "max_bytes": exact_figures_max_bytes,
                "tables": len(figures),
                "checksums": sum(1 for item in figures.values() if item.checksum is not None),
                "seconds": figures_job.seconds,
            }
        if include_dump:
            compared, differences = record_dump_rows(
                row_estimates, summary.pop("copy_rows"), rows_may_differ
            )
            summary["dump_check"]["tables_compared_with_snapshot"] = compared
            if differences:
                raise DatabaseDumpIncomplete(
                    os.path.basename(summary["pg_dump"]), DATABASE_MEMBER, differences
                )
        connection.rollback()  # read only: nothing to commit; ends the snapshot's lifetime
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary


def record_dump_rows(
    tables: list[dict], copy_rows: list[dict], rows_may_differ: set[tuple[str, str]]
) -> tuple[int, str | None]:
    """Put each table's rows in the dump on its manifest entry (``dump_rows``) and compare them with
    the exact count taken in the same snapshot (``rows``, when exact figures ran); returns how many
    tables were compared and the differences as one sentence (None when there are none). A table
    with no COPY block has no rows in the dump."""
    in_dump = {(item["schema"], item["table"]): item["rows"] for item in copy_rows}
    differences = []
    compared = 0
    for entry in tables:
        key = (entry["schema"], entry["table"])
        if key in in_dump:
            entry["dump_rows"] = in_dump[key]
        exact = entry.get("rows")
        if exact is None or key in rows_may_differ:
            continue
        compared += 1
        if in_dump.get(key, 0) != exact:
            differences.append(
                f"table {entry['schema']}.{entry['table']} has {in_dump.get(key, 0):,} rows in the "
                f"dump but {exact:,} in the snapshot"
            )
    if not differences:
        return compared, None
    more = f" (and {len(differences) - 5} more tables)" if len(differences) > 5 else ""
    return compared, "; ".join(differences[:5]) + more


class FiguresInSnapshot(threading.Thread):
    """``table_figures.compute_figures`` on its own connection, inside an exported snapshot."""

    def __init__(self, settings: DatabaseSettings, snapshot: str, max_bytes: int) -> None:
        super().__init__(name="exact-figures", daemon=True)
        self.settings, self.snapshot, self.max_bytes = settings, snapshot, max_bytes
        self.figures: list = []
        self.error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        started = time.monotonic()
        try:
            with self.settings.connect(autocommit=False) as connection:
                connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                connection.read_only = True
                connection.execute(
                    psycopg.sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                        psycopg.sql.Literal(self.snapshot)
                    )
                )
                self.figures = compute_figures(connection, self.max_bytes)
                connection.rollback()
        except BaseException as error:  # noqa: BLE001 - raised in the caller's thread by result()
            self.error = error
        self.seconds = round(time.monotonic() - started, 3)

    def result(self) -> list:
        if self.error is not None:
            raise self.error
        return self.figures


def dump_roles(pg_dump_path: str, settings: DatabaseSettings, staging: StagingArea) -> dict:
    """``pg_dumpall --roles-only --no-role-passwords`` (the pg_dumpall beside ``pg_dump_path``)
    into staging as ``db/roles.sql``, so a restore can recreate the project's own roles with their
    attributes, settings and memberships. Without passwords it reads pg_roles, which a
    non-superuser may. Roles live outside any snapshot; a failure here is logged and recorded in
    the manifest, never fatal: the dump itself is what the backup must have."""
    pg_dumpall = os.path.join(os.path.dirname(pg_dump_path), "pg_dumpall")
    if not os.access(pg_dumpall, os.X_OK):
        log.warning("No pg_dumpall beside %s: roles are not in this backup", pg_dump_path)
        return {"included": False, "reason": f"no pg_dumpall beside {pg_dump_path}"}
    arguments = [pg_dumpall, "--roles-only", "--no-role-passwords", f"--database={settings.dbname}"]
    try:
        result = run_pg_dump(
            arguments,
            settings.libpq_environment(),
            staging,
            target=staging.database_roles,
            member=ROLES_MEMBER,
            trailer=CLUSTER_TRAILER,
        )
    except (DatabaseDumpFailed, OSError) as error:  # DatabaseDumpIncomplete too: not kept
        log.warning("Roles are not in this backup: %s", error)
        return {"included": False, "reason": str(error)[:500]}
    del result["copy_rows"]  # a roles dump has no table data
    return {"included": True, "member": ROLES_MEMBER, **result}


def _widen_pipe(pipe) -> None:
    """Grow a pipe from Linux's 64 KiB to 1 MiB: pg_dump then blocks less often on a full pipe,
    and each 1 MiB read of ours takes one system call instead of sixteen (fewer switches between
    pg_dump and this process on a busy machine). Best effort: not every system has F_SETPIPE_SZ."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1024 * 1024)
    except (ImportError, OSError):
        pass


class _ScanningSink:
    """The staged file, with a DumpScanner reading every chunk on its way there."""

    def __init__(self, output, scanner: DumpScanner) -> None:
        self._output, self._scanner = output, scanner

    def write(self, data) -> int:
        self._scanner.feed(data)
        return self._output.write(data)

    def flush(self) -> None:
        self._output.flush()


def run_pg_dump(
    arguments: list[str],
    libpq_environment: dict,
    staging: StagingArea,
    target=None,
    *,
    member: str = DATABASE_MEMBER,
    trailer: str = DATABASE_TRAILER,
) -> dict:
    """Run pg_dump (or pg_dumpall), streaming its output to staging (``target``, default the
    dump's path) while hashing and scanning it; stderr goes to the log.

    An exit status of 0 is not enough: the output must end with ``trailer`` and close every COPY
    block it opens (``dump_scanner``), or DatabaseDumpIncomplete names what is wrong. The result
    has ``dump_check`` for the manifest and ``copy_rows`` (each table's rows in the dump) for the
    caller to compare with the snapshot."""
    environment = {**os.environ, **libpq_environment}
    target = ensure_parent(target if target is not None else staging.database_dump)
    last_messages: deque[str] = deque(maxlen=20)
    log.info("Running %s", " ".join(arguments))  # argv holds no credentials
    process = subprocess.Popen(
        arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment
    )
    dump_output, dump_messages = process.stdout, process.stderr
    assert dump_output is not None and dump_messages is not None  # both are pipes
    _widen_pipe(dump_output)

    def relay_messages() -> None:
        # pg_dump --verbose writes progress to stderr; drain it in a thread so neither pipe blocks.
        for raw_line in dump_messages:
            line = raw_line.decode("utf-8", "replace").rstrip()
            last_messages.append(line)
            log.debug("%s", line)

    relay = threading.Thread(target=relay_messages, daemon=True)
    relay.start()
    started = time.monotonic()
    next_report = [started + 10]

    def report(size: int) -> None:
        if time.monotonic() >= next_report[0]:
            log.info("pg_dump: %s written so far", format_bytes(size))
            next_report[0] += 10

    scanner = DumpScanner(trailer)
    with target.open("wb") as output:
        size, sha256 = copy_hashing(dump_output, _ScanningSink(output, scanner), on_chunk=report)
    return_code = process.wait()
    relay.join(timeout=10)
    elapsed = max(time.monotonic() - started, 1e-6)
    if return_code != 0:
        errors = [line for line in last_messages if "error" in line.lower()] or list(last_messages)
        raise DatabaseDumpFailed(return_code, " | ".join(errors[-5:]) or "no message")
    contents = scanner.finish()
    problem = contents.problem()
    if problem:
        raise DatabaseDumpIncomplete(os.path.basename(arguments[0]), member, problem)
    log.info(
        "pg_dump finished: %s in %.1f s (%s), ends with its trailer, %s rows in %d COPY blocks",
        format_bytes(size),
        elapsed,
        format_rate(size, elapsed),
        f"{contents.rows:,}",
        len(contents.copy_rows),
    )
    return {
        "bytes": size,
        "sha256": sha256,
        "dump_check": contents.to_manifest(),
        "copy_rows": [
            {"schema": schema, "table": table, "rows": rows}
            for (schema, table), rows in contents.copy_rows.items()
        ],
    }


def current_object_keys(settings: DatabaseSettings, bucket_id: str, keys: list[str]) -> set[str]:
    """Which of ``keys`` exist in storage.objects right now (outside any snapshot)."""
    if not keys:
        return set()
    with settings.connect(autocommit=True) as connection:
        rows = connection.execute(
            "SELECT name FROM storage.objects WHERE bucket_id = %s AND name = ANY(%s)",
            (bucket_id, keys),
        ).fetchall()
    return {row[0] for row in rows}
