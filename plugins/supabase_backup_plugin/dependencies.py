"""Named dependencies of the routes: who is asking, may they, and the Supabase database.

Permissions are Airflow's own, on the ``supabase_backup`` DAG, asked of the configured auth manager
through ``airflow.api_fastapi.core_api.security``: reading the DAG (GET) or its runs (GET on runs:
runs and history), triggering a run (POST on its runs: also minting a download URL) and editing the
DAG (PUT: the enabled switch). No token is a 401, a token without the permission a 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import psycopg
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends

from supabase_backup.airflow import connections
from supabase_backup.config import DAG_ID
from supabase_backup.errors import BackupError, scrub

CurrentUser = GetUserDep

CanRead = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))
CanReadDag = Depends(requires_access_dag("GET", param_dag_id=DAG_ID))
CanTrigger = Depends(requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=DAG_ID))
CanEditDag = Depends(requires_access_dag("PUT", param_dag_id=DAG_ID))


class ServiceUnavailable(Exception):
    """The Supabase database or S3 cannot be used right now; the message says why and is safe to
    show (no password, no key)."""


def safe_message(error: BaseException) -> str:
    """An error's text with our connections' passwords and keys removed."""
    return scrub(str(error), connections.connection_secrets())


def open_database() -> Iterator[psycopg.Connection]:
    """A connection to the Supabase database from the ``supabase_db`` Airflow connection, one per
    request, in autocommit mode."""
    try:
        settings = connections.database_settings()
    except BackupError as error:
        raise ServiceUnavailable(safe_message(error)) from None
    except Exception as error:  # noqa: BLE001 - an undefined connection: AirflowNotFoundException
        raise ServiceUnavailable(
            f"the Airflow connection supabase_db cannot be read ({type(error).__name__}: "
            f"{safe_message(error)})"
        ) from None
    try:
        connection = settings.connect(autocommit=True)
    except psycopg.Error as error:
        raise ServiceUnavailable(
            f"the Supabase database {settings.describe()} cannot be reached: "
            f"{scrub(str(error), [settings.password or ''])}".strip()
        ) from None
    try:
        yield connection
    finally:
        connection.close()


Database = Annotated[psycopg.Connection, Depends(open_database)]


def read_only_database(connection: Database) -> psycopg.Connection:
    """The request's connection with every transaction read only: a GET route cannot write, not
    even by mistake (Postgres refuses with ``cannot execute ... in a read-only transaction``)."""
    connection.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    return connection


ReadOnlyDatabase = Annotated[psycopg.Connection, Depends(read_only_database)]
