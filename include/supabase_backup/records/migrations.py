"""TODO"""

from __future__ import annotations

import psycopg

from supabase_backup.errors import MigrationMissing


def require_table(connection: psycopg.Connection, table: str) -> None:
    """Raise MigrationMissing, naming the migration file, when one of our tables is not there."""
    row = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if not (row and row[0]):
        raise MigrationMissing(table)
