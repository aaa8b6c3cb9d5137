"""Restore ``db/backup.sql`` into a FRESH Supabase project: its own ``postgres`` database, as the
non-superuser ``postgres`` role (the disaster case).

A fresh project already has everything Supabase manages (the ``auth``, ``storage``, ``realtime``,
``extensions`` … schemas, their tables, functions, triggers and migration history), made by its
own, possibly newer, migrations. Replaying the dump's DDL for those fails by the hundreds (measured:
239 errors, and the auth tables' rows lost to FK violations). So the dump is filtered entry by
entry, by the header pg_dump writes before every object
(``-- Name: users on_auth_user_created; Type: TRIGGER; Schema: auth; Owner: -``):

- schemas Supabase manages (``MANAGED_SCHEMAS``): none of their DDL; their rows for ``auth`` and
  ``storage`` (every table but the migration histories ``auth.schema_migrations`` and
  ``storage.migrations``), their sequences' positions, and the user's own triggers and policies on
  them where the target has none of that name;
- every other schema (``public`` and the user's own): everything;
- extensions: the source's extensions the target lacks are created first (``CREATE EXTENSION IF NOT
  EXISTS``; a hosted project lets ``postgres`` create the ones it offers); the dump's own
  extension entries and comments are left out;
- left out: event triggers, publications (re-add tables to ``supabase_realtime`` by hand),
  comments on Supabase's schemas and objects;
- ``cron.job`` rows become ``cron.schedule(…)`` calls (the job table is pg_cron's, not ours);
  run history is not carried;
- large objects are carried as pg_dump wrote them;
- the project's own roles (``db/roles.sql``, ``pg_dumpall --roles-only --no-role-passwords``) that
  the target lacks are created with their LOGIN/INHERIT/CREATEDB/CREATEROLE attributes, settings
  and memberships (SUPERUSER, REPLICATION and BYPASSRLS are dropped: postgres may not grant them;
  no passwords: set them by hand); roles the dump's policies name that are still missing are
  created NOLOGIN; never a role name Supabase reserves.

Everything runs in one transaction (``psql --single-transaction -v ON_ERROR_STOP=1``) with
``SET session_replication_role = replica``, so no trigger (``on_auth_user_created``) or foreign key
fires while the rows load. Before anything runs, the target is checked: it must be a Supabase
project (``auth.schema_migrations``), hold no user tables and no rows in the tables to be loaded,
have at least every auth and storage migration the source had, and have every column the dump
loads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from supabase_backup.archive.dump_text import (
    IDENTIFIER,
    CopyTarget,
    DumpLine,
    LineKind,
    created_extension,
    decode_copy_field,
    quote_identifier,
    quote_literal,
    read_dump,
    roles_named_in,
    unquote_identifier,
)
from supabase_backup.errors import ExtensionsMissing, RestoreRefused
from supabase_backup.records.sql import scalar
from supabase_backup.restore.database import find_psql, run_psql
from supabase_backup.sources.database import DatabaseSettings

log = logging.getLogger(__name__)

MANAGED_SCHEMAS = frozenset(
    {
        "auth",
        "storage",
        "realtime",
        "_realtime",
        "extensions",
        "graphql",
        "graphql_public",
        "pgbouncer",
        "vault",
        "pgsodium",
        "pgsodium_masks",
        "net",
        "cron",
        "pgtle",
        "_analytics",
        "supabase_functions",
        "supabase_migrations",
        "_supavisor",
        "pg_catalog",
        "information_schema",
    }
)
# Schemas whose rows are the project's data (not Supabase's bookkeeping) and are loaded.
DATA_SCHEMAS = ("auth", "storage")
MIGRATION_TABLES = frozenset({("auth", "schema_migrations"), ("storage", "migrations")})
# Roles a Supabase project owns: never created by a restore (supautils refuses most of them).
RESERVED_ROLES = frozenset(
    {
        "anon",
        "authenticated",
        "service_role",
        "authenticator",
        "dashboard_user",
        "pgbouncer",
        "postgres",
        "supabase_admin",
        "supabase_auth_admin",
        "supabase_storage_admin",
        "supabase_functions_admin",
        "supabase_replication_admin",
        "supabase_read_only_user",
        "supabase_realtime_admin",
        "supabase_etl_admin",
        "pgsodium_keyholder",
        "pgsodium_keyiduser",
        "pgsodium_keymaker",
        "pgtle_admin",
    }
)
_ROLE_CREATE = re.compile(rf"^CREATE ROLE (?P<name>{IDENTIFIER});$")
_ROLE_ATTRIBUTES = re.compile(rf"^ALTER ROLE (?P<name>{IDENTIFIER}) WITH (?P<attributes>.*);$")
_ROLE_SETTING = re.compile(
    rf"^ALTER ROLE (?P<name>{IDENTIFIER}) (?:IN DATABASE {IDENTIFIER} )?(?:SET|RESET) "
)
_ROLE_GRANT = re.compile(
    rf"^GRANT (?P<role>{IDENTIFIER}) TO (?P<member>{IDENTIFIER})"
    r"(?P<options>(?: WITH [A-Z ]+?(?: TRUE| FALSE| OPTION)?)*)"
    rf"(?: GRANTED BY {IDENTIFIER})?;$"
)
# Attributes postgres may not give on Supabase (superuser only): left out, and said so.
DROPPED_ROLE_ATTRIBUTES = ("SUPERUSER", "REPLICATION", "BYPASSRLS")


def is_reserved_role(name: str) -> bool:
    return name in RESERVED_ROLES or name.startswith(("supabase_", "pgsodium_", "pg_"))


@dataclass
class RolesPlan:
    """The project's own roles from ``db/roles.sql`` that the target lacks, as statements."""

    statements: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    dropped_attributes: list[str] = field(default_factory=list)  # "role: BYPASSRLS"
    left_out: list[str] = field(default_factory=list)  # memberships not carried, with why


