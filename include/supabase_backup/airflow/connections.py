"""Airflow connections and Variables, turned into the library's plain settings objects.

This is all the Backups plugin needs from the boundary: it reads the same connections as the DAG's
tasks. Everything here runs when a task runs or a route answers, never while a DAG file is parsed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from supabase_backup.airflow import supabase_hook
from supabase_backup.config import (
    API_CONN_ID,
    AWS_CONN_ID,
    DATABASE_CONN_ID,
    DRILL_CONN_ID,
    PROJECT_CONNECTION_VARIABLE,
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


def project_connection_id() -> str | None:
    """The ``supabase`` connection the Variable ``supabase_backup_connection_id`` names, or None
    (unset, the default): then the old ``supabase_db`` and ``supabase_api`` connections are used.
    Read with a default, so a run missing every other Variable can still reach its database."""
    from airflow.sdk import Variable

    return (Variable.get(PROJECT_CONNECTION_VARIABLE, default=None) or "").strip() or None


def _connection(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def database_settings(conn_id: str | None = None) -> DatabaseSettings:
    """libpq parameters from the named connection: a ``supabase`` connection's ``database_url``,
    or a Postgres connection's fields. Without an id: the project connection if the Variable names
    one, else ``supabase_db``. Needs no other Variable, so a run that fails on a missing Variable
    can still record why in backup_history."""
    connection = _connection(conn_id or project_connection_id() or DATABASE_CONN_ID)
    if connection.conn_type == supabase_hook.CONN_TYPE:
        return supabase_hook.database_settings_from_connection(connection)
    return DatabaseSettings.from_connection(connection)


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


def api_settings(conn_id: str | None = None) -> ApiSettings:
    """The project URL (host) and service key (password) from the named connection (a
    ``supabase`` connection or the old ``supabase_api``). Without an id: the project connection if
    the Variable names one, else ``supabase_api``."""
    return supabase_hook.api_settings_from_connection(
        _connection(conn_id or project_connection_id() or API_CONN_ID)
    )


def management_settings(conn_id: str | None = None) -> supabase_hook.ManagementSettings | None:
    """The Management API settings of a ``supabase`` connection (None without a token, or when
    the project is described by the old connections, which have no place for one)."""
    conn_id = conn_id or project_connection_id()
    if conn_id is None:
        return None
    connection = _connection(conn_id)
    if connection.conn_type != supabase_hook.CONN_TYPE:
        return None
    return supabase_hook.management_settings_from_connection(connection)


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
    secrets: list[str] = []
    for read_secrets in (
        lambda: [database_settings().password],
        lambda: [api_settings().key],
        _project_connection_secrets,
    ):
        try:
            secrets.extend(secret or "" for secret in read_secrets())
        except Exception:  # noqa: BLE001 - scrubbing must never mask the original failure
            pass
    return list(dict.fromkeys(secret for secret in secrets if secret))


def _project_connection_secrets() -> list[str]:
    # The management token too, which neither settings object above carries.
    conn_id = project_connection_id()
    if conn_id is None:
        return []
    connection = _connection(conn_id)
    if connection.conn_type != supabase_hook.CONN_TYPE:
        return []
    return supabase_hook.secrets_of_connection(connection)


def airflow_version() -> str:
    import airflow

    return airflow.__version__
