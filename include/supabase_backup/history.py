"""``backup_history``: one row per DAG run, keyed by run id so retries update rather than duplicate.

Status moves ``running → success | failed | skipped``. A ``success`` row is written only by the
run's finish step, after ``verify_upload`` read the archive back; a failed run always ends with a
``failed`` row holding the first reason a person can act on.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import psycopg
from psycopg.rows import dict_row

from supabase_backup.errors import MigrationMissing

HISTORY_TABLE = "public.backup_history"
MAX_ERROR_LENGTH = 4000

SUCCESS_COLUMNS = (
    "s3_bucket",
    "s3_key",
    "size_bytes",
    "sha256",
    "database_bytes",
    "auth_users",
    "storage_buckets",
    "storage_objects",
    "storage_bytes",
    "objects_created_after_snapshot",
    "objects_changed_after_snapshot",
    "objects_deleted_after_snapshot",
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _require_table(connection: psycopg.Connection) -> None:
    row = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (HISTORY_TABLE,)).fetchone()
    if not row[0]:
        raise MigrationMissing(HISTORY_TABLE)


def record_running(
    connection: psycopg.Connection, run_id: str, trigger: str, dag_id: str = "supabase_backup"
) -> None:
    """Start (or restart, on a cleared run) the row for ``run_id``."""
    _require_table(connection)
    connection.execute(
        """
        INSERT INTO public.backup_history (run_id, dag_id, status, trigger, started_at, updated_at)
        VALUES (%s, %s, 'running', %s, now(), now())
        ON CONFLICT (run_id) DO UPDATE
        SET status = 'running', trigger = EXCLUDED.trigger, started_at = now(), finished_at = NULL,
            error = NULL, updated_at = now()
        """,
        (run_id, dag_id, trigger),
    )


def record_skipped(
    connection: psycopg.Connection, run_id: str, trigger: str, reason: str,
    dag_id: str = "supabase_backup",
) -> None:
    _require_table(connection)
    connection.execute(
        """
        INSERT INTO public.backup_history
            (run_id, dag_id, status, trigger, started_at, finished_at, error, updated_at)
        VALUES (%s, %s, 'skipped', %s, now(), now(), %s, now())
        ON CONFLICT (run_id) DO UPDATE
        SET status = 'skipped', finished_at = now(), error = EXCLUDED.error, updated_at = now()
        """,
        (run_id, dag_id, trigger, reason),
    )


def record_failed(
    connection: psycopg.Connection, run_id: str, reason: str, *, keep_first_reason: bool = True,
    trigger: str = "manual", dag_id: str = "supabase_backup",
) -> None:
    """Mark the run failed. With ``keep_first_reason`` an earlier, more specific reason stays."""
    _require_table(connection)
    reason = reason[:MAX_ERROR_LENGTH]
    connection.execute(
        f"""
        INSERT INTO public.backup_history
            (run_id, dag_id, status, trigger, started_at, finished_at, error, updated_at)
        VALUES (%s, %s, 'failed', %s, now(), now(), %s, now())
        ON CONFLICT (run_id) DO UPDATE
        SET status = 'failed', finished_at = now(), updated_at = now(),
            error = {"COALESCE(backup_history.error, EXCLUDED.error)" if keep_first_reason
                     else "EXCLUDED.error"}
        """,
        (run_id, dag_id, trigger, reason),
    )


def record_success(
    connection: psycopg.Connection, run_id: str, summary: dict, details: dict | None = None
) -> None:
    """Mark the run successful with its archive location and counts (after verification)."""
    _require_table(connection)
    assignments = ", ".join(f"{column} = %({column})s" for column in SUCCESS_COLUMNS)
    values = {column: summary.get(column) for column in SUCCESS_COLUMNS}
    values["run_id"] = run_id
    values["details"] = json.dumps(details or {})
    updated = connection.execute(
        f"""
        UPDATE public.backup_history
        SET status = 'success', finished_at = now(), updated_at = now(), error = NULL,
            details = %(details)s::jsonb, {assignments}
        WHERE run_id = %(run_id)s
        """,
        values,
    ).rowcount
    if updated != 1:
        raise RuntimeError(f"backup_history has no row for run {run_id}; record_running never ran")


def _select(connection: psycopg.Connection, condition: str, parameters: tuple) -> list[dict]:
    _require_table(connection)
    with connection.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(f"SELECT * FROM public.backup_history {condition}",
                              parameters).fetchall()


def get_by_run_id(connection: psycopg.Connection, run_id: str) -> dict | None:
    rows = _select(connection, "WHERE run_id = %s", (run_id,))
    return rows[0] if rows else None


def get_by_id(connection: psycopg.Connection, history_id: int) -> dict | None:
    rows = _select(connection, "WHERE id = %s", (history_id,))
    return rows[0] if rows else None


def list_history(connection: psycopg.Connection, *, limit: int = 50, offset: int = 0) -> list[dict]:
    """Newest first."""
    return _select(connection, "ORDER BY started_at DESC, id DESC LIMIT %s OFFSET %s",
                   (limit, offset))
