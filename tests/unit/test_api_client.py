"""api_client: settings, client headers, error decoding per SPEC §6 and the retry policy."""

from __future__ import annotations

import httpx
import pytest

from supabase_backup.sources import api_client
from supabase_backup.sources.api_client import (
    ApiSettings,
    decode_error,
    decode_error_reply,
    is_transient,
    open_client,
    raise_for_error,
    request_json,
)
from supabase_backup.errors import (
    ApiError,
    ApiFeatureNotEnabled,
    ApiNotFound,
    ApiTransientError,
    ApiUnauthorized,
    ConfigurationError,
)

SECRET = "sb_secret_do-not-print-me"



def settings() -> ApiSettings:
    return ApiSettings("http://127.0.0.1:54321/", SECRET)


def response(status: int, json=None, *, method="GET", path="/storage/v1/object/authenticated/b/k", text=None):
    request = httpx.Request(method, f"http://127.0.0.1:54321{path}")
    if json is not None:
        return httpx.Response(status, json=json, request=request)
    return httpx.Response(status, text=text or "", request=request)


def test_settings_hide_the_key_and_drop_the_trailing_slash():
    value = settings()
    assert value.url == "http://127.0.0.1:54321"
    assert SECRET not in repr(value)
    assert SECRET not in str(value)


@pytest.mark.parametrize("url, key", [("127.0.0.1:54321", "k"), ("ftp://x", "k"), ("https://x.supabase.co", "")])
def test_settings_refuse_unusable_values(url, key):
    with pytest.raises(ConfigurationError):
        ApiSettings(url, key)


def test_client_sends_both_auth_headers_to_the_project_url():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    with open_client(settings(), max_connections=4, transport=httpx.MockTransport(handler)) as client:
        client.get("/storage/v1/bucket")
    assert str(seen[0].url) == "http://127.0.0.1:54321/storage/v1/bucket"
    assert seen[0].headers["apikey"] == SECRET
    assert seen[0].headers["authorization"] == f"Bearer {SECRET}"


def test_storage_not_found_hidden_in_a_400_is_not_found():
    error = decode_error(
        response(400, {"statusCode": "404", "error": "not_found", "code": "NoSuchKey", "message": "Object not found"})
    )
    assert isinstance(error, ApiNotFound)
    assert error.status == 404 and error.code == "NoSuchKey"
    assert "Object not found" in str(error) and "NoSuchKey" in str(error)
    assert not is_transient(error)


def test_unknown_route_is_not_found_with_its_own_code():
    error = decode_error(
        response(
            404,
            {"statusCode": 404, "error": "Not Found", "message": "Route POST:/object/list-v2/b not found"},
            method="POST",
            path="/storage/v1/object/list-v2/b",
        )
    )
    assert isinstance(error, ApiNotFound)
    assert error.code != "NoSuchBucket"


def test_feature_not_enabled():
    error = decode_error(
        response(400, {"statusCode": "400", "code": "FeatureNotEnabled", "error": "FeatureNotEnabled", "message": "no"})
    )
    assert isinstance(error, ApiFeatureNotEnabled)
    assert not is_transient(error)


@pytest.mark.parametrize(
    "reply",
    [
        response(400, {"statusCode": "403", "code": "AccessDenied", "error": "Unauthorized", "message": "invalid signature"}),
        response(400, {"statusCode": "400", "code": "InvalidJWT", "error": "Unauthorized", "message": "jwt malformed"}),
        response(401, {"code": 401, "error_code": "no_authorization", "msg": "no JWT"}, path="/auth/v1/admin/users"),
        response(403, {"code": 403, "error_code": "not_admin", "msg": "User not allowed"}, path="/auth/v1/admin/users"),
    ],
)
def test_refused_keys_say_what_to_fix_without_the_key(reply):
    error = decode_error(reply)
    assert isinstance(error, ApiUnauthorized)
    message = str(error)
    assert "supabase_api connection" in message
    assert "127.0.0.1:54321" in message
    assert SECRET not in message
    assert not is_transient(error)


def test_auth_errors_name_the_auth_service():
    error = decode_error(response(401, {"code": 401, "error_code": "bad_jwt", "msg": "x"}, path="/auth/v1/admin/users"))
    assert "Supabase Auth" in str(error)


@pytest.mark.parametrize(
    "reply",
    [
        response(503, text="<html>Service Unavailable</html>"),
        response(502, text=""),
        response(429, {"code": 429, "error_code": "over_request_rate_limit", "msg": "slow down"}),
        response(400, {"statusCode": "500", "code": "InternalError", "error": "internal", "message": "boom"}),
        response(400, {"statusCode": "503", "code": "SlowDown", "error": "x", "message": "slow"}),
        response(400, {"statusCode": "400", "code": "DatabaseTimeout", "error": "x", "message": "timeout"}),
    ],
)
def test_passing_failures_are_transient(reply):
    error = decode_error(reply)
    assert isinstance(error, ApiTransientError)
    assert is_transient(error)


