"""Fixtures for the sandbox tests: one real sandbox (small) per session of their own, without the
product's migration (they test the stand-in alone, and change its faults, users and buckets)."""

from __future__ import annotations

import httpx
import pytest

import sandbox
from tests.sandbox_fixtures import running_sandbox


@pytest.fixture(scope="session")
def sbx():
    with running_sandbox("sbx-test", backup_tables=False) as started:
        yield started.settings


@pytest.fixture(scope="session")
def api(sbx):
    headers = {"Authorization": f"Bearer {sbx['service_key']}", "apikey": sbx["service_key"]}
    with httpx.Client(base_url=sbx["api_url"], headers=headers, timeout=30) as client:
        yield client


@pytest.fixture()
def faults(sbx):
    """Set faults with faults(**kw); everything is reset afterwards."""
    url = f"{sbx['control_url']}/faults"

    def put(**kw):
        r = httpx.put(url, json=kw)
        assert r.status_code == 200, r.text
        return r.json()

    yield put
    httpx.delete(url)


@pytest.fixture(scope="session")
def db(sbx):
    with sandbox.connect(sbx, autocommit=True) as conn:
        yield conn
