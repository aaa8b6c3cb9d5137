"""The Management API client against the sandbox's stand-in: it reads every configuration part,
lists the functions and secret names, downloads a body byte-exact, keeps every secret value out of
what it returns, and rides out a lowered rate limit by waiting for the reset."""

from __future__ import annotations

import hashlib
import json
import logging

import httpx
import pytest

from supabase_backup.errors import ManagementTokenRefused
from supabase_backup.sources import management_api
from supabase_backup.sources.management_api import (
    CONFIGURATION_ENDPOINTS,
    ManagementClient,
    ManagementSettings,
)


def settings_of(sandbox) -> ManagementSettings:
    # The connection the sandbox exports, read the way a later slice's Airflow adapter will.
    connection = json.loads(sandbox.settings["env"]["AIRFLOW_CONN_SUPABASE_MANAGEMENT"])
    return ManagementSettings(connection["host"], connection["password"],
                              connection["extra"]["project_ref"])  # fmt: skip


@pytest.fixture()
def client(small_sandbox):
    with ManagementClient(settings_of(small_sandbox)) as opened:
        yield opened
    small_sandbox.clear_faults()


def test_reads_every_configuration_part_without_a_secret_value(small_sandbox, client):
    parts = client.read_all_configuration()
    assert set(parts) == set(CONFIGURATION_ENDPOINTS)
    assert parts["auth"].body["site_url"] == "http://localhost:3000"
    assert parts["auth"].body["external_google_enabled"] is True
    assert {"external_google_secret", "smtp_pass"} <= set(parts["auth"].withheld_fields)
    assert "jwt_secret" not in parts["postgrest"].body
    assert parts["postgrest"].withheld_fields == ("jwt_secret",)
    assert parts["pooler"].body[0]["pool_mode"] in ("transaction", "session")
    assert {key["name"] for key in parts["api_keys"].body} >= {"anon", "service_role"}
    assert parts["sso_providers"].body["items"][0]["domains"][0]["domain"] == "example.com"
    everything = json.dumps({name: part.body for name, part in parts.items()})
    settings = small_sandbox.settings
    for secret in (settings["management_canary"], settings["service_key"],
                   settings["service_role_jwt"], settings["jwt_secret"]):  # fmt: skip
        assert secret not in everything


def test_lists_functions_and_downloads_a_body_byte_exact(small_sandbox, client, tmp_path):
    functions = {function["slug"]: function for function in client.list_functions()}
    assert set(functions) >= {"hello-world", "stripe-webhook"}
    assert client.get_function("stripe-webhook")["verify_jwt"] is False
    target = tmp_path / "stripe-webhook.bundle"
    size = client.download_function_body("stripe-webhook", target)
    data = target.read_bytes()
    assert size == len(data) > 0
    assert hashlib.sha256(data).hexdigest() == functions["stripe-webhook"]["ezbr_sha256"]
    stored = (f"{small_sandbox.settings['state_dir']}/management/functions/stripe-webhook.zip")
    with open(stored, "rb") as fh:
        assert fh.read() == data


def test_lists_secret_names_only(small_sandbox, client):
    names = client.list_secret_names()
    assert {"STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "OPENAI_API_KEY"} <= set(names)
    assert small_sandbox.settings["management_canary"] not in json.dumps(names)


def test_survives_a_lowered_rate_limit_by_waiting(small_sandbox, client, caplog):
    # One request per two-second window: the second read falls in the first one's window however
    # busy the machine is, and waits at most two seconds.
    small_sandbox.set_faults(management_rate_limit=1, management_rate_window_seconds=2)
    before = httpx.get(f"{small_sandbox.settings['control_url']}/faults").json()["counters"]
    with caplog.at_level(logging.WARNING, logger=management_api.__name__):
        first = client.read_configuration("ssl_enforcement")
        second = client.read_configuration("ssl_enforcement")  # over the limit: 429, wait, again
    assert first.body == second.body
    after = httpx.get(f"{small_sandbox.settings['control_url']}/faults").json()["counters"]
    limited = after.get("management_rate_limited", 0) - before.get("management_rate_limited", 0)
    answered = after.get("management_requests", 0) - before.get("management_requests", 0)
    assert limited >= 1  # the stand-in refused at least once ...
    assert answered == 2  # ... and both reads got their answer after asking again
    assert "rate limit was reached" in caplog.text


def test_a_wrong_token_is_refused_with_the_fix(small_sandbox):
    good = settings_of(small_sandbox)
    wrong = ManagementSettings(good.url, "sbp_" + "0" * 40, good.project_ref)
    with ManagementClient(wrong) as client, pytest.raises(ManagementTokenRefused) as raised:
        client.list_functions()
    assert "supabase_management" in str(raised.value)
    assert "sbp_" + "0" * 40 not in str(raised.value)
