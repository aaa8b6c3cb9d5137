"""Small helpers for the queries the product runs on the Supabase database (psycopg 3)."""

from __future__ import annotations

from typing import Any


def scalar(connection: Any, query: Any, parameters: Any = None) -> Any:
    """The first column of the one row ``query`` returns (count(*), to_regclass, SHOW …): such a
    query always returns a row, so no row at all is a broken connection, raised as such."""
    row = connection.execute(query, parameters).fetchone()
    if row is None:
        raise RuntimeError(f"the query returned no row: {query}")
    return row[0]
