"""The ``supabase`` connection type: one Airflow connection describes one Supabase project.

| field                 | holds                                                                  |
|-----------------------|------------------------------------------------------------------------|
| host                  | the project URL, ``https://<project-ref>.supabase.co``                 |
| password              | the service key: an ``sb_secret_…`` key or the legacy service_role JWT |
| extra ``database_url``| ``postgresql://postgres.<ref>:…@…pooler.supabase.com:5432/postgres``   |
| extra ``management_token`` | optional: a personal access token for the Management API          |

The database URL carries its password: the connection store is the deployment's secret store, the
same place the old ``supabase_db`` connection kept it. The form the Airflow UI draws for this type
is declared in ``provider.py`` (Airflow 3.2+ reads it from the provider info, without importing
this module); this module turns a connection into the library's plain settings.

The old pair of connections (``supabase_db`` of type postgres, ``supabase_api``) keeps working:
``connections.py`` takes this path only for a connection whose type is ``supabase``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

from supabase_backup.errors import ConfigurationError
from supabase_backup.sources.api_client import ApiSettings
from supabase_backup.sources.database import DatabaseSettings

CONN_TYPE = "supabase"
DEFAULT_MANAGEMENT_API_URL = "https://api.supabase.com"
# Supabase's transaction pooler: pg_dump needs a session (SET, snapshots, cursors), SPEC §6.
TRANSACTION_POOLER_PORT = 6543


@dataclass(frozen=True)
class ManagementSettings:
    """Where the Management API is, which project to ask about and the token to ask with."""

    api_url: str
    project_ref: str | None
    access_token: str = field(repr=False)


def _extra_field(connection, name: str) -> str | None:
    """An extra field of the form: Airflow 3's UI stores it under its own name, Airflow 2's form
    (and connections exported from it) under ``extra__supabase__<name>``."""
    extra = connection.extra_dejson or {}
    value = extra.get(name) or extra.get(f"extra__{CONN_TYPE}__{name}")
    return str(value).strip() if value else None


def api_settings_from_connection(connection) -> ApiSettings:
    """The project URL (host) and service key (password) of a ``supabase`` connection, or of the
    old ``supabase_api`` connection (type http or https; ``extra.service_role_key`` also read)."""
    conn_id = connection.conn_id
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


def database_settings_from_connection(connection) -> DatabaseSettings:
    """libpq parameters from the connection's ``database_url`` extra. The error names the field,
    never the URL: it holds the database password."""
    conn_id = connection.conn_id
    url = _extra_field(connection, "database_url")
    if not url:
        raise ConfigurationError(
            f"connection {conn_id} (type supabase) has no database_url: set its extra "
            '{"database_url": "postgresql://postgres.<project-ref>:<password>@'
            'aws-0-<region>.pooler.supabase.com:5432/postgres"} (the session pooler URI from the '
            "dashboard's Connect dialog)"
        )
    settings = DatabaseSettings.from_url(url)
    if settings.port == TRANSACTION_POOLER_PORT and settings.host.endswith(".pooler.supabase.com"):
        raise ConfigurationError(
            f"connection {conn_id}: database_url points at the transaction pooler (port "
            f"{TRANSACTION_POOLER_PORT}), which pg_dump cannot use; use the session pooler URI, "
            "the same host on port 5432"
        )
    return settings


def project_ref_from_url(url: str) -> str | None:
    """``abcd`` from ``https://abcd.supabase.co``; None for any other host (a custom domain, the
    sandbox), where the Management API needs the ref given explicitly (extra ``project_ref``)."""
    host = urlsplit(url).hostname or ""
    ref, _, domain = host.partition(".")
    return ref if domain == "supabase.co" and ref else None


def management_settings_from_connection(connection) -> ManagementSettings | None:
    """The Management API settings, or None when the connection has no management token (the
    token is optional: only the parts of a backup that read the project's configuration need it).
    Extras ``management_api_url`` and ``project_ref`` override the hosted defaults."""
    token = _extra_field(connection, "management_token")
    if not token:
        return None
    project_ref = _extra_field(connection, "project_ref") or project_ref_from_url(
        api_settings_from_connection(connection).url
    )
    api_url = _extra_field(connection, "management_api_url") or DEFAULT_MANAGEMENT_API_URL
    return ManagementSettings(
        api_url=api_url.rstrip("/"), project_ref=project_ref, access_token=token
    )


def secrets_of_connection(connection) -> list[str]:
    """Every secret a ``supabase`` connection holds, so a failure message can be scrubbed of it."""
    found = [connection.password or "", _extra_field(connection, "management_token") or ""]
    url = _extra_field(connection, "database_url")
    if url:
        try:
            found.append(DatabaseSettings.from_url(url).password or "")
        except ConfigurationError:
            pass  # an unreadable URL gives no password to scrub; its error names no secret
    return [secret for secret in found if secret]


class SupabaseHook(BaseHook):
    """One Supabase project from one ``supabase`` connection: the library's settings for its API,
    its database and (optionally) the Management API. It opens nothing itself: the library's
    clients take the settings it returns."""

    conn_name_attr = "supabase_conn_id"
    default_conn_name = "supabase_default"
    conn_type = CONN_TYPE
    hook_name = "Supabase"

    def __init__(self, supabase_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.supabase_conn_id = supabase_conn_id

    def get_conn(self):
        """The Airflow connection itself (there is no client to hand out: see the settings)."""
        return self.get_connection(self.supabase_conn_id)

    def api_settings(self) -> ApiSettings:
        return api_settings_from_connection(self.get_conn())

    def database_settings(self) -> DatabaseSettings:
        return database_settings_from_connection(self.get_conn())

    def management_settings(self) -> ManagementSettings | None:
        return management_settings_from_connection(self.get_conn())
