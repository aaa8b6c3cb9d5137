"""``--database-url`` for the commands that connect to Postgres (restore, prune): no password in
it, and a failed connection answered by the error tree (one sentence and its exit code), never a
psycopg traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg

from supabase_backup.errors import ConfigurationError
from supabase_backup.sources.database import DatabaseSettings, connection_failure


def settings_from_argument(url: str) -> DatabaseSettings:
    """The settings of a ``--database-url`` given on the command line, refused when it holds a
    password: argv shows in the process list, to every user of the machine, for the whole run."""
    if urlsplit(url).password is not None:
        raise ConfigurationError(
            "--database-url holds a password, which any user of this machine "
            "can read in the process list: remove it and set PGPASSWORD"
        )
    return DatabaseSettings.from_url(url)


@contextlib.contextmanager
def connection_failures_explained(settings: DatabaseSettings) -> Iterator[None]:
    """A connection that fails or is lost inside the block raises the error tree's account of it
    (a refused login, no server, no such database) instead of psycopg's OperationalError."""
    try:
        yield
    except psycopg.OperationalError as error:
        raise connection_failure(settings, error) from error
