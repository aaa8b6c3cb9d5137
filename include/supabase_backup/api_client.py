"""The HTTP side of the Supabase Storage and Auth admin APIs: one client, one error decoder, one retry policy.

Both exporters (storage.py, auth_users.py) talk to the project URL through ``open_client``. Errors are
decoded here once, because Supabase Storage hides the real status in the body: most failures come back
as HTTP 400 with ``{"statusCode": "404", "code": "NoSuchKey", ...}``, unknown routes are a real 404, and
GoTrue answers ``{"code": 401, "error_code": ..., "msg": ...}``. Retries are decided on the decoded
code, not only on the HTTP status (SPEC §6).

The service key travels only in request headers; it never appears in a URL, a log line or an exception.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import httpx
import tenacity

from supabase_backup.errors import (
    ApiError,
    ApiFeatureNotEnabled,
    ApiNotFound,
    ApiTransientError,
    ApiUnauthorized,
    ConfigurationError,
)

log = logging.getLogger(__name__)

# httpx logs every request at INFO: one line per object would bury the progress lines of a 100k-object
# bucket in the task log. Quieted only where nobody configured the httpx logger explicitly.
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)

T = TypeVar("T")

# Retry policy. Module constants rather than arguments so one place sets it for every call, and tests
# can shrink the waits. Five attempts with exponential backoff (0.5 s, 1 s, 2 s, 4 s, plus up to 1 s of
# jitter each) ride out a gateway restart or a burst of 503s without holding a task for minutes.
RETRY_ATTEMPTS = 5
RETRY_INITIAL_WAIT_SECONDS = 0.5
RETRY_MAX_WAIT_SECONDS = 20.0
RETRY_JITTER_SECONDS = 1.0

# Storage error codes that describe a passing condition on the server, not a problem with the request.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "InternalError",
        "SlowDown",
        "DatabaseTimeout",
        "LockTimeout",
        "ResourceLocked",
        "ServiceUnavailable",
        "GatewayTimeout",
        "RequestTimeout",
        "over_request_rate_limit",
        "request_timeout",
    }
)
NOT_FOUND_ERROR_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchUpload", "not_found", "user_not_found"})
UNAUTHORIZED_ERROR_CODES = frozenset({"InvalidJWT", "no_authorization", "bad_jwt", "not_admin"})
FEATURE_NOT_ENABLED_CODE = "FeatureNotEnabled"


@dataclass(frozen=True)
class ApiSettings:
    """Where the Supabase project is and the service key to use.

    ``url`` is the project URL (``https://xyz.supabase.co``, ``http://127.0.0.1:54321``); the Storage
    and Auth routes live under ``/storage/v1`` and ``/auth/v1`` on it. ``key`` is a service_role JWT or
    an ``sb_secret_`` key; it is left out of ``repr`` so it never reaches a log or a traceback.
    """

    url: str
    key: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigurationError(f"the Supabase URL must start with http:// or https://, got {self.url!r}")
        if not self.key:
            raise ConfigurationError("the Supabase service key is empty; set it as the password of the supabase_api connection")
        # Routes are joined as url + "/storage/v1/...", so the URL keeps no trailing slash.
        object.__setattr__(self, "url", self.url.rstrip("/"))


def open_client(
    settings: ApiSettings,
    *,
    max_connections: int = 16,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An httpx.Client for the project: auth headers, timeouts and a pool sized for ``max_connections``.

    One client is shared by all download threads (httpx.Client is thread-safe); its pool must hold at
    least as many connections as there are threads, or threads queue for a connection. ``transport``
    replaces the network (tests pass an ``httpx.MockTransport``).
    """
    return httpx.Client(
        base_url=settings.url,
        headers={"apikey": settings.key, "Authorization": f"Bearer {settings.key}"},
        # read is the gap between two chunks, not the whole body: a 5 GB object streams for as long as it
        # needs, but a server that goes silent for a minute is treated as a dropped connection and retried.
        timeout=httpx.Timeout(connect=15.0, read=60.0, write=60.0, pool=120.0),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        transport=transport,
        follow_redirects=False,
    )


def _service_name(request: httpx.Request) -> str:
    path = request.url.path
    service = "Supabase Auth" if path.startswith("/auth/") or "/auth/v1/" in path else "Supabase Storage"
    return f"{service} at {request.url.scheme}://{request.url.netloc.decode('ascii')}"


def _body_fields(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def decode_error(response: httpx.Response) -> ApiError | ApiUnauthorized:
    """The exception that describes an error response (status >= 400), from errors.py.

    The effective status is the body's ``statusCode`` when Storage wraps it in an HTTP 400, else the HTTP
    status. 401/403 → ApiUnauthorized; not found (NoSuchKey, NoSuchBucket, a real 404) → ApiNotFound;
    FeatureNotEnabled → ApiFeatureNotEnabled; 5xx, 429 and passing codes (InternalError, SlowDown,
    DatabaseTimeout...) → ApiTransientError; anything else → ApiError. A streamed response must have been
    read (``response.read()``) first.
    """
    body = _body_fields(response)
    request = response.request
    path = request.url.raw_path.decode("ascii").split("?", 1)[0]

    # Storage: {"statusCode": "404", "code": "NoSuchKey", "error": "not_found", "message": ...}
    # GoTrue:  {"code": 401, "error_code": "no_authorization", "msg": ...}
    raw_code = body.get("error_code") or body.get("code") or body.get("error")
    code = None if raw_code is None or isinstance(raw_code, int) else str(raw_code)
    body_status = body.get("statusCode")
    if body_status is None and isinstance(body.get("code"), int):
        body_status = body["code"]
    status = response.status_code
    if status == 400 and body_status is not None:
        try:
            status = int(body_status)
        except (TypeError, ValueError):
            pass
    message = body.get("message") or body.get("msg") or body.get("error_description") or body.get("error")
    if not message:
        message = response.reason_phrase or response.text[:200]
    shown_status = str(response.status_code) if status == response.status_code else f"{response.status_code}, body {status}"
    args = (request.method, path, shown_status, code or "-", message)

    error: ApiError | ApiUnauthorized
    if status in (401, 403) or code in UNAUTHORIZED_ERROR_CODES:
        error = ApiUnauthorized(_service_name(request), status)
    elif code == FEATURE_NOT_ENABLED_CODE:
        error = ApiFeatureNotEnabled(*args)
    elif status == 404 or code in NOT_FOUND_ERROR_CODES:
        error = ApiNotFound(*args)
    elif status >= 500 or status == 429 or code in TRANSIENT_ERROR_CODES:
        error = ApiTransientError(*args)
    else:
        error = ApiError(*args)
    # Kept on the exception so callers can branch on them (a missing route vs a missing bucket).
    error.status = status
    error.code = code
    return error


def raise_for_error(response: httpx.Response) -> httpx.Response:
    """Return the response if it succeeded, else raise ``decode_error(response)``. Reads a streamed error body."""
    if response.status_code < 400:
        return response
    response.read()
    raise decode_error(response)


def is_transient(error: BaseException) -> bool:
    """True for failures worth retrying: 5xx/429 and passing body codes, dropped or refused connections,
    timeouts, and bodies shorter than their Content-Length. Never for other 4xx."""
    if isinstance(error, ApiTransientError):
        return True
    # RemoteProtocolError is what h11 raises when the peer closes mid-body; LocalProtocolError and
    # UnsupportedProtocol are our own mistakes and would fail the same way again.
    return isinstance(error, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError))


def _log_retry(what: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s failed (attempt %d of %d), retrying in %.1f s: %s: %s",
            what,
            state.attempt_number,
            RETRY_ATTEMPTS,
            wait,
            type(error).__name__,
            error,
        )

    return before_sleep


def call_with_retries(what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``function(*args, **kwargs)``, retrying transient failures (``is_transient``) with exponential
    backoff and jitter, at most RETRY_ATTEMPTS times; the last failure is raised as it was. ``what``
    names the operation in the retry log lines ("listing bucket 'avatars'")."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential_jitter(
            multiplier=RETRY_INITIAL_WAIT_SECONDS, max=RETRY_MAX_WAIT_SECONDS, jitter=RETRY_JITTER_SECONDS
        ),
        stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS),
        before_sleep=_log_retry(what),
        reraise=True,
    )
    return retrying(function, *args, **kwargs)


def request_json(client: httpx.Client, method: str, path: str, *, what: str, **kwargs: Any) -> httpx.Response:
    """Send one small request (listing, paging) with retries; return the successful, fully read response.

    Use ``response.json()`` for the body and ``response.headers`` for paging headers (X-Total-Count).
    Raises the decoded error from errors.py when the server refuses, after retries when it is transient.
    """

    def send() -> httpx.Response:
        return raise_for_error(client.request(method, path, **kwargs))

    return call_with_retries(what, send)