@pytest.mark.parametrize(
    "reply",
    [
        response(400, {"statusCode": "400", "code": "InvalidKey", "error": "x", "message": "Invalid key"}),
        response(422, {"code": 422, "error_code": "validation_failed", "msg": "bad per_page"}),
        response(409, {"statusCode": "409", "code": "KeyAlreadyExists", "error": "x", "message": "exists"}),
    ],
)
def test_other_client_errors_are_plain_api_errors(reply):
    error = decode_error(reply)
    assert type(error) is ApiError
    assert not is_transient(error)


def test_transport_failures_are_transient_but_our_own_mistakes_are_not():
    request = httpx.Request("GET", "http://x/")
    assert is_transient(httpx.ConnectError("refused", request=request))
    assert is_transient(httpx.ReadTimeout("slow", request=request))
    assert is_transient(httpx.RemoteProtocolError("peer closed connection", request=request))
    assert not is_transient(httpx.LocalProtocolError("bad header"))
    assert not is_transient(httpx.UnsupportedProtocol("gopher"))
    assert not is_transient(ValueError("x"))


def test_one_decoder_for_both_clients():
    """urllib3 downloads hand decode_error_reply the parts of their reply; httpx's decode_error gives the same."""
    body = b'{"statusCode":"404","error":"not_found","code":"NoSuchKey","message":"Object not found"}'
    path = "/storage/v1/object/authenticated/b/k"
    parts = decode_error_reply("GET", path, 400, "Bad Request", body, "Supabase Storage at http://127.0.0.1:54321")
    via_httpx = decode_error(response(400, {"statusCode": "404", "error": "not_found", "code": "NoSuchKey",
                                            "message": "Object not found"}, path=path))  # fmt: skip
    assert type(parts) is type(via_httpx) is ApiNotFound
    assert str(parts) == str(via_httpx)
    assert (parts.status, parts.code) == (via_httpx.status, via_httpx.code) == (404, "NoSuchKey")
    html = decode_error_reply("GET", path, 503, "", b"<html>down</html>", "Supabase Storage at x")
    assert isinstance(html, ApiTransientError) and "<html>down</html>" in str(html)


def test_raise_for_error_passes_success_through():
    ok = response(200, {"ok": True})
    assert raise_for_error(ok) is ok
    with pytest.raises(ApiNotFound):
        raise_for_error(response(400, {"statusCode": "404", "code": "NoSuchBucket", "error": "x", "message": "no"}))


class Scripted:
    """A handler answering from a list of replies (status or exception), counting requests."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        status, body = reply
        return httpx.Response(status, json=body)


def run(handler) -> httpx.Response:
    with open_client(settings(), transport=httpx.MockTransport(handler)) as client:
        return request_json(client, "GET", "/storage/v1/bucket", what="Listing buckets")


def test_transient_failures_are_retried_until_success():
    handler = Scripted(
        (503, {"message": "down"}),
        (400, {"statusCode": "500", "code": "InternalError", "error": "x", "message": "boom"}),
        httpx.ConnectError("refused"),
        (200, [{"id": "avatars"}]),
    )
    assert run(handler).json() == [{"id": "avatars"}]
    assert handler.requests == 4


def test_retries_are_bounded_and_the_last_error_is_raised():
    handler = Scripted((503, {"message": "down"}))
    with pytest.raises(ApiTransientError):
        run(handler)
    assert handler.requests == api_client.RETRY_ATTEMPTS


def test_retries_back_off_exponentially_with_jitter_up_to_the_cap(monkeypatch):
    waits = []
    monkeypatch.setattr(api_client.time, "sleep", waits.append)
    monkeypatch.setattr(api_client, "RETRY_ATTEMPTS", 6)
    monkeypatch.setattr(api_client, "RETRY_INITIAL_WAIT_SECONDS", 0.5)
    monkeypatch.setattr(api_client, "RETRY_MAX_WAIT_SECONDS", 5.0)
    monkeypatch.setattr(api_client, "RETRY_JITTER_SECONDS", 0.0)
    with pytest.raises(ApiTransientError):
        run(Scripted((503, {"message": "down"})))
    assert waits == [0.5, 1.0, 2.0, 4.0, 5.0]
    monkeypatch.setattr(api_client, "RETRY_JITTER_SECONDS", 1.0)
    waits.clear()
    with pytest.raises(ApiTransientError):
        run(Scripted((503, {"message": "down"})))
    assert all(low <= wait <= low + 1.0 for low, wait in zip([0.5, 1.0, 2.0, 4.0], waits))
    assert waits[-1] == 5.0


def test_client_errors_are_never_retried():
    handler = Scripted((400, {"statusCode": "400", "code": "InvalidKey", "error": "x", "message": "bad"}))
    with pytest.raises(ApiError):
        run(handler)
    assert handler.requests == 1
    unauthorized = Scripted((400, {"statusCode": "403", "code": "AccessDenied", "error": "x", "message": "no"}))
    with pytest.raises(ApiUnauthorized):
        run(unauthorized)
    assert unauthorized.requests == 1


def test_retry_log_lines_never_hold_the_key(caplog):
    handler = Scripted((503, {"message": "down"}), (200, []))
    with caplog.at_level("WARNING", logger="supabase_backup.sources.api_client"):
        run(handler)
    assert "attempt 1 of" in caplog.text
    assert SECRET not in caplog.text
