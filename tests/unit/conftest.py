"""Unit-test fixtures shared by the HTTP-side modules."""

import pytest

from supabase_backup.sources import api_client


@pytest.fixture(autouse=True)
def no_retry_waits(monkeypatch):
    """Retries still happen and are counted; only the backoff sleeps are taken out."""
    monkeypatch.setattr(api_client, "RETRY_INITIAL_WAIT_SECONDS", 0)
    monkeypatch.setattr(api_client, "RETRY_JITTER_SECONDS", 0)
