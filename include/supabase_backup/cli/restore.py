"""``supabase-backup restore ARCHIVE``: the database into an empty Postgres, the objects into a
Storage API."""

from __future__ import annotations

import argparse
import os
import sys
import zipfile

from supabase_backup.errors import EXIT_CODES_HELP, EXIT_OK, ConfigurationError, RestoreIncomplete, RestoreRefused

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
goes to psql in PGPASSWORD, never on its command line; leave it out of --database-url and set
PGPASSWORD to keep it out of this command's too.

Storage (--only storage, or both): missing buckets are created with their recorded settings, then
every object is uploaded, streamed, with its recorded content type and cache control. Objects
already on the target with the same bytes are skipped, so an interrupted restore is simply run
again; objects with different bytes are refused unless --overwrite. Keys the target refuses are
listed with its reason (exit 13). The service key is read from the environment variable named by
--storage-key-env, never from the command line.

--dry-run prints what would be restored (tables and row estimates, objects and bytes per bucket)
and changes nothing."""


def register(commands) -> None:
    parser = commands.add_parser("restore", help=HELP, description=DESCRIPTION,
                                 epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", help="a backup-….zip file, or s3://bucket/key")
    parser.add_argument("--only", choices=("db", "storage"),
                        help="restore only the database or only the storage objects")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be restored, with counts and sizes; change nothing")
    parser.add_argument("--database-url", metavar="URL",
                        default=os.environ.get("SUPABASE_BACKUP_RESTORE_DATABASE_URL"),
                        help="postgresql://user@host:port/dbname of an EMPTY database "
                             "(default: $SUPABASE_BACKUP_RESTORE_DATABASE_URL)")
    parser.add_argument("--storage-url", metavar="URL",
                        help="the target project URL (https://xyz.supabase.co); Storage is under "
                             "/storage/v1 on it")
    parser.add_argument("--storage-key-env", metavar="NAME", default="SUPABASE_SERVICE_ROLE_KEY",
                        help="environment variable holding the target's service key "
                             "(default: SUPABASE_SERVICE_ROLE_KEY)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace objects that exist on the target with different bytes")
    parser.add_argument("--skip-extension", metavar="NAME", action="append", default=[],
                        help="restore without this extension the target lacks (repeat per name)")
    parser.add_argument("--identity", metavar="FILE",
                        help="age identity file to decrypt an encrypted ….zip.age archive")
    parser.add_argument("--psql", metavar="PATH", help="the psql to run (default: psql on PATH)")
    parser.set_defaults(run=run)


def _check_arguments(arguments) -> tuple[bool, bool]:
    restore_db = arguments.only in (None, "db")
    restore_storage = arguments.only in (None, "storage")
    if arguments.dry_run:
        return restore_db, restore_storage
    if restore_db and not arguments.database_url:
        raise ConfigurationError("--database-url is required to restore the database "
                                 "(or pass --only storage)")
    if restore_storage:
        if not arguments.storage_url:
            raise ConfigurationError("--storage-url is required to restore storage (or pass --only db)")
        if not os.environ.get(arguments.storage_key_env):
            raise ConfigurationError(
                f"the environment variable {arguments.storage_key_env} (--storage-key-env) is not "
                f"set: put the target project's service key in it")
    return restore_db, restore_storage


def run(arguments) -> int:
    from supabase_backup import restore
    from supabase_backup.archive import DATABASE_MEMBER
    from supabase_backup.verify import verify_archive

    from supabase_backup import encryption

    restore_db, restore_objects = _check_arguments(arguments)
    encryption.refuse_without_identity(arguments.archive, arguments.identity)
    opened = (encryption.open_decrypted(arguments.archive, arguments.identity)
              if arguments.identity else restore.open_archive(arguments.archive))
    with opened as (archive_file, label):
        try:
            archive = zipfile.ZipFile(archive_file)
        except zipfile.BadZipFile as error:
            from supabase_backup.errors import VerificationFailed

            raise VerificationFailed(label, f"not a readable zip file ({error})") from None
        with archive:
            names = restore.check_member_names(archive)
            verified = verify_archive(archive_file, label=label)
            print(f"Verified {label}: {names:,} member names are safe; "
                  f"{verified['members_checked']:,} members match the manifest.", file=sys.stderr)
            plan = restore.plan_restore(archive)
            if arguments.dry_run:
                print(plan.describe(arguments.only, _safe_url(arguments.database_url),
                                    arguments.storage_url))
                return EXIT_OK
            header, _ = restore.read_header_and_members(archive)
            if restore_db:
                if plan.database_bytes is None:
                    if arguments.only == "db":
                        raise RestoreRefused("the archive holds no database dump")
                    print("Database: not in this archive; skipped.")
                else:
                    _restore_database(arguments, archive, DATABASE_MEMBER)
            if restore_objects:
                _restore_storage(arguments, archive, header, plan)
    return EXIT_OK


def _safe_url(url: str | None) -> str | None:
    if not url:
        return url
    from supabase_backup.database import DatabaseSettings

    return DatabaseSettings.from_url(url).describe()


def _restore_database(arguments, archive: zipfile.ZipFile, member: str) -> None:
    from supabase_backup.database import DatabaseSettings
    from supabase_backup.restore_database import open_text, restore_database

    result = restore_database(lambda: open_text(archive.open(member)),
                              DatabaseSettings.from_url(arguments.database_url),
                              skip_extensions=arguments.skip_extension, psql=arguments.psql)
    print(result.describe())


def _restore_storage(arguments, archive: zipfile.ZipFile, header: dict, plan) -> None:
    from supabase_backup.api_client import ApiSettings
    from supabase_backup.restore_storage import Progress, restore_storage

    settings = ApiSettings(arguments.storage_url, os.environ[arguments.storage_key_env])
    progress = Progress({bucket.bucket: (bucket.objects, bucket.bytes)
                         for bucket in plan.buckets.values()})
    try:
        result = restore_storage(archive, header, settings, overwrite=arguments.overwrite,
                                 progress=progress)
    except RestoreIncomplete as error:
        print(error.result.describe())
        raise
    print(result.describe())
