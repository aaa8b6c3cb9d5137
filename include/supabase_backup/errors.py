"""One error tree for the whole library.

Every class's docstring is its message template, so the text a person reads is the fix, not just
the symptom (BorgBackup's `helpers/errors.py` does the same). Messages never contain a password or
an API key: callers pass hosts, names and versions, never credentials.
"""

from __future__ import annotations


class BackupError(Exception):
    """Backup failed: {}"""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.args = args

    def __str__(self) -> str:
        doc = (type(self).__doc__ or "{}").strip().splitlines()[0]
        try:
            return doc.format(*self.args)
        except (IndexError, KeyError):
            return " ".join(str(arg) for arg in self.args) or doc


class ConfigurationError(BackupError):
    """Configuration problem: {}"""


class MigrationMissing(BackupError):
    """Table {} does not exist in the Supabase database: apply include/sql/001_backup_system.sql (psql -f include/sql/001_backup_system.sql) and run again."""


class PgDumpTooOld(BackupError):
    """pg_dump {} cannot dump a Postgres {} server: install postgresql-client-{} (or set the Airflow Variable supabase_backup_pg_dump_path to a pg_dump of that major version or newer)."""


class PgDumpNotFound(BackupError):
    """No pg_dump was found (looked in {}): install postgresql-client-{} or set the Airflow Variable supabase_backup_pg_dump_path."""


class DatabaseDumpFailed(BackupError):
    """pg_dump exited with status {}: {}"""


class ApiError(BackupError):
    """{} {} answered HTTP {} (code {}): {}"""


class ApiUnauthorized(BackupError):
    """{} refused the service key (HTTP {}): check the password of the supabase_api connection (service_role JWT or sb_secret_ key)."""


class UnsafeObjectName(BackupError):
    """Object name {!r} in bucket {!r} cannot be stored safely: {}"""


class IncompleteExport(BackupError):
    """Export incomplete: {}"""


class InventoryMismatch(BackupError):
    """Storage does not match the database snapshot: {}"""


class ArchiveKeyTaken(BackupError):
    """S3 key s3://{}/{} already holds a different archive; refusing to overwrite it."""


class VerificationFailed(BackupError):
    """Archive verification failed for {}: {}"""


class ApiNotFound(ApiError):
    """{} {} found nothing (HTTP {}, code {}): {}"""


class ApiFeatureNotEnabled(ApiError):
    """{} {} is not enabled on this project (HTTP {}, code {}): {}"""


class ApiTransientError(ApiError):
    """{} {} failed in a way that usually passes (HTTP {}, code {}): {}; if it persists, check the Supabase project's status page and run again."""


class ObjectDownloadFailed(BackupError):
    """Could not download object {!r} of bucket {!r}: {}"""