def plan_roles(lines: Iterable[str], existing: set[str]) -> RolesPlan:
    """Read pg_dumpall --roles-only output; plan the custom roles the target lacks."""
    plan = RolesPlan()
    attributes: dict[str, str] = {}
    settings: list[tuple[str, str]] = []
    grants: list[tuple[str, str, str]] = []
    for line in lines:
        text = line.rstrip("\n")
        if match := _ROLE_CREATE.match(text):
            name = unquote_identifier(match["name"])
            if not is_reserved_role(name) and name not in existing:
                plan.created.append(name)
        elif match := _ROLE_ATTRIBUTES.match(text):
            attributes[unquote_identifier(match["name"])] = match["attributes"]
        elif match := _ROLE_SETTING.match(text):
            settings.append((unquote_identifier(match["name"]), text))
        elif match := _ROLE_GRANT.match(text):
            grants.append(
                (
                    unquote_identifier(match["role"]),
                    unquote_identifier(match["member"]),
                    match["options"],
                )
            )
        elif text.startswith("GRANT "):
            plan.left_out.append(f"not understood: {text}")
    created = set(plan.created)
    for name in plan.created:
        kept = []
        for word in (attributes.get(name) or "NOLOGIN").split():
            if word in DROPPED_ROLE_ATTRIBUTES:
                plan.dropped_attributes.append(f"{name}: {word}")
            else:
                kept.append(word)
        plan.statements.append(f"CREATE ROLE {quote_identifier(name)} WITH {' '.join(kept)};\n")
    plan.statements.extend(text + "\n" for name, text in settings if name in created)
    for role, member, options in grants:
        if member not in created and role not in created:
            continue
        if is_reserved_role(member):
            plan.left_out.append(f"{role} to {member} (a role Supabase reserves)")
            continue
        plan.statements.append(
            f"GRANT {quote_identifier(role)} TO {quote_identifier(member)}{options};\n"
        )
    return plan


def is_managed(schema: str) -> bool:
    return schema in MANAGED_SCHEMAS or schema.startswith(("supabase_", "pg_"))


@dataclass
class SupabaseDumpScan:
    """What the dump holds that the target must be checked against."""

    extensions: dict[str, str | None] = field(default_factory=dict)
    roles: set[str] = field(default_factory=set)
    loaded_columns: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    migration_versions: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    migration_columns: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    entries: int = 0

    def migration_column(self, table: tuple[str, str]) -> int:
        columns = self.migration_columns.get(table) or []
        wanted = "version" if table == ("auth", "schema_migrations") else "name"
        return columns.index(wanted) if wanted in columns else 0


def copy_of(item: DumpLine) -> CopyTarget:
    """The COPY a COPY_START, COPY_ROW or COPY_END line belongs to."""
    assert item.copy is not None  # read_dump gives each of those lines its COPY
    return item.copy


