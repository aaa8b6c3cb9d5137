"""management_api: settings, secrets removed from every answer, errors translated, and 429 honoured
(Retry-After, X-RateLimit-Reset) with bounded retries. The network is an httpx.MockTransport; waits
are recorded by a replaced sleep, never timed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from supabase_backup.errors import (
    ApiError,
    ApiNotFound,
    ApiTransientError,
    ConfigurationError,
    ManagementAccessDenied,
    ManagementRateLimited,
    ManagementTokenRefused,
)
from supabase_backup.sources import management_api
from supabase_backup.sources.management_api import (
    CONFIGURATION_ENDPOINTS,
    SECRET_FIELD,
    ManagementClient,
    ManagementSettings,
    rate_limit_wait,
    without_secrets,
)

TOKEN = "sbp_0123456789abcdef0123456789abcdef01234567"
REF = "abcdefghijklmnopqrst"
SPEC = json.loads(
    (Path(__file__).parents[2] / "sandbox" / "spec" / "management_api_v1.json").read_text()
)


@pytest.fixture()
def sleeps(monkeypatch):
    waited: list[float] = []
    monkeypatch.setattr(management_api.time, "sleep", waited.append)
    return waited


def client_for(handler) -> ManagementClient:
    settings = ManagementSettings("https://api.example.test/", TOKEN, REF)
    return ManagementClient(settings, transport=httpx.MockTransport(handler))


def test_settings_check_url_token_and_ref_and_hide_the_token():
    settings = ManagementSettings("https://api.supabase.com/", TOKEN, REF)
    assert settings.url == "https://api.supabase.com"
    assert TOKEN not in repr(settings)
    with pytest.raises(ConfigurationError, match="supabase_management"):
        ManagementSettings("https://api.supabase.com", "", REF)
    with pytest.raises(ConfigurationError, match="20 lowercase letters"):
        ManagementSettings("https://api.supabase.com", TOKEN, "not-a-ref")
    with pytest.raises(ConfigurationError, match="http"):
        ManagementSettings("api.supabase.com", TOKEN, REF)


def test_requests_carry_the_bearer_token_under_the_projects_path():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"currentConfig": {"database": True}, "appliedSuccessfully": True})

    with client_for(handler) as client:
        part = client.read_configuration("ssl_enforcement")
    assert part.body == {"currentConfig": {"database": True}, "appliedSuccessfully": True}
    assert seen[0].url == f"https://api.example.test/v1/projects/{REF}/ssl-enforcement"
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(seen[0].url)


def test_secret_fields_are_removed_and_named():
    body = {
        "site_url": "https://app.example.com",
        "external_google_secret": "gsecret",
        "external_github_secret": None,
        "smtp_pass": "smtp-password",
        "sms_twilio_auth_token": "tw",
        "hook_send_email_secrets": "v1,whsec_x",
        "password_min_length": 8,
        "refresh_token_rotation_enabled": True,
        "hook_custom_access_token_enabled": False,
    }
    cleaned, withheld = without_secrets(body)
    assert cleaned == {
        "site_url": "https://app.example.com",
        "password_min_length": 8,
        "refresh_token_rotation_enabled": True,
        "hook_custom_access_token_enabled": False,
    }
    assert withheld == ["external_google_secret", "smtp_pass", "sms_twilio_auth_token",
                        "hook_send_email_secrets"]  # fmt: skip
    keys, withheld_keys = without_secrets([{"name": "service_role", "api_key": "eyJ..."}])
    assert keys == [{"name": "service_role"}] and withheld_keys == ["[0].api_key"]


def test_the_secret_rule_matches_the_specs_secret_fields_and_nothing_else():
    """Every property of the configuration schemas the rule removes, read from the spec: a new
    secret field in the spec, or a setting the rule would wrongly drop, shows up here."""
    schemas = SPEC["components"]["schemas"]
    names = set()
    for schema in ("AuthConfigResponse", "PostgrestConfigWithJWTSecretResponse",
                   "StorageConfigResponse", "PostgresConfigResponse", "SupavisorConfigResponse",
                   "ApiKeyResponse", "SecretResponse", "FunctionResponse"):  # fmt: skip
        names |= set(schemas[schema]["properties"])
    removed = {name for name in names if SECRET_FIELD.search(name)}
    assert {"jwt_secret", "smtp_pass", "api_key", "external_google_secret",
            "hook_send_email_secrets", "sms_twilio_auth_token", "sms_vonage_api_key",
            "sms_vonage_api_secret", "sms_messagebird_access_key", "security_captcha_secret",
            "nimbus_oauth_client_secret"} <= removed  # fmt: skip
    looks_secret = re.compile(r"secret|_pass$|auth_token$|api_key|access_key")
    # secret_jwt_template holds the claims a secret key's JWT carries ({"role": ...}), not a key.
    assert {n for n in names if looks_secret.search(n)} - {"secret_jwt_template"} == removed
    assert "value" not in removed  # secret values are dropped by list_secret_names instead


def test_secret_names_only():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"name": "B_KEY", "value": "digest-b"},
                                         {"name": "A_KEY", "value": "digest-a"}])  # fmt: skip

    with client_for(handler) as client:
        assert client.list_secret_names() == ["A_KEY", "B_KEY"]


def test_every_configuration_endpoint_is_in_the_spec():
    for route in CONFIGURATION_ENDPOINTS.values():
        assert "get" in SPEC["paths"][f"/v1/projects/{{ref}}{route}"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "Thu, 01 Jan 2026 00:00:30 GMT"}, 30.0),
        ({"X-RateLimit-Reset": "42"}, 42.0),
        ({"X-RateLimit-Reset": "1767225615"}, 15.0),  # a Unix time: 15 s after "now"
        ({"Retry-After": "3", "X-RateLimit-Reset": "60"}, 3.0),
        ({}, None),
        ({"X-RateLimit-Reset": "soon"}, None),
    ],
)
def test_rate_limit_wait_reads_retry_after_and_the_reset(headers, expected):
    now = 1767225600.0  # 2026-01-01T00:00:00Z
    assert rate_limit_wait(httpx.Headers(headers), now=now) == expected


def test_a_429_waits_as_told_and_asks_again(sleeps):
    answers = iter([
        httpx.Response(429, headers={"X-RateLimit-Limit": "120", "X-RateLimit-Remaining": "0",
                                     "X-RateLimit-Reset": "9"}, json={"message": "Too Many Requests"}),
        httpx.Response(429, headers={"Retry-After": "2"}, json={"message": "Too Many Requests"}),
        httpx.Response(200, json={"max_connections": 60}),
    ])  # fmt: skip
    requests = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        return next(answers)

    with client_for(handler) as client:
        assert client.read_configuration("postgres").body == {"max_connections": 60}
    assert sleeps == [9.0, 2.0]
    assert len(requests) == 3


def test_a_429_without_a_wait_waits_a_window(sleeps):
    answers = iter([httpx.Response(429), httpx.Response(200, json=[])])
    with client_for(lambda request: next(answers)) as client:
        assert client.list_functions() == []
    assert sleeps == [management_api.RATE_LIMIT_DEFAULT_WAIT_SECONDS]


def test_a_429_that_never_ends_is_rate_limited_after_bounded_attempts(sleeps):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(429, headers={"Retry-After": "1"})

    with client_for(handler) as client, pytest.raises(ManagementRateLimited) as raised:
        client.list_secret_names()
    assert len(calls) == management_api.RETRY_ATTEMPTS
    assert len(sleeps) == management_api.RETRY_ATTEMPTS - 1
    assert "give the backup a token of its own" in str(raised.value)
    assert not raised.value.permanent


def test_5xx_is_retried_then_raised(sleeps):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503, json={"message": "upstream unavailable"})

    with client_for(handler) as client, pytest.raises(ApiTransientError, match="upstream unavailable"):
        client.read_configuration("auth")
    assert len(calls) == management_api.RETRY_ATTEMPTS


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (401, ManagementTokenRefused, "personal access token"),
        (403, ManagementAccessDenied, "project_ref"),
        (404, ApiNotFound, "Function not found"),
        (400, ApiError, "Function not found"),
    ],
)
def test_errors_are_translated_without_retries_and_without_the_token(sleeps, status, error, text):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, json={"message": "Function not found"})

    with client_for(handler) as client, pytest.raises(error) as raised:
        client.get_function("hello-world")
    assert len(calls) == 1 and sleeps == []
    assert text in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_the_body_is_streamed_to_the_file_and_a_failed_download_leaves_nothing(sleeps, tmp_path):
    body = bytes(range(256)) * 4096  # 1 MiB, several chunks
    answers = iter([httpx.Response(429, headers={"X-RateLimit-Reset": "1"}),
                    httpx.Response(200, content=body)])  # fmt: skip
    with client_for(lambda request: next(answers)) as client:
        size = client.download_function_body("hello-world", tmp_path / "hello-world.bundle")
    assert size == len(body)
    assert (tmp_path / "hello-world.bundle").read_bytes() == body
    assert sleeps == [1.0]

    with client_for(lambda request: httpx.Response(404, json={"message": "Function not found"})) as client:
        with pytest.raises(ApiNotFound):
            client.download_function_body("gone", tmp_path / "gone.bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello-world.bundle"]


def test_a_slug_that_would_change_the_route_is_refused():
    with client_for(lambda request: httpx.Response(200, json={})) as client:
        with pytest.raises(ValueError):
            client.get_function("../secrets")


def test_an_answer_that_is_not_json_is_an_api_error(sleeps):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>sign in to the proxy</html>",
                              headers={"content-type": "text/html"})  # fmt: skip

    with client_for(handler) as client, pytest.raises(ApiError, match="expected JSON, got text/html"):
        client.read_configuration("auth")
