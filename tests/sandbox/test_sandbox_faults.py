"""Fault injection through /_sandbox/faults."""

from __future__ import annotations

import time

import httpx
import pytest


def listing(api):
    return api.post("/storage/v1/object/list/documents", json={"prefix": "logs", "limit": 1})


def test_get_put_delete_faults(sbx, faults):
    url = f"{sbx['control_url']}/faults"
    state = httpx.get(url).json()
    assert state["list_v2_disabled"] is False and state["error_rate"] == 0
    assert faults(latency_ms=5)["latency_ms"] == 5
    bad = httpx.put(url, json={"no_such_fault": 1})
    assert bad.status_code == 422
    bad = httpx.put(url, json={"error_rate": 2})
    assert bad.status_code == 422
    assert httpx.delete(url).json()["latency_ms"] == 0


def test_error_rate_is_seeded_and_deterministic(api, faults):
    def run():
        faults(error_rate=0.5, seed=7)
        return [listing(api).status_code for _ in range(30)]

    a, b = run(), run()
    assert a == b
    assert set(a) >= {200} and set(a) - {200} <= {500, 503}
    faults(error_rate=1.0, error_kinds=["body503"])
    r = listing(api)
    assert r.status_code == 400 and r.json()["statusCode"] == "503"
    faults(error_rate=1.0, error_kinds=["http544"])
    assert listing(api).status_code == 544
    r = api.get("/auth/v1/admin/users")
    assert r.status_code >= 500 and "error_code" in r.json()
    # uploads and info are not subject to error_rate
    assert api.get("/storage/v1/object/info/documents/logs/empty.log").status_code == 200


def test_fail_routes_and_down_switches(api, faults):
    faults(fail_routes=["/object/list-v2/"])
    assert api.post("/storage/v1/object/list-v2/documents", json={}).status_code == 503
    assert listing(api).status_code == 200
    faults(fail_routes=["logs/empty.log"])
    assert api.get("/storage/v1/object/documents/logs/empty.log").status_code == 503
    faults(fail_routes=[], storage_down=True)
    assert api.get("/storage/v1/bucket").status_code == 503
    assert api.get("/auth/v1/admin/users").status_code == 200
    faults(storage_down=False, auth_down=True)
    assert api.get("/auth/v1/admin/users").status_code == 503
    assert api.get("/storage/v1/bucket").status_code == 200


def test_latency_delays_every_api_request(api, faults):
    # The server counts each request it delayed; how long a delay takes is for bench/, not tests.
    before = faults(latency_ms=50)["counters"].get("delayed_requests", 0)
    assert api.get("/storage/v1/bucket").status_code == 200
    assert api.get("/auth/v1/admin/users").status_code == 200
    assert faults()["counters"]["delayed_requests"] == before + 2


def test_truncated_download(api, faults):
    path = "/storage/v1/object/documents/blobs/data.bin"
    faults(truncate_downloads=True)
    with pytest.raises(httpx.RemoteProtocolError):
        api.get(path)
    faults(truncate_downloads=False)
    r = api.get(path)
    assert len(r.content) == 64 * 1024


def wait_for_held(faults, point: str) -> None:
    deadline = time.monotonic() + 30  # a generous bound on a failure, not a timing assertion
    while faults()["held"][point] < 1:
        assert time.monotonic() < deadline, f"no request ever waited at the {point} hold"
        time.sleep(0.01)


def test_a_held_listing_waits_until_released(api, faults):
    import threading

    faults(hold_listing=True)
    replies = []
    request = threading.Thread(target=lambda: replies.append(api.post(
        "/storage/v1/object/list-v2/documents", json={"prefix": "", "limit": 5})))
    request.start()
    wait_for_held(faults, "listing")
    assert replies == []  # still waiting: nothing answered while the hold is on
    faults(hold_listing=False)
    request.join(timeout=30)
    assert replies[0].status_code == 200 and faults()["held"]["listing"] == 0


def test_downloads_after_the_first_n_wait_until_released(api, faults):
    import threading

    path = "/storage/v1/object/documents/blobs/data.bin"
    faults(hold_downloads_after=1)
    assert api.get(path).status_code == 200  # the first one passes
    replies = []
    request = threading.Thread(target=lambda: replies.append(api.get(path)))
    request.start()
    wait_for_held(faults, "download")
    assert replies == []
    faults(hold_downloads_after=0)
    request.join(timeout=30)
    assert replies[0].status_code == 200