def qualified_table(item: DumpLine) -> tuple[str, str] | None:
    """The (schema, table) of a COPY line; None when its header does not parse or names no
    schema (pg_dump always qualifies, and every table looked for here has a schema)."""
    table = copy_of(item).table
    if table is None:
        return None
    schema, name = table
    return None if schema is None else (schema, name)


def scan_supabase_dump(lines: Iterable[str]) -> SupabaseDumpScan:
    """The extensions, roles, loaded columns and migration histories of a dump."""
    scan = SupabaseDumpScan()
    for item in read_dump(lines, statements=True):
        kind = item.kind
        if kind is LineKind.COPY_ROW:
            table = qualified_table(item)
            if table in MIGRATION_TABLES:
                field_index = scan.migration_column(table)
                scan.migration_versions[table].append(
                    decode_copy_field(item.text.split("\t")[field_index]) or ""
                )
        elif kind is LineKind.ENTRY_HEADER:
            scan.entries += 1
        elif kind is LineKind.SQL and (extension := created_extension(item.text)):
            name, schema = extension
            scan.extensions[name] = schema
        elif kind is LineKind.COPY_START and (table := qualified_table(item)) is not None:
            columns = list(copy_of(item).columns)
            if table in MIGRATION_TABLES:
                scan.migration_versions[table] = []
                scan.migration_columns[table] = columns
            elif table[0] in DATA_SCHEMAS:
                scan.loaded_columns[table] = columns
        if item.statement:
            scan.roles |= roles_named_in(item.statement)
    return scan


@dataclass
class SupabaseTarget:
    """What the target has, read before anything runs."""

    extensions_to_create: list[tuple[str, str | None]]
    roles_to_create: list[str]  # named by policies, not in db/roles.sql: NOLOGIN
    triggers: set[tuple[str, str, str]]  # (schema, table, trigger)
    policies: set[tuple[str, str, str]]  # (schema, table, policy)
    database: str
    roles: RolesPlan = field(default_factory=RolesPlan)


def check_supabase_target(
    connection,
    scan: SupabaseDumpScan,
    target: str,
    skip_extensions: Iterable[str] = (),
    roles_lines: Iterable[str] | None = None,
) -> SupabaseTarget:
    """Refuse a target that is not a fresh Supabase project able to take this dump."""
    if not scalar(connection, "SELECT to_regclass('auth.schema_migrations') IS NOT NULL"):
        raise RestoreRefused(
            f"{target} is not a Supabase project (it has no auth.schema_migrations): "
            "use --target postgres for a plain Postgres database"
        )
    user_relations = [
        row[0]
        for row in connection.execute(
            "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','S','f') "
            "AND NOT (n.nspname = ANY(%s)) AND n.nspname NOT LIKE 'pg\\_%%' "
            "AND n.nspname NOT LIKE 'supabase\\_%%' "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
            "  AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1 LIMIT 5",
            (list(MANAGED_SCHEMAS),),
        ).fetchall()
    ]
    if user_relations:
        raise RestoreRefused(
            f"{target} already holds user tables ({', '.join(user_relations)}…): "
            "restore into a fresh project"
        )
    for schema, table in sorted(scan.loaded_columns):
        exists = scalar(
            connection,
            "SELECT to_regclass(%s) IS NOT NULL",
            (f"{quote_identifier(schema)}.{quote_identifier(table)}",),
        )
        if not exists:
            raise RestoreRefused(
                f"the backup has rows for {schema}.{table}, which {target} does not have: the "
                "project's auth or storage version differs from the source's"
            )
        if scalar(
            connection,
            f"SELECT EXISTS (SELECT FROM {quote_identifier(schema)}.{quote_identifier(table)})",
        ):
            raise RestoreRefused(
                f"{schema}.{table} on {target} already has rows: restore into a "
                "fresh project, not over one in use"
            )
        present = {
            row[0]
            for row in connection.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped",
                (f"{quote_identifier(schema)}.{quote_identifier(table)}",),
            )
        }
        missing = [
            column for column in scan.loaded_columns[(schema, table)] if column not in present
        ]
        if missing:
            raise RestoreRefused(
                f"{schema}.{table} on {target} lacks column(s) {', '.join(missing)} that the backup "
                "has: the project's auth or storage is older than the source's; upgrade it first"
            )
    for migration_table, versions in scan.migration_versions.items():
        column = "version" if migration_table == ("auth", "schema_migrations") else "name"
        have = {
            row[0]
            for row in connection.execute(
                f"SELECT {column}::text FROM {migration_table[0]}.{migration_table[1]}"
            )
        }
        behind = sorted(set(versions) - have)
        if behind:
            raise RestoreRefused(
                f"{target} lacks {len(behind)} {migration_table[0]} migration(s) the source had "
                f"({', '.join(behind[:5])}{'…' if len(behind) > 5 else ''}): its "
                f"{migration_table[0]} is older than the source's; let the project upgrade first"
            )
    installed = {row[0] for row in connection.execute("SELECT extname FROM pg_extension")}
    available = {row[0] for row in connection.execute("SELECT name FROM pg_available_extensions")}
    skip = set(skip_extensions)
    wanted = {
        name: schema
        for name, schema in scan.extensions.items()
        if name not in installed and name not in skip
    }
    unavailable = sorted(name for name in wanted if name not in available)
    if unavailable:
        raise ExtensionsMissing(", ".join(unavailable), target)
    roles = {row[0] for row in connection.execute("SELECT rolname FROM pg_roles")}
    roles_plan = plan_roles(roles_lines, roles) if roles_lines is not None else RolesPlan()
    missing_roles = sorted(scan.roles - roles - set(roles_plan.created))
    reserved = [
        role for role in missing_roles if role in RESERVED_ROLES or role.startswith("supabase_")
    ]
    if reserved:
        raise RestoreRefused(
            f"the dump's policies name role(s) {', '.join(reserved)}, which Supabase "
            f"reserves and {target} lacks: this project is not like the source's"
        )
    triggers = {
        tuple(row)
        for row in connection.execute(
            "SELECT n.nspname, c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal"
        )
    }
    policies = {
        tuple(row)
        for row in connection.execute("SELECT schemaname, tablename, policyname FROM pg_policies")
    }
    database = scalar(connection, "SELECT current_database()")
    return SupabaseTarget(
        sorted(wanted.items()), missing_roles, triggers, policies, database, roles_plan
    )


