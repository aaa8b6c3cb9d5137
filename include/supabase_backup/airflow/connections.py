"""Airflow connections and Variables, turned into the library's plain settings objects.

This is all the Backups plugin needs from the boundary: it reads the same connections as the DAG's
tasks. Everything here runs when a task runs or a route answers, never while a DAG file is parsed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from supabase_backup.config import (
    API_CONN_ID,
    AWS_CONN_ID,
    DATABASE_CONN_ID,
    DRILL_CONN_ID,
    BackupSettings,
    RunPlan,
)
from supabase_backup.errors import ConfigurationError
from supabase_backup.sources.api_client import ApiSettings
from supabase_backup.sources.database import DatabaseSettings
from supabase_backup.staging import StagingArea


def read_backup_settings() -> BackupSettings:
    """The Variables, validated (a missing or wrong one is a ConfigurationError naming it)."""
    from airflow.sdk import Variable

    return BackupSettings.from_variables(lambda name, default: Variable.get(name, default=default))


def database_settings(conn_id: str = DATABASE_CONN_ID) -> DatabaseSettings:
    """libpq parameters from the Postgres connection. Needs no Variable, so a run that fails on a
    missing Variable can still record why in backup_history."""
    from airflow.sdk import BaseHook

    return DatabaseSettings.from_connection(BaseHook.get_connection(conn_id))


def scratch_database_settings(conn_id: str = DRILL_CONN_ID) -> DatabaseSettings:
    """The server the restore drill creates its scratch databases on (the connection's schema is
    the database it connects to first, ``postgres`` by default). The connection's user needs
    CREATEDB, and CREATEROLE when the backup names roles the server lacks."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise ConfigurationError(
            f"the restore drill needs the Airflow connection {conn_id}: a Postgres server it may "
            "create and drop databases on (never the production database), e.g. "
            f"AIRFLOW_CONN_{conn_id.upper()}='postgresql://drill:…@drill-host:5432/postgres'"
        ) from None
    return DatabaseSettings.from_connection(connection)


def api_settings(conn_id: str = API_CONN_ID) -> ApiSettings:
    """The project URL (host) and service key (password) from the ``supabase_api`` connection."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    host = (connection.host or "").rstrip("/")
    if not host:
        raise ConfigurationError(
            f"connection {conn_id} has no host: set it to the project URL, "
            "e.g. https://<project-ref>.supabase.co"
        )
    if "://" not in host:
        scheme = connection.conn_type if connection.conn_type in ("http", "https") else "https"
        host = f"{scheme}://{host}" + (f":{connection.port}" if connection.port else "")
    key = connection.password or (connection.extra_dejson or {}).get("service_role_key")
    if not key:
        raise ConfigurationError(
            f"connection {conn_id} has no password: set it to the service role key (a "
            "service_role JWT or an sb_secret_… key)"
        )
    return ApiSettings(url=host, key=key)


def s3_client(aws_conn_id: str = AWS_CONN_ID):
    """A boto3 S3 client from the amazon provider's S3Hook: credentials, region and endpoint come
    from the Airflow connection."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id).get_conn()


def staging_area(plan: RunPlan) -> StagingArea:
    """The run's staging folder. An Airflow ObjectStoragePath, so an ``s3://`` root reaches the
    store with an Airflow connection's credentials on every worker: the one the URL names
    (``s3://conn_id@bucket/staging``), else the run's AWS connection (``s3://bucket/staging``;
    without a connection, ObjectStoragePath looks for credentials in the worker's environment)."""
    from airflow.sdk import ObjectStoragePath

    root = plan.settings.staging_root.rstrip("/")
    parts = urlsplit(root)
    names_connection = "@" in parts.netloc
    conn_id = plan.settings.aws_conn_id if parts.scheme == "s3" and not names_connection else None
    return StagingArea.for_run(ObjectStoragePath(root, conn_id=conn_id), plan.run_id)


def connection_secrets() -> list[str]:
    """Passwords and keys of our connections, so a failure message can be scrubbed of them."""
    secrets = []
    for read_secret in (lambda: database_settings().password, lambda: api_settings().key):
        try:
            secrets.append(read_secret() or "")
        except Exception:  # noqa: BLE001 - scrubbing must never mask the original failure
            pass
    return [secret for secret in secrets if secret]


def airflow_version() -> str:
    import airflow

    return airflow.__version__
