"""The enabled switch: ``system_settings_kv`` key ``backup_enabled`` in the Supabase database."""

from __future__ import annotations

import json

import psycopg

from supabase_backup.errors import ConfigurationError
from supabase_backup.records.migrations import require_table

BACKUP_ENABLED_KEY = "backup_enabled"
SETTINGS_TABLE = "public.system_settings_kv"


def read_backup_enabled(connection: psycopg.Connection) -> bool:
    """True unless the setting says otherwise; a missing row counts as enabled (the default)."""
    require_table(connection, SETTINGS_TABLE)
    row = connection.execute(
        "SELECT value FROM public.system_settings_kv WHERE key = %s", (BACKUP_ENABLED_KEY,)
    ).fetchone()
    if row is None:
        return True
    value = row[0]
    if isinstance(value, str):  # a JSON string such as "false" written by hand
        value = value.strip().lower()
        if value in ("true", "false"):
            return value == "true"
    if isinstance(value, bool):
        return value
    raise ConfigurationError(
        f"system_settings_kv.backup_enabled holds {json.dumps(value)}; set it to true or false"
    )


def write_backup_enabled(connection: psycopg.Connection, enabled: bool, updated_by: str) -> None:
    require_table(connection, SETTINGS_TABLE)
    connection.execute(
        """
        INSERT INTO public.system_settings_kv (key, value, updated_at, updated_by)
        VALUES (%s, %s::jsonb, now(), %s)
        ON CONFLICT (key) DO UPDATE
        SET value = EXCLUDED.value, updated_at = now(), updated_by = EXCLUDED.updated_by
        """,
        (BACKUP_ENABLED_KEY, json.dumps(bool(enabled)), updated_by),
    )