@dataclass
class SupabaseFilter:
    """Decides, entry by entry, what of the dump runs on a Supabase project; records it all."""

    target: SupabaseTarget
    skip_extensions: frozenset[str] = frozenset()
    applied: dict[str, int] = field(default_factory=dict)  # "TYPE schema" -> entries run
    skipped: dict[str, int] = field(default_factory=dict)  # "reason" -> entries left out
    added: list[str] = field(default_factory=list)  # triggers and policies added to managed tables
    kept_existing: list[str] = field(default_factory=list)  # same-named ones the target has
    loaded_tables: list[str] = field(default_factory=list)
    cron_jobs: list[str] = field(default_factory=list)
    large_objects: int = 0

    def _decide(self, name: str, entry_type: str, schema: str) -> str | None:
        """None to run the entry, else why it is left out."""
        if entry_type in ("EVENT TRIGGER",):
            return "event triggers (Supabase's own)"
        if entry_type in ("PUBLICATION", "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA"):
            return "publications (re-add tables to supabase_realtime by hand)"
        if entry_type == "EXTENSION":
            return "extension entries (created beforehand where missing)"
        if entry_type == "COMMENT" and name.startswith("EXTENSION "):
            return "comments on extensions"
        if entry_type in ("BLOB", "BLOBS", "LARGE OBJECT", "LARGE OBJECTS", "BLOB METADATA"):
            if entry_type in ("BLOB", "LARGE OBJECT"):
                self.large_objects += 1
            return None
        if schema == "-":
            if entry_type == "SCHEMA" and is_managed(name):
                return f"managed schema {name}"
            if entry_type == "COMMENT" and name.startswith("SCHEMA "):
                schema_name = name[len("SCHEMA ") :]
                if is_managed(schema_name) or schema_name == "public":
                    return "comments on Supabase's schemas"
            return None
        if not is_managed(schema):
            return None
        if entry_type == "TABLE DATA":
            if (schema, name) in MIGRATION_TABLES:
                return "migration histories (the target's own are checked instead)"
            if schema == "cron" and name == "job":
                return None  # rewritten as cron.schedule calls
            if schema in DATA_SCHEMAS:
                self.loaded_tables.append(f"{schema}.{name}")
                return None
            return f"rows of Supabase-managed schema {schema}"
        if entry_type == "SEQUENCE SET" and schema in DATA_SCHEMAS:
            return None
        if entry_type in ("TRIGGER", "POLICY"):
            table, _, object_name = name.partition(" ")
            label = f"{entry_type.lower()} {object_name} on {schema}.{table}"
            if (schema, table, object_name) in (
                self.target.triggers if entry_type == "TRIGGER" else self.target.policies
            ):
                self.kept_existing.append(label)
                return "triggers and policies the project already has"
            self.added.append(label)
            return None
        return f"DDL of Supabase-managed schemas ({entry_type.lower()})"

    def preamble(self) -> Iterator[str]:
        # Rows load without firing triggers or FK checks (postgres may set it on Supabase).
        yield "SET session_replication_role = replica;\n"
        for name, schema in self.target.extensions_to_create:
            clause = f" WITH SCHEMA {quote_identifier(schema)}" if schema else ""
            yield f"CREATE EXTENSION IF NOT EXISTS {quote_identifier(name)}{clause};\n"
        yield from self.target.roles.statements
        for role in self.target.roles_to_create:
            yield f"CREATE ROLE {quote_identifier(role)} NOLOGIN;\n"

    def filter(self, lines: Iterable[str]) -> Iterator[str]:
        yield from self.preamble()
        skipping = in_cron = False
        for item in read_dump(lines):
            kind = item.kind
            if kind is LineKind.COPY_ROW or kind is LineKind.COPY_END:
                if in_cron:
                    if kind is LineKind.COPY_ROW:
                        fields = map(decode_copy_field, item.text.split("\t"))
                        yield self._schedule(dict(zip(copy_of(item).columns, fields)))
                    else:
                        in_cron = False
                    continue
                if not skipping:
                    yield item.line
                continue
            if kind is LineKind.COPY_START:
                if not skipping and copy_of(item).table == ("cron", "job"):
                    in_cron = True
                    continue
                if not skipping:
                    yield item.line
                continue
            if kind is LineKind.ENTRY_HEADER:
                entry = item.entry
                assert entry is not None  # read_dump gives every ENTRY_HEADER line its header
                reason = self._decide(entry.name, entry.type, entry.schema)
                skipping = reason is not None
                if reason is not None:
                    self.skipped[reason] = self.skipped.get(reason, 0) + 1
                else:
                    current = f"{entry.type} {entry.schema}"
                    self.applied[current] = self.applied.get(current, 0) + 1
                continue
            if item.text in ("BEGIN;", "COMMIT;"):
                continue  # pg_dump's around large-object data: one transaction only
            if skipping:
                continue
            yield item.line

    def _schedule(self, job: dict) -> str:
        name, schedule, command = job.get("jobname"), job.get("schedule"), job.get("command")
        database = job.get("database") or self.target.database
        self.cron_jobs.append(name or f"job {job.get('jobid')}")
        if database != self.target.database or job.get("active") == "f":
            call = (
                f"SELECT cron.schedule_in_database({quote_literal(name)}, {quote_literal(schedule)}, "
                f"{quote_literal(command)}, {quote_literal(database)}, NULL, "
                f"{'false' if job.get('active') == 'f' else 'true'});\n"
            )
        elif name:
            call = (
                f"SELECT cron.schedule({quote_literal(name)}, {quote_literal(schedule)}, "
                f"{quote_literal(command)});\n"
            )
        else:
            call = f"SELECT cron.schedule({quote_literal(schedule)}, {quote_literal(command)});\n"
        return call


