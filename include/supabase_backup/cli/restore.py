"""``supabase-backup restore ARCHIVE``: the database into an empty Postgres, the objects into a
Storage API."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from supabase_backup.archive.members import DATABASE_MEMBER
from supabase_backup.archive.verify import verify_archive
from supabase_backup.cli.database_url import connection_failures_explained, settings_from_argument
from supabase_backup.destination.location import open_archive
from supabase_backup.errors import (
    EXIT_CODES_HELP,
    EXIT_OK,
    ConfigurationError,
    FiguresDiffer,
    RestoreIncomplete,
    RestoreRefused,
)
from supabase_backup.restore import archive as restore_archive
from supabase_backup.restore import compare
from supabase_backup.restore import supabase as restore_supabase
from supabase_backup.restore.storage import Progress, restore_storage
from supabase_backup.sources.api_client import ApiSettings
from supabase_backup.sources.database import DatabaseSettings
from supabase_backup.sources.table_figures import SORTED_MD5_METHOD

if TYPE_CHECKING:
    from supabase_backup.restore.archive import RestoreArchive

# The environment is not in the process list, so a password in this variable is accepted.
DATABASE_URL_VARIABLE = "SUPABASE_BACKUP_RESTORE_DATABASE_URL"
HELP = "restore an archive: the database into an empty Postgres, the objects into a Storage API"
DESCRIPTION = """\
Restore a backup archive (a local file or s3://bucket/key, read in place by ranged GETs).

Before anything is changed: every member name is checked (no '..', absolute path, backslash, NUL
or drive letter), and the whole archive is verified against its manifest; an archive that fails
either is refused.

Database (--only db, or both): db/backup.sql streams into
  psql -v ON_ERROR_STOP=1 --single-transaction -f -
on an EMPTY database (createdb NAME first); any error rolls everything back. The dump is scanned
first: extensions the target does not offer are refused unless each is named with
--skip-extension (its CREATE EXTENSION, COMMENT ON EXTENSION and the entries in its own schema,
e.g. cron.* for pg_cron, are then left out), and roles the dump names (anon, authenticated,
service_role...) that the target lacks are created NOLOGIN in the same transaction. The password
comes from PGPASSWORD and goes to psql in its environment, never on a command line: a
--database-url holding one is refused (the process list shows it to every user of the machine).

Storage (--only storage, or both): missing buckets are created with their recorded settings, then
every object is uploaded, streamed, with its recorded content type and cache control. Objects
already on the target with the same bytes are skipped, so an interrupted restore is simply run
again; objects with different bytes are refused unless --overwrite. Keys the target refuses are
listed with its reason (exit 13). The service key is read from the environment variable named by
--storage-key-env, never from the command line.

--target supabase (auto when the target has auth.schema_migrations): the database is a FRESH
Supabase project's own 'postgres' database, restored into as its non-superuser postgres role.
None of the DDL of the schemas Supabase manages is replayed; the user's schemas are; the rows of
auth and storage tables (not their migration histories, which must be at least the source's) are
loaded with session_replication_role = replica; the user's triggers and policies on auth and
storage tables are added where absent; the source's missing extensions are created first; large
objects and cron jobs are carried; event triggers, publications and comments on Supabase's
objects are left out. One transaction; the output says what was run and what was left out.

--dry-run prints what would be restored (tables and row estimates, objects and bytes per bucket)
and changes nothing."""


def register(commands) -> None:
    parser = commands.add_parser(
        "restore",
        help=HELP,
        description=DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("archive", help="a backup-….zip file, or s3://bucket/key")
    parser.add_argument(
        "--only",
        choices=("db", "storage"),
        help="restore only the database or only the storage objects",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be restored, with counts and sizes; change nothing",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql://user@host:port/dbname of an EMPTY database, without a password (set "
        f"PGPASSWORD); default: ${DATABASE_URL_VARIABLE}, which may hold one",
    )
    parser.add_argument(
        "--storage-url",
        metavar="URL",
        help="the target project URL (https://xyz.supabase.co); Storage is under /storage/v1 on it",
    )
    parser.add_argument(
        "--storage-key-env",
        metavar="NAME",
        default="SUPABASE_SERVICE_ROLE_KEY",
        help="environment variable holding the target's service key "
        "(default: SUPABASE_SERVICE_ROLE_KEY)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace objects that exist on the target with different bytes",
    )
    parser.add_argument(
        "--skip-extension",
        metavar="NAME",
        action="append",
        default=[],
        help="restore without this extension the target lacks (repeat per name)",
    )
    parser.add_argument(
        "--target",
        choices=("auto", "postgres", "supabase"),
        default="auto",
        help="postgres: an empty database; supabase: a fresh Supabase project's "
        "postgres database; auto (default): supabase when the target has "
        "auth.schema_migrations",
    )
    parser.add_argument(
        "--identity",
        metavar="FILE",
        help="age identity file to decrypt an encrypted ….zip.age archive",
    )
    parser.add_argument("--psql", metavar="PATH", help="the psql to run (default: psql on PATH)")
    parser.set_defaults(run=run)


def target_database(arguments) -> DatabaseSettings | None:
    """The database to restore into: --database-url (refused with a password in it), else the
    environment variable, else None."""
    if arguments.database_url:
        return settings_from_argument(arguments.database_url)
    if os.environ.get(DATABASE_URL_VARIABLE):
        return DatabaseSettings.from_url(os.environ[DATABASE_URL_VARIABLE])
    return None


def _check_arguments(arguments, target: DatabaseSettings | None) -> tuple[bool, bool]:
    restore_db = arguments.only in (None, "db")
    restore_storage = arguments.only in (None, "storage")
    if arguments.dry_run:
        return restore_db, restore_storage
    if restore_db and target is None:
        raise ConfigurationError(
            "--database-url is required to restore the database (or pass --only storage)"
        )
    if restore_storage:
        if not arguments.storage_url:
            raise ConfigurationError(
                "--storage-url is required to restore storage (or pass --only db)"
            )
        if not os.environ.get(arguments.storage_key_env):
            raise ConfigurationError(
                f"the environment variable {arguments.storage_key_env} (--storage-key-env) is not "
                f"set: put the target project's service key in it"
            )
    return restore_db, restore_storage


def run(arguments) -> int:
    target = target_database(arguments)
    restore_db, restore_objects = _check_arguments(arguments, target)
    with open_archive(arguments.archive, arguments.identity) as (archive_file, label):
        # Read with bounded memory whatever the member count: no zipfile.ZipFile (archive.py).
        with restore_archive.RestoreArchive(archive_file, label) as archive:
            names = restore_archive.check_member_names(archive)
            verified = verify_archive(archive_file, label=label)
            print(
                f"Verified {label}: {names:,} member names are safe; "
                f"{verified['members_checked']:,} members match the manifest.",
                file=sys.stderr,
            )
            plan = restore_archive.plan_restore(archive)
            if arguments.dry_run:
                print(
                    plan.describe(
                        arguments.only, target.describe() if target else None, arguments.storage_url
                    )
                )
                return EXIT_OK
            header, _ = restore_archive.read_header_and_members(archive)
            if restore_db:
                if plan.database_bytes is None:
                    if arguments.only == "db":
                        raise RestoreRefused("the archive holds no database dump")
                    print("Database: not in this archive; skipped.")
                else:
                    # _check_arguments refuses a database restore without --database-url
                    assert target is not None
                    with connection_failures_explained(target):
                        _restore_database(
                            target,
                            arguments,
                            archive,
                            DATABASE_MEMBER,
                            plan.tables,
                            label,
                            plan.figures_method,
                        )
            if restore_objects:
                _restore_storage(arguments, archive, header, plan)
    return EXIT_OK


def _restore_database(
    target: DatabaseSettings,
    arguments,
    archive: RestoreArchive,
    member: str,
    tables: list[dict],
    label: str,
    figures_method: str | None,
) -> None:
    into_supabase = arguments.target == "supabase" or (
        arguments.target == "auto" and restore_supabase.is_supabase_project(target)
    )
    result = compare.restore_dump(
        archive,
        target,
        member=member,
        into_supabase=into_supabase,
        skip_extensions=arguments.skip_extension,
        psql=arguments.psql,
    )
    print(result.describe())
    if not compare.has_exact_figures(tables):
        print(
            "Figures: this archive records no exact row counts or checksums (made before they "
            "existed); compare the row counts above by hand."
        )
        return
    # The same figures the backup recorded in the dump's snapshot, on the restored database.
    comparison = compare.compare_with_recorded(
        target,
        tables,
        figures_method or SORTED_MD5_METHOD,
        extensions_skipped=result.extensions_skipped,
        into_supabase=into_supabase,
    )
    print(
        f"Figures: {comparison.compared} tables, {comparison.rows:,} rows and "
        f"{comparison.checksums_compared} content checksums compared with those recorded at "
        f"dump time: {'all equal' if comparison.ok else f'{len(comparison.differences)} differ'}."
    )
    for line in comparison.not_compared:
        print(f"  not compared: {line}")
    if not comparison.ok:
        raise FiguresDiffer(label, len(comparison.differences), "; ".join(comparison.differences))


def _restore_storage(arguments, archive: RestoreArchive, header: dict, plan) -> None:

    settings = ApiSettings(arguments.storage_url, os.environ[arguments.storage_key_env])
    progress = Progress(
        {bucket.bucket: (bucket.objects, bucket.bytes) for bucket in plan.buckets.values()}
    )
    try:
        result = restore_storage(
            archive, header, settings, overwrite=arguments.overwrite, progress=progress
        )
    except RestoreIncomplete as error:
        print(error.result.describe())
        raise
    print(result.describe())
