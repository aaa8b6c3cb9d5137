"""Connection ids, Airflow Variables and defaults, read and validated in one place.

Everything here is read at task run time, never while the DAG file is parsed: parsing must not open
a connection. The only parse-time knob is the schedule, taken from the environment.

| what                          | where                                         | default                                  |
|-------------------------------|-----------------------------------------------|------------------------------------------|
| Supabase database             | connection ``supabase_db`` (postgres)         | required                                 |
| Supabase project URL + key    | connection ``supabase_api`` (host, password)  | required                                 |
| S3                            | connection ``aws_default``                    | required                                 |
| S3 bucket for archives        | Variable ``supabase_backup_s3_bucket``        | required                                 |
| key prefix in that bucket     | Variable ``supabase_backup_s3_prefix``        | ``supabase-backups/``                    |
| staging root                  | Variable ``supabase_backup_staging_root``     | ``file:///tmp/supabase-backup-staging``  |
| buckets to back up            | Variable ``supabase_backup_buckets``          | all buckets                              |
| download concurrency          | Variable ``supabase_backup_download_concurrency`` | 8                                    |
| server-side encryption        | Variable ``supabase_backup_sse``              | ``AES256`` (or ``aws:kms``, ``none``)    |
| KMS key id (with ``aws:kms``) | Variable ``supabase_backup_sse_kms_key_id``   | none                                     |
| pg_dump to use                | Variable ``supabase_backup_pg_dump_path``     | newest pg_dump found on the worker       |
| schedule (parse time)         | environment ``SUPABASE_BACKUP_SCHEDULE``      | ``@daily``                               |
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from supabase_backup.errors import ConfigurationError
from supabase_backup.staging import DEFAULT_STAGING_ROOT

DAG_ID = "supabase_backup"
DATABASE_CONN_ID = "supabase_db"
API_CONN_ID = "supabase_api"
AWS_CONN_ID = "aws_default"
DEFAULT_S3_PREFIX = "supabase-backups/"
DEFAULT_SCHEDULE = "@daily"
DEFAULT_DOWNLOAD_CONCURRENCY = 8
SSE_CHOICES = ("AES256", "aws:kms", "none")


def schedule_from_environment() -> str | None:
    """The DAG's schedule; ``none`` (any case) turns the schedule off."""
    value = os.environ.get("SUPABASE_BACKUP_SCHEDULE", DEFAULT_SCHEDULE).strip()
    return None if value.lower() in ("", "none", "null") else value


@dataclass(frozen=True)
class BackupSettings:
    s3_bucket: str
    s3_prefix: str = DEFAULT_S3_PREFIX
    staging_root: str = DEFAULT_STAGING_ROOT
    buckets: tuple[str, ...] | None = None
    download_concurrency: int = DEFAULT_DOWNLOAD_CONCURRENCY
    server_side_encryption: str = "AES256"
    sse_kms_key_id: str | None = None
    pg_dump_path: str | None = None
    database_conn_id: str = DATABASE_CONN_ID
    api_conn_id: str = API_CONN_ID
    aws_conn_id: str = AWS_CONN_ID
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_variables(cls, get_variable) -> "BackupSettings":
        """Build from a ``get_variable(name, default)`` callable (Airflow's ``Variable.get``)."""
        bucket = (get_variable("supabase_backup_s3_bucket", None) or "").strip()
        if not bucket:
            raise ConfigurationError(
                "the Airflow Variable supabase_backup_s3_bucket is not set: set it to the S3 bucket "
                "that receives the archives (e.g. AIRFLOW_VAR_SUPABASE_BACKUP_S3_BUCKET=my-backups)"
            )
        prefix = get_variable("supabase_backup_s3_prefix", DEFAULT_S3_PREFIX) or ""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        concurrency_text = get_variable(
            "supabase_backup_download_concurrency", str(DEFAULT_DOWNLOAD_CONCURRENCY)
        )
        try:
            concurrency = int(concurrency_text)
        except ValueError:
            concurrency = 0
        if not 1 <= concurrency <= 64:
            raise ConfigurationError(
                f"supabase_backup_download_concurrency must be a whole number from 1 to 64, "
                f"not {concurrency_text!r}"
            )
        sse = get_variable("supabase_backup_sse", "AES256") or "AES256"
        if sse not in SSE_CHOICES:
            raise ConfigurationError(
                f"supabase_backup_sse must be one of {', '.join(SSE_CHOICES)}, not {sse!r}"
            )
        return cls(
            s3_bucket=bucket,
            s3_prefix=prefix,
            staging_root=get_variable("supabase_backup_staging_root", DEFAULT_STAGING_ROOT)
            or DEFAULT_STAGING_ROOT,
            buckets=parse_bucket_list(get_variable("supabase_backup_buckets", None)),
            download_concurrency=concurrency,
            server_side_encryption=sse,
            sse_kms_key_id=get_variable("supabase_backup_sse_kms_key_id", None) or None,
            pg_dump_path=get_variable("supabase_backup_pg_dump_path", None) or None,
        )


def parse_bucket_list(value) -> tuple[str, ...] | None:
    """Accept a JSON list, a comma-separated string, a list, or nothing (= every bucket)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        names = [str(item).strip() for item in value]
    else:
        text = str(value).strip()
        if not text:
            return None
        if text.startswith("["):
            try:
                names = [str(item).strip() for item in json.loads(text)]
            except json.JSONDecodeError as error:
                raise ConfigurationError(f"bucket list {text!r} is not valid JSON: {error}") from None
        else:
            names = [part.strip() for part in text.split(",")]
    names = [name for name in names if name]
    return tuple(dict.fromkeys(names)) or None
