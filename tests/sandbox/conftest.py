"""Fixtures for the sandbox tests: one real sandbox (small) per session on a temp state dir."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import httpx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import sandbox  # noqa: E402


def make_state_dir(prefix: str) -> str:
    # under /tmp and world-searchable: the postgres OS user must reach STATE/pg
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o711)
    return path


@pytest.fixture(scope="session")
def sbx():
    state_dir = make_state_dir("sbx-test-")
    try:
        settings = sandbox.up(state_dir, size="small")
        yield settings
    finally:
        sandbox.down(state_dir, purge=True)
        shutil.rmtree(state_dir, ignore_errors=True)


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