@dataclass
class SupabaseRestoreResult:
    target: str
    statements: int
    extensions_created: list[str]
    roles_created: list[str]
    roles_from_backup: RolesPlan
    applied: dict[str, int]
    skipped: dict[str, int]
    added: list[str]
    kept_existing: list[str]
    loaded_tables: list[str]
    cron_jobs: list[str]
    large_objects: int
    psql_messages: list[str] = field(default_factory=list)

    @property
    def extensions_skipped(self) -> list[str]:
        return []

    def describe(self) -> str:
        lines = [
            f"Restored into the Supabase project database {self.target}: {self.statements:,} "
            "statements in one transaction, with session_replication_role = replica."
        ]
        lines.append(
            "Extensions created first: " + (", ".join(self.extensions_created) or "none needed")
        )
        roles = self.roles_from_backup
        lines.append(
            "Roles created from db/roles.sql (no passwords: set them by hand): "
            + (", ".join(roles.created) or "none")
        )
        if roles.dropped_attributes:
            lines.append(
                "  attributes left out (superuser only): " + ", ".join(roles.dropped_attributes)
            )
        if roles.left_out:
            lines.append("  memberships left out: " + "; ".join(roles.left_out))
        lines.append("Roles created (NOLOGIN): " + (", ".join(self.roles_created) or "none"))
        lines.append(
            f"Rows loaded into {len(self.loaded_tables)} auth/storage tables: "
            + ", ".join(self.loaded_tables)
        )
        lines.append(
            "Triggers and policies added to Supabase's tables: " + ("; ".join(self.added) or "none")
        )
        if self.kept_existing:
            lines.append(
                "Already in the project (kept as they are): " + "; ".join(self.kept_existing)
            )
        lines.append(
            f"Large objects: {self.large_objects}; cron jobs scheduled: "
            + (", ".join(self.cron_jobs) or "none")
        )
        lines.append(
            "Entries run: "
            + ", ".join(f"{key} ×{count}" for key, count in sorted(self.applied.items()))
        )
        lines.append(
            "Left out: "
            + "; ".join(f"{reason} ×{count}" for reason, count in sorted(self.skipped.items()))
        )
        if self.psql_messages:
            lines.append(
                f"psql said ({len(self.psql_messages)} messages): "
                + " | ".join(self.psql_messages[:10])
            )
        return "\n".join(lines)


