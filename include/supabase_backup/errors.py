"""One error tree for the whole library.

Every class's docstring is its message template, with named fields, so the text a person reads is the
fix, not just the symptom (BorgBackup's ``helpers/errors.py`` does the same). Each class declares its
``fields``; they are real attributes set when the error is built, and building an error without one
of them is a TypeError, so a message can never print a placeholder. Messages never contain a
password or an API key: callers pass hosts, names and versions, never credentials.

``exit_code`` is what the ``supabase-backup`` command exits with for that class (the table is in
``supabase-backup --help``). ``permanent`` marks errors that a retry cannot fix (configuration, a
missing migration, a missing or too old pg_dump, a refused key): the DAG fails those at once.
"""

from __future__ import annotations

import string
from typing import Any, ClassVar

EXIT_OK = 0
EXIT_ARCHIVE_DAMAGED = 1
EXIT_ERROR = 2
EXIT_CONFIGURATION = 3
EXIT_MIGRATION_MISSING = 4
EXIT_PG_DUMP = 5
EXIT_DUMP_FAILED = 6
EXIT_ACCESS_DENIED = 7
EXIT_ARCHIVE_KEY_TAKEN = 8
EXIT_NOT_FOUND = 9
EXIT_RESTORE_REFUSED = 10
EXIT_EXTENSIONS_MISSING = 11
EXIT_RESTORE_FAILED = 12
EXIT_RESTORE_INCOMPLETE = 13
EXIT_FIGURES_DIFFER = 14
EXIT_DATABASE_UNREACHABLE = 15
EXIT_DATABASE_MISSING = 16

EXIT_CODES_HELP = """exit codes:
  0  success
  1  the archive was read and is damaged or incomplete (VerificationFailed)
  2  any other error
  3  configuration or usage error
  4  the backup tables are missing (apply include/sql/001_backup_system.sql)
  5  no usable pg_dump, or one too old for the server
  6  pg_dump failed
  7  a key or password was refused (the database refused the login, S3 or Storage the key)
  8  the archive key is taken by another archive
  9  the archive or object does not exist
 10  refused: an unsafe member name (verify and restore), or for restore a target that is
     not empty or objects that differ
 11  restore refused: the target lacks extensions the dump creates (see --skip-extension)
 12  restore failed: psql stopped on an error (nothing was committed)
 13  restore finished but the target refused some objects (they are listed)
 14  the restored database differs from the figures the backup recorded (tables named)
 15  no Postgres server answers at the database URL's host and port (or it dropped the connection)
 16  the database URL names a database the server does not have"""


class BackupError(Exception):
    """Backup failed: {reason}"""

    fields: ClassVar[tuple[str, ...]] = ("reason",)
    exit_code: ClassVar[int] = EXIT_ERROR
    permanent: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self.fields):
            raise TypeError(f"{type(self).__name__} takes {self.fields}, got {len(args)} values")
        values = dict(zip(self.fields, args))
        for name, value in kwargs.items():
            if name not in self.fields or name in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated field {name!r}")
            values[name] = value
        missing = [name for name in self.fields if name not in values]
        if missing:
            raise TypeError(f"{type(self).__name__} needs {', '.join(missing)}")
        for name, value in values.items():
            setattr(self, name, value)
        # args in field order, so the error pickles and compares like any exception.
        super().__init__(*(values[name] for name in self.fields))

    @classmethod
    def template(cls) -> str:
        return " ".join((cls.__doc__ or "{reason}").split())

    def message_fields(self) -> dict[str, Any]:
        """The values the template is filled with; subclasses may present a field differently."""
        return {name: getattr(self, name) for name in self.fields}

    @classmethod
    def template_field_names(cls) -> set[str]:
        """The names the template may use: the fields, plus any a subclass derives from them."""
        return set(cls.fields)

    def __str__(self) -> str:
        return self.template().format(**self.message_fields())


def template_fields(error_class: type[BackupError]) -> set[str]:
    """The field names a class's template uses (tests hold them equal to ``fields``)."""
    return {
        name.split(".")[0].split("[")[0].split("!")[0]
        for _, name, _, _ in string.Formatter().parse(error_class.template())
        if name
    }


