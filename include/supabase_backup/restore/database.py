"""Restore ``db/backup.sql`` into an empty Postgres database with psql, in one transaction.

Before psql starts, the dump is read once to find the extensions it creates and the roles it
names; a target that lacks an extension is refused unless that extension is skipped
(``--skip-extension``), and missing roles are created (NOLOGIN) at the top of the same transaction.
Then the dump streams from the zip into ``psql -v ON_ERROR_STOP=1 --single-transaction -f -``: any
error rolls everything back, roles included. The password reaches psql only through PGPASSWORD.

Skipping an extension leaves out pg_dump's entries for it, found by the header pg_dump writes
before every object (``-- Name: job; Type: TABLE DATA; Schema: cron; Owner: -``): the
``EXTENSION`` entry, its ``COMMENT``, and every entry in the schema the extension owns (``cron``
for pg_cron). Objects elsewhere that only call it (a function body) still restore, since pg_dump
turns function body checks off.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from supabase_backup.archive.dump_text import (
    LineKind,
    created_extension,
    quote_identifier,
    read_dump,
    roles_named_in,
)
from supabase_backup.errors import (
    ConfigurationError,
    ExtensionsMissing,
    RestoreFailed,
    RestoreRefused,
)
from supabase_backup.sources.database import DatabaseSettings

log = logging.getLogger(__name__)

# The schema an extension creates and owns: its entries go when the extension is skipped.
EXTENSION_SCHEMAS = {
    "pg_cron": "cron",
    "pg_net": "net",
    "pgsodium": "pgsodium",
    "supabase_vault": "vault",
    "pg_graphql": "graphql",
    "pgmq": "pgmq",
}
# psql's output without -q: one command tag per statement, "(n rows)" after a SELECT's result.
_COMMAND_TAG = re.compile(r"^(?:[A-Z]+(?: [A-Z]+)*(?: \d+)*|\(\d+ rows?\))$")


@dataclass
class DumpScan:
    """What a dump needs from its target, found before anything runs."""

    extensions: dict[str, str | None] = field(default_factory=dict)  # name -> schema
    roles: set[str] = field(default_factory=set)
    lines: int = 0


def scan_dump(lines: Iterable[str]) -> DumpScan:
    """Extensions the dump creates (name -> schema) and roles it names (policies, grants, owners)."""
    scan = DumpScan()
    for item in read_dump(lines, statements=True):
        scan.lines += 1
        if item.kind is LineKind.SQL and (extension := created_extension(item.text)):
            name, schema = extension
            scan.extensions[name] = schema
        if item.statement:
            scan.roles |= roles_named_in(item.statement)
    return scan


@dataclass
class DumpFilter:
    """Leaves out pg_dump entries of skipped extensions; records what it left out."""

    skip_extensions: frozenset[str]
    skipped_entries: list[str] = field(default_factory=list)
    skipped_lines: int = 0
    # pg_dump wraps its large-object data in BEGIN; … COMMIT; (seen with pg_dump 15.18). Under
    # psql --single-transaction that COMMIT would end the one transaction halfway, and everything
    # after it would run in autocommit: those two lines are left out.
    transaction_lines: int = 0

    def _skips(self, name: str, entry_type: str, schema: str) -> bool:
        if entry_type == "EXTENSION" and name in self.skip_extensions:
            return True
        if (
            entry_type == "COMMENT"
            and name.startswith("EXTENSION ")
            and name[len("EXTENSION ") :] in self.skip_extensions
        ):
            return True
        owned = {
            EXTENSION_SCHEMAS[name] for name in self.skip_extensions if name in EXTENSION_SCHEMAS
        }
        return schema in owned

    def filter(self, lines: Iterable[str]) -> Iterator[str]:
        skipping = False
        for item in read_dump(lines):
            if item.entry is not None:
                entry = item.entry
                skipping = self._skips(entry.name, entry.type, entry.schema)
                if skipping:
                    where = "" if entry.schema == "-" else f" in schema {entry.schema}"
                    self.skipped_entries.append(f"{entry.type} {entry.name}{where}")
            elif item.kind is LineKind.SQL:
                if item.text in ("BEGIN;", "COMMIT;"):
                    self.transaction_lines += 1
                    continue
                # An extension created outside pg_dump's layout (hand-written SQL) is skipped too.
                extension = created_extension(item.text) if self.skip_extensions else None
                if extension and extension[0] in self.skip_extensions:
                    self.skipped_lines += 1
                    if not skipping:
                        self.skipped_entries.append(f"statement {item.text}")
                    continue
            if skipping:
                self.skipped_lines += 1
                continue
            yield item.line


def find_psql(configured: str | None = None) -> str:
    """psql to run: the one given, else the newest of the Postgres installs we know, else PATH."""
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise ConfigurationError(f"--psql {configured} is not an executable file")
        return configured
    found = shutil.which("psql")
    if not found:
        raise ConfigurationError(
            "psql was not found on PATH: install postgresql-client or pass --psql PATH"
        )
    return found


def _user_relations(connection) -> list[str]:
    return [
        row[0]
        for row in connection.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%' "
            "ORDER BY 1 LIMIT 5"
        ).fetchall()
    ]


@dataclass
class TargetCheck:
    missing_extensions: list[str]
    missing_roles: list[str]
    skipped_extensions: list[str]


def check_target(
    connection,
    scan: DumpScan,
    skip_extensions: Iterable[str],
    target: str,
    skip_unavailable_extensions: bool = False,
) -> TargetCheck:
    """Refuse a target that is not empty or lacks unskipped extensions; list the roles to create.
    With ``skip_unavailable_extensions`` (the restore drill) every extension the target lacks is
    skipped instead of refused."""
    relations = _user_relations(connection)
    if relations:
        raise RestoreRefused(
            f"{target} is not empty (it has {', '.join(relations)}…); restore into a new database "
            f"(createdb NAME) so nothing existing is mixed with the backup"
        )
    available = {row[0] for row in connection.execute("SELECT name FROM pg_available_extensions")}
    missing = sorted(name for name in scan.extensions if name not in available)
    skip = set(skip_extensions) | (set(missing) if skip_unavailable_extensions else set())
    unskipped = [name for name in missing if name not in skip]
    if unskipped:
        raise ExtensionsMissing(", ".join(unskipped), target)
    not_in_dump = sorted(skip - set(scan.extensions))
    if not_in_dump:
        raise ConfigurationError(
            f"--skip-extension {', '.join(not_in_dump)}: the dump creates no such extension "
            f"(it creates {', '.join(sorted(scan.extensions)) or 'none'})"
        )
    existing_roles = {row[0] for row in connection.execute("SELECT rolname FROM pg_roles")}
    missing_roles = sorted(scan.roles - existing_roles)
    if missing_roles:
        can_create = connection.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()[0]
        if not can_create:
            raise RestoreRefused(
                f"the dump needs role(s) {', '.join(missing_roles)}, which {target} lacks, and the "
                f"restoring user may not create roles: create them (CREATE ROLE name NOLOGIN) or "
                f"connect as a user with CREATEROLE"
            )
    return TargetCheck(missing, missing_roles, sorted(skip))


def count_rows(connection) -> dict[str, int]:
    """Exact row count of every table outside the system schemas."""
    tables = [
        row[0]
        for row in connection.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
    ]
    return {
        table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables
    }


def _role_preamble(roles: list[str]) -> list[str]:
    return [f"CREATE ROLE {quote_identifier(role)} NOLOGIN;\n" for role in roles]


def run_psql(psql: str, settings: DatabaseSettings, lines: Iterable[str]) -> tuple[int, list[str]]:
    """Feed ``lines`` to psql in one transaction; return how many statements it reported and the
    messages it wrote to stderr (warnings and notices; an error raises RestoreFailed).

    stdin is written by a thread while this one reads stdout (command tags, counted) and another
    drains stderr, so no pipe fills up. argv holds no credentials."""
    arguments = [
        psql,
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "-P",
        "pager=off",
        "-f",
        "-",
    ]
    environment = {**os.environ, **settings.libpq_environment()}
    process = subprocess.Popen(
        arguments,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    psql_input, psql_errors = process.stdin, process.stderr
    assert psql_input is not None and psql_errors is not None and process.stdout is not None
    messages: deque[str] = deque(maxlen=20)
    notices: list[str] = []
    writer_error: list[BaseException] = []

    def write() -> None:
        try:
            for line in lines:
                psql_input.write(line.encode("utf-8"))
        except BrokenPipeError:
            pass  # psql stopped on an error; its status and stderr say why
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            writer_error.append(error)
        finally:
            try:
                psql_input.close()
            except BrokenPipeError:
                pass

    def drain_errors() -> None:
        for raw in psql_errors:
            message = raw.decode("utf-8", "replace").rstrip()
            if message:
                messages.append(message)
                if len(notices) < 100:
                    notices.append(message)
                log.warning("psql: %s", message)

    threads = [
        threading.Thread(target=write, name="psql-stdin", daemon=True),
        threading.Thread(target=drain_errors, name="psql-stderr", daemon=True),
    ]
    for thread in threads:
        thread.start()
    statements = 0
    for raw in process.stdout:
        if _COMMAND_TAG.match(raw.decode("utf-8", "replace").strip()):
            statements += 1
    return_code = process.wait()
    for thread in threads:
        thread.join()
    if writer_error:
        raise writer_error[0]
    if return_code != 0:
        errors = [message for message in messages if "ERROR" in message or "FATAL" in message]
        raise RestoreFailed(return_code, " | ".join(errors or list(messages)[-5:]) or "no message")
    return statements, notices


@dataclass
class DatabaseRestoreResult:
    target: str
    statements: int
    roles_created: list[str]
    extensions_skipped: list[str]
    skipped_entries: list[str]
    row_counts: dict[str, int]
    psql_messages: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            f"Database restored into {self.target}: {self.statements:,} statements run in one "
            f"transaction; {len(self.row_counts)} tables, "
            f"{sum(self.row_counts.values()):,} rows."
        ]
        lines.append("Roles created (NOLOGIN): " + (", ".join(self.roles_created) or "none"))
        if self.psql_messages:
            lines.append(
                f"psql said ({len(self.psql_messages)} messages): "
                + " | ".join(self.psql_messages[:10])
            )
        if self.extensions_skipped:
            lines.append(
                f"Extensions skipped: {', '.join(self.extensions_skipped)}; left out of the "
                f"dump: " + ("; ".join(self.skipped_entries) or "nothing else")
            )
        lines.append("Rows per table:")
        lines.extend(f"  {table}: {count:,}" for table, count in self.row_counts.items())
        return "\n".join(lines)


def restore_database(
    open_dump,
    settings: DatabaseSettings,
    *,
    skip_extensions: Iterable[str] = (),
    psql: str | None = None,
    skip_unavailable_extensions: bool = False,
) -> DatabaseRestoreResult:
    """Restore the dump that ``open_dump()`` opens (a text file, opened once to scan, once to run)."""
    psql_path = find_psql(psql)
    target = settings.describe()
    with open_dump() as dump:
        scan = scan_dump(dump)
    log.info(
        "Scanned the dump: %s lines, extensions %s, roles named %s",
        f"{scan.lines:,}",
        sorted(scan.extensions) or "none",
        sorted(scan.roles) or "none",
    )
    with settings.connect(autocommit=True) as connection:
        check = check_target(connection, scan, skip_extensions, target, skip_unavailable_extensions)
    dump_filter = DumpFilter(frozenset(check.skipped_extensions))

    def lines() -> Iterator[str]:
        yield from _role_preamble(check.missing_roles)
        with open_dump() as dump:
            yield from dump_filter.filter(dump)

    statements, messages = run_psql(psql_path, settings, lines())
    with settings.connect(autocommit=True) as connection:
        counts = count_rows(connection)
    return DatabaseRestoreResult(
        target,
        statements,
        check.missing_roles,
        check.skipped_extensions,
        dump_filter.skipped_entries,
        counts,
        messages,
    )
