"""alert_state.py against the sandbox's real Postgres: the migration's table, locked down like the
others; the episode's lifecycle; and the row lock that lets only one check decide at a time."""

import subprocess
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from supabase_backup.records import alert_state
from supabase_backup.records.alert_state import StaleEpisode, StaleNotice
from supabase_backup.errors import MigrationMissing
from tests.sandbox_fixtures import MIGRATION

ALERTED = datetime(2026, 11, 27, 10, 0, 5, tzinfo=timezone.utc)


def apply_migration(sandbox, database: str) -> None:
    subprocess.run(["psql", "--quiet", "-v", "ON_ERROR_STOP=1", "-f", str(MIGRATION)],
                   env=sandbox.libpq_environment(database), check=True, capture_output=True)


@pytest.fixture
def database(small_sandbox):
    """A private database (the alert state is one row per database), migrated twice: the migration
    must stay idempotent with the new table in it."""
    name = f"alert_state_{uuid.uuid4().hex[:8]}"
    with small_sandbox.connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    for _ in range(2):
        apply_migration(small_sandbox, name)
    yield name
    with small_sandbox.connect() as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_the_table_is_locked_out_of_the_api_roles(small_sandbox, database):
    with small_sandbox.connect(database) as connection:
        assert connection.execute("SELECT relrowsecurity FROM pg_class WHERE oid = "
                                  "'public.backup_alert_state'::regclass").fetchone()[0] is True
        for role in ("anon", "authenticated"):
            assert connection.execute("SELECT has_table_privilege(%s, 'public.backup_alert_state', "
                                      "'SELECT')", (role,)).fetchone()[0] is False
        assert connection.execute("SELECT has_table_privilege('service_role', "
                                  "'public.backup_alert_state', 'UPDATE')").fetchone()[0] is True


def test_an_episode_opens_is_reminded_of_and_closes(small_sandbox, database):
    with small_sandbox.connect(database) as connection:
        with connection.transaction():
            assert alert_state.lock_stale_episode(connection) is None
            alert_state.record_stale_notice(connection, StaleNotice.ALERT, ALERTED)
        with connection.transaction():
            episode = alert_state.lock_stale_episode(connection)
            # Postgres hands the instants back in the session's time zone: the same instants.
            assert episode == StaleEpisode(alerted_at=ALERTED, last_notified_at=ALERTED)
            alert_state.record_stale_notice(connection, StaleNotice.QUIET, ALERTED)  # nothing
            alert_state.record_stale_notice(connection, StaleNotice.REMINDER,
                                            ALERTED + timedelta(hours=24))
        with connection.transaction():
            assert alert_state.lock_stale_episode(connection) == StaleEpisode(
                alerted_at=ALERTED, last_notified_at=ALERTED + timedelta(hours=24),
                reminders_sent=1)
            alert_state.record_stale_notice(connection, StaleNotice.RECOVERED,
                                            ALERTED + timedelta(hours=30))
        with connection.transaction():
            assert alert_state.lock_stale_episode(connection) is None
        recovered_at, rows = connection.execute(
            "SELECT max(recovered_at), count(*) FROM public.backup_alert_state").fetchone()
        assert recovered_at == ALERTED + timedelta(hours=30) and rows == 1


def test_a_notice_that_could_not_be_sent_is_not_recorded(small_sandbox, database):
    with small_sandbox.connect(database) as connection:
        with pytest.raises(ConnectionError):
            with connection.transaction():
                assert alert_state.lock_stale_episode(connection) is None
                raise ConnectionError("SMTP server unreachable")  # as send_alert would
        with connection.transaction():
            assert alert_state.lock_stale_episode(connection) is None  # the retry alerts again


def test_a_second_check_waits_for_the_first_and_sees_what_it_sent(small_sandbox, database):
    with small_sandbox.connect(database) as first, small_sandbox.connect(database) as second:
        second.execute("SET lock_timeout = '300ms'")
        with first.transaction():
            assert alert_state.lock_stale_episode(first) is None
            # While the first check holds the row (sending its alert), the second cannot decide.
            with pytest.raises(psycopg.errors.LockNotAvailable):
                with second.transaction():
                    alert_state.lock_stale_episode(second)
            alert_state.record_stale_notice(first, StaleNotice.ALERT, ALERTED)
        with second.transaction():
            assert alert_state.lock_stale_episode(second).alerted_at == ALERTED  # so: quiet


def test_outside_a_transaction_it_refuses_and_without_the_migration_it_names_it(small_sandbox):
    with small_sandbox.connect() as connection:
        with pytest.raises(RuntimeError, match="inside connection.transaction"):
            alert_state.lock_stale_episode(connection)
    name = f"unmigrated_{uuid.uuid4().hex[:8]}"
    with small_sandbox.connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with small_sandbox.connect(name) as connection, connection.transaction():
            with pytest.raises(MigrationMissing, match="backup_alert_state.*001_backup_system.sql"):
                alert_state.lock_stale_episode(connection)
    finally:
        with small_sandbox.connect() as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