class ConfigurationError(BackupError):
    """Configuration problem: {reason}"""

    exit_code = EXIT_CONFIGURATION
    permanent = True


class MigrationMissing(BackupError):
    """Table {table} does not exist in the Supabase database: apply include/sql/001_backup_system.sql (psql -v ON_ERROR_STOP=1 -f include/sql/001_backup_system.sql) and run again."""

    fields = ("table",)
    exit_code = EXIT_MIGRATION_MISSING
    permanent = True


class PgDumpTooOld(BackupError):
    """pg_dump {client_version} cannot dump a Postgres {server_major} server: install postgresql-client-{server_major} (or set the Airflow Variable supabase_backup_pg_dump_path to a pg_dump of that major version or newer)."""

    fields = ("client_version", "server_major")
    exit_code = EXIT_PG_DUMP
    permanent = True


class PgDumpNotFound(BackupError):
    """No usable pg_dump was found (looked in {searched}): install postgresql-client-{server_major} or set the Airflow Variable supabase_backup_pg_dump_path."""

    fields = ("searched", "server_major")
    exit_code = EXIT_PG_DUMP
    permanent = True


class PgDumpUnusable(BackupError):
    """{path} is not a usable pg_dump: it printed {output!r} for --version, expected "pg_dump (PostgreSQL) N…"; point supabase_backup_pg_dump_path at a real pg_dump."""

    fields = ("path", "output")
    exit_code = EXIT_PG_DUMP
    permanent = True


class DatabaseDumpFailed(BackupError):
    """pg_dump exited with status {return_code}: {messages}"""

    fields = ("return_code", "messages")
    exit_code = EXIT_DUMP_FAILED


class DatabaseDumpIncomplete(DatabaseDumpFailed):
    """{program} exited with status 0, but {member} is not a whole dump: {reason}. A dump that does not prove itself complete is never kept as a backup; check that {program} is pg_dump itself (not a wrapper that hides its errors) and that the staging disk has room, then run again."""

    fields = ("program", "member", "reason")  # type: ignore[assignment]  # its own fields
    permanent = True


class ApiError(BackupError):
    """{method} {route} answered {reply} (code {code}): {message}"""

    # http_status: the HTTP status, None when no reply arrived (a refused or dropped connection);
    # status: the effective status (the body's statusCode when Storage wraps it in an HTTP 400);
    # code: the body's error code (or the transport failure's name), None when there was none.
    fields = ("method", "route", "http_status", "status", "code", "message")
    # The fields as attributes, for readers and the type checker (BackupError sets them).
    method: str
    route: str
    http_status: int | None
    status: int | None
    code: str | None
    message: str

    def message_fields(self) -> dict[str, Any]:
        values = super().message_fields()
        if self.http_status is None:
            values["reply"] = "nothing (no HTTP reply)"
        elif self.status != self.http_status:
            values["reply"] = f"HTTP {self.http_status} (body status {self.status})"
        else:
            values["reply"] = f"HTTP {self.http_status}"
        values["code"] = self.code or "none"
        return values

    @classmethod
    def template_field_names(cls) -> set[str]:
        return set(cls.fields) | {"reply"}


class ApiNotFound(ApiError):
    """{method} {route} found nothing: {reply} (code {code}): {message}"""


class ApiFeatureNotEnabled(ApiError):
    """{method} {route} is not enabled on this project: {reply} (code {code}): {message}"""


class ApiTransientError(ApiError):
    """{method} {route} failed in a way that usually passes: {reply} (code {code}): {message}; if it persists, check the Supabase project's status page and run again."""


class ApiUnauthorized(BackupError):
    """{service} refused the service key (HTTP {status}): check the password of the supabase_api connection (service_role JWT or sb_secret_ key)."""

    fields = ("service", "status")
    exit_code = EXIT_ACCESS_DENIED
    permanent = True