def restore_into_supabase(
    open_dump,
    settings: DatabaseSettings,
    *,
    skip_extensions: Iterable[str] = (),
    psql: str | None = None,
    open_roles=None,
) -> SupabaseRestoreResult:
    """Restore the dump ``open_dump()`` opens (twice: scan, then run) into a fresh Supabase project;
    ``open_roles()``, when given, opens the backup's ``db/roles.sql``."""
    psql_path = find_psql(psql)
    target_label = settings.describe()
    with open_dump() as dump:
        scan = scan_supabase_dump(dump)
    log.info(
        "Scanned the dump: %d entries, extensions %s, roles named %s",
        scan.entries,
        sorted(scan.extensions),
        sorted(scan.roles),
    )
    roles_lines = None
    if open_roles is not None:
        with open_roles() as roles_file:
            roles_lines = list(roles_file)
    with settings.connect(autocommit=True) as connection:
        target = check_supabase_target(connection, scan, target_label, skip_extensions, roles_lines)
    dump_filter = SupabaseFilter(target, frozenset(skip_extensions))

    def lines() -> Iterator[str]:
        with open_dump() as dump:
            yield from dump_filter.filter(dump)

    statements, messages = run_psql(psql_path, settings, lines())
    return SupabaseRestoreResult(
        target_label,
        statements,
        [name for name, _ in target.extensions_to_create],
        target.roles_to_create,
        target.roles,
        dump_filter.applied,
        dump_filter.skipped,
        dump_filter.added,
        dump_filter.kept_existing,
        dump_filter.loaded_tables,
        dump_filter.cron_jobs,
        dump_filter.large_objects,
        messages,
    )


def is_supabase_project(settings: DatabaseSettings) -> bool:
    with settings.connect(autocommit=True) as connection:
        return bool(scalar(connection, "SELECT to_regclass('auth.schema_migrations') IS NOT NULL"))


def comparable_figures(recorded: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """The manifest's figures as a Supabase restore can reproduce them: user schemas in full;
    auth and storage tables by row count (the project's own migrations may shape their rows
    differently); cron.job by count; the rest of Supabase's schemas and the migration histories
    are the project's own, not compared. Returns (entries, {schema.table: reason not compared})."""
    entries: list[dict] = []
    not_compared: dict[str, str] = {}
    for entry in recorded:
        table = (entry["schema"], entry["table"])
        name = f"{table[0]}.{table[1]}"
        if table in MIGRATION_TABLES:
            not_compared[name] = "the project's own migration history"
        elif not is_managed(table[0]):
            entries.append(entry)
        elif table[0] in DATA_SCHEMAS or table == ("cron", "job"):
            entries.append({**entry, "checksum": None})
        else:
            not_compared[name] = "a Supabase-managed schema whose rows are not restored"
    return entries, not_compared