class ManagementTokenRefused(BackupError):
    """The Supabase Management API at {url} refused the access token (HTTP {status}): set a personal access token (sbp_..., from the dashboard's Account > Access Tokens) as the password of the supabase_management connection."""

    fields = ("url", "status")
    exit_code = EXIT_ACCESS_DENIED
    permanent = True


class ManagementAccessDenied(BackupError):
    """The Supabase Management API at {url} does not let this access token read project {project_ref} ({message}): check project_ref in the supabase_management connection's extra, and that the token's owner is a member of the project's organization."""

    fields = ("url", "project_ref", "message")
    exit_code = EXIT_ACCESS_DENIED
    permanent = True


class ManagementRateLimited(BackupError):
    """{method} {route} was still rate limited after {attempts} attempts (the Management API allows 120 requests a minute per token, project and endpoint): another job is using the same access token; give the backup a token of its own, or run it again later."""

    fields = ("method", "route", "attempts")


class DatabaseLoginRefused(BackupError):
    """The Postgres server at {target} refused the login ({server_said}): check the user in the database URL and the password in PGPASSWORD (the DAG takes both from its Airflow connection)."""

    fields = ("target", "server_said")
    exit_code = EXIT_ACCESS_DENIED
    permanent = True


class DatabaseUnreachable(BackupError):
    """No Postgres server answers at {host}:{port} ({reason}): check the host and port in the database URL (a Supabase project's session pooler listens on 5432) and that the server is running, then run again."""

    fields = ("host", "port", "reason")
    exit_code = EXIT_DATABASE_UNREACHABLE


class DatabaseMissing(BackupError):
    """The Postgres server at {host}:{port} has no database {dbname!r}: name an existing database in the database URL, or create it first (createdb {dbname}) when it is a restore target."""

    fields = ("host", "port", "dbname")
    exit_code = EXIT_DATABASE_MISSING
    permanent = True


class DatabaseFailed(BackupError):
    """The database {target} failed: {reason}"""

    fields = ("target", "reason")


class UnsafeObjectName(BackupError):
    """Object name {key!r} cannot be stored safely: {reason}"""

    fields = ("key", "reason")


class IncompleteExport(BackupError):
    """Export incomplete: {reason}"""


class InventoryMismatch(BackupError):
    """Storage does not match the database snapshot: {reason}"""


class ObjectDownloadFailed(BackupError):
    """Could not download object {key!r} of bucket {bucket!r}: {reason}"""

    fields = ("key", "bucket", "reason")


class StagingCorrupted(BackupError):
    """Staged export of {name} cannot be used: {reason}."""

    fields = ("name", "reason")
    permanent = True  # the same staged files would be read again


class ArchiveKeyTaken(BackupError):
    """S3 key s3://{bucket}/{key} already holds a different archive; refusing to overwrite it."""

    fields = ("bucket", "key")
    exit_code = EXIT_ARCHIVE_KEY_TAKEN


class UploadFailed(BackupError):
    """Upload to s3://{bucket}/{key} failed: {reason}"""

    fields = ("bucket", "key", "reason")


class ArchiveNotFound(BackupError):
    """No archive at {location}: {reason}"""

    fields = ("location", "reason")
    exit_code = EXIT_NOT_FOUND
    permanent = True


class ManifestInvalid(BackupError):
    """manifest.json is not valid: {reason}"""

    exit_code = EXIT_ARCHIVE_DAMAGED


class VerificationFailed(BackupError):
    """Archive verification failed for {archive}: {reason}"""

    fields = ("archive", "reason")
    exit_code = EXIT_ARCHIVE_DAMAGED


class RepositoryInvalid(BackupError):
    """The backup repository at s3://{bucket}/{prefix} cannot be used: {reason}"""

    fields = ("bucket", "prefix", "reason")
    exit_code = EXIT_CONFIGURATION
    permanent = True


class RepositoryDamaged(BackupError):
    """The backup repository at s3://{bucket}/{prefix} is damaged: {reason}. Run the repository check with read_data to name every damaged pack and the snapshots it affects; a snapshot that needs a damaged pack cannot be restored whole."""

    fields = ("bucket", "prefix", "reason")
    # The fields as attributes, for readers and the type checker (BackupError sets them).
    bucket: str
    prefix: str
    reason: str
    exit_code = EXIT_ARCHIVE_DAMAGED


class SnapshotNotFound(BackupError):
    """The backup repository at s3://{bucket}/{prefix} has no snapshot {snapshot}: list the snapshots it holds and name one of them."""

    fields = ("bucket", "prefix", "snapshot")
    exit_code = EXIT_NOT_FOUND
    permanent = True


class SnapshotKeyTaken(BackupError):
    """s3://{bucket}/{key} already holds another snapshot; a snapshot is never overwritten. The key is the sha256 of the snapshot's bytes, so a different object there was written by something other than supabase-backup: inspect it before removing it."""

    fields = ("bucket", "key")
    exit_code = EXIT_ARCHIVE_KEY_TAKEN
    permanent = True


class HistoryRowMissing(BackupError):
    """backup_history has no row for run {run_id}: the run's first task never recorded it; clear the run's first task and run it again."""

    fields = ("run_id",)


class UnsafeMemberPath(BackupError):
    """Archive member {member!r} {reason}: it could land outside the folder or target it is extracted or restored into, so the archive is refused (verify and restore alike) and nothing was restored. This archive was not written by supabase-backup, or was altered."""

    fields = ("member", "reason")
    exit_code = EXIT_RESTORE_REFUSED
    permanent = True


class RestoreRefused(BackupError):
    """Restore refused: {reason}"""

    exit_code = EXIT_RESTORE_REFUSED
    permanent = True


class ExtensionsMissing(BackupError):
    """The dump creates extension(s) {missing} that {target} does not offer (pg_available_extensions): install them on the target, or pass --skip-extension NAME for each to restore without them (their CREATE EXTENSION, COMMENT ON EXTENSION and the objects in their own schema are then left out)."""

    fields = ("missing", "target")
    exit_code = EXIT_EXTENSIONS_MISSING
    permanent = True


class RestoreFailed(BackupError):
    """psql stopped with status {return_code} and rolled the restore back (nothing was committed): {messages}"""

    fields = ("return_code", "messages")
    exit_code = EXIT_RESTORE_FAILED


class RestoreIncomplete(BackupError):
    """Restore incomplete: {reason}"""

    exit_code = EXIT_RESTORE_INCOMPLETE
    # What was done, for callers that report it (set by restore.storage before raising).
    result: Any = None


class DrillFailed(BackupError):
    """Restore drill failed: {reason}"""

    reason: str  # the field as an attribute, for the type checker (BackupError sets it)

    exit_code = EXIT_ERROR
    permanent = True


class NothingToDrill(BackupError):
    """No backup to drill: {reason}. Run the supabase_backup DAG until it succeeds, then drill again."""

    permanent = True


class FiguresDiffer(BackupError):
    """The restored backup {archive} differs from the figures recorded at dump time in {count} table(s): {differences}"""

    fields = ("archive", "count", "differences")
    exit_code = EXIT_FIGURES_DIFFER
    permanent = True


class IdentityMismatch(BackupError):
    """{archive} is encrypted to {recipients}, and no identity in {identity_file} matches: pass the identity file (AGE-SECRET-KEY-…) of one of those recipients with --identity."""

    fields = ("archive", "recipients", "identity_file")
    exit_code = EXIT_ACCESS_DENIED
    permanent = True


class DecryptionFailed(BackupError):
    """Could not decrypt {archive}: {reason}. The ciphertext was altered or truncated; do not trust this copy."""

    fields = ("archive", "reason")
    exit_code = EXIT_ARCHIVE_DAMAGED


class RetentionFailed(BackupError):
    """Retention could not delete s3://{bucket}/{key}: {reason}. The backup itself is verified and recorded; fix the access and the next run's retention deletes it."""

    fields = ("bucket", "key", "reason")


class RunFailed(BackupError):
    """Backup failed: {reason}"""

    reason: str  # the field as an attribute, for the type checker (BackupError sets it)


def scrub(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message
