"""The HTTP side of the Supabase Storage and Auth admin APIs: two clients, one error decoder, one retry policy.

Every JSON call (bucket and object listing, Auth admin paging) goes through the httpx client of
``open_client``: small requests, where httpx's convenience (base URL, JSON, MockTransport in tests)
costs nothing that matters. Object downloads go through the urllib3 pool of ``DownloadPool`` instead:
a bucket of many small objects is one request per object, every exporter here is CPU-bound on its HTTP
client, and urllib3 (the client under botocore and requests) spends well under half of httpx's CPU
per request (bench/README.md). Both send the same headers with the same timeouts, no redirects and no
retries of their own; tenacity in ``call_with_retries`` is the one retry mechanism.

Errors are decoded here once (``decode_error_reply``, whichever client got the reply), because
Supabase Storage hides the real status in the body: most failures come back as HTTP 400 with
``{"statusCode": "404", "code": "NoSuchKey", ...}``, unknown routes are a real 404, and GoTrue answers
``{"code": 401, "error_code": ..., "msg": ...}``. Retries are decided on the decoded code, not only on
the HTTP status (SPEC §6).

The service key travels only in request headers; it never appears in a URL, a log line or an exception.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import httpx
import tenacity
import urllib3
import urllib3.exceptions

from supabase_backup.errors import (
    ApiError,
    ApiFeatureNotEnabled,
    ApiNotFound,
    ApiTransientError,
    ApiUnauthorized,
    ConfigurationError,
)

log = logging.getLogger(__name__)


def _quiet_httpx_request_lines() -> None:
    """httpx logs every request at INFO: one line per listing page would bury the progress lines of
    a big bucket in the task log. Done when a client is opened (never at import: importing a library
    must not change logging), and only where nobody configured the httpx logger explicitly."""
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
NOT_FOUND_ERROR_CODES = frozenset(
    {"NoSuchKey", "NoSuchBucket", "NoSuchUpload", "not_found", "user_not_found"}
)
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
            raise ConfigurationError(
                f"the Supabase URL must start with http:// or https://, got {self.url!r}"
            )
        if not self.key:
            raise ConfigurationError(
                "the Supabase service key is empty; set it as the password of the supabase_api connection"
            )
        # Routes are joined as url + "/storage/v1/...", so the URL keeps no trailing slash.
        object.__setattr__(self, "url", self.url.rstrip("/"))


# Timeouts of both clients. read is the gap between two chunks, not the whole body: a 5 GB object streams
# for as long as it needs, but a server that goes silent for a minute is treated as a dropped connection
# and retried. Module constants so tests can shrink them.
CONNECT_TIMEOUT_SECONDS = 15.0
READ_TIMEOUT_SECONDS = 60.0


def _auth_headers(settings: ApiSettings) -> dict[str, str]:
    # The hosted gateway checks apikey; the Storage server itself reads only the Bearer token (SPEC §6).
    return {"apikey": settings.key, "Authorization": f"Bearer {settings.key}"}


def open_client(
    settings: ApiSettings,
    *,
    max_connections: int = 16,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An httpx.Client for the project's JSON calls: auth headers, timeouts and a pool for ``max_connections``.

    httpx.Client is thread-safe: the bucket export's read-ahead listing thread shares it. Object bytes go
    through ``DownloadPool`` instead (see the module docstring). ``transport`` replaces the network (tests
    pass an ``httpx.MockTransport``).
    """
    _quiet_httpx_request_lines()
    return httpx.Client(
        base_url=settings.url,
        headers=_auth_headers(settings),
        timeout=httpx.Timeout(
            connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS, write=60.0, pool=120.0
        ),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        transport=transport,
        follow_redirects=False,
    )


def service_name(origin: str, path: str) -> str:
    """How errors name the server: ``Supabase Auth at https://x.supabase.co`` or ``Supabase Storage at ...``."""
    service = (
        "Supabase Auth" if path.startswith("/auth/") or "/auth/v1/" in path else "Supabase Storage"
    )
    return f"{service} at {origin}"


def _body_fields(body: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return fields if isinstance(fields, dict) else {}


def decode_error_reply(
    method: str, path: str, status_code: int, reason: str, body: bytes, service: str
) -> ApiError | ApiUnauthorized:
    """The exception that describes an error reply (status >= 400), from errors.py, whichever client got it.

    The one decoder for both HTTP clients: httpx replies go through ``decode_error``, urllib3 download
    replies (``DownloadPool``) call this with their parts. ``path`` is the request path as sent (encoded,
    no query), ``reason`` the reason phrase, ``body`` the whole body, ``service`` from ``service_name``.

    The effective status is the body's ``statusCode`` when Storage wraps it in an HTTP 400, else the HTTP
    status. 401/403 → ApiUnauthorized; not found (NoSuchKey, NoSuchBucket, a real 404) → ApiNotFound;
    FeatureNotEnabled → ApiFeatureNotEnabled; 5xx, 429 and passing codes (InternalError, SlowDown,
    DatabaseTimeout...) → ApiTransientError; anything else → ApiError.
    """
    fields = _body_fields(body)

    # Storage: {"statusCode": "404", "code": "NoSuchKey", "error": "not_found", "message": ...}
    # GoTrue:  {"code": 401, "error_code": "no_authorization", "msg": ...}
    raw_code = fields.get("error_code") or fields.get("code") or fields.get("error")
    code = None if raw_code is None or isinstance(raw_code, int) else str(raw_code)
    body_status = fields.get("statusCode")
    if body_status is None and isinstance(fields.get("code"), int):
        body_status = fields["code"]
    status = status_code
    if status == 400 and body_status is not None:
        try:
            status = int(body_status)
        except (TypeError, ValueError):
            pass
    message = (
        fields.get("message")
        or fields.get("msg")
        or fields.get("error_description")
        or fields.get("error")
    )
    if not message:
        message = reason or body.decode("utf-8", errors="replace")[:200]
    args = (method, path, status_code, status, code, message)

    error: ApiError | ApiUnauthorized
    if status in (401, 403) or code in UNAUTHORIZED_ERROR_CODES:
        error = ApiUnauthorized(service, status)
    elif code == FEATURE_NOT_ENABLED_CODE:
        error = ApiFeatureNotEnabled(*args)
    elif status == 404 or code in NOT_FOUND_ERROR_CODES:
        error = ApiNotFound(*args)
    elif status >= 500 or status == 429 or code in TRANSIENT_ERROR_CODES:
        error = ApiTransientError(*args)
    else:
        error = ApiError(*args)
    return error


def decode_error(response: httpx.Response) -> ApiError | ApiUnauthorized:
    """``decode_error_reply`` for an httpx error response; a streamed response must have been read
    (``response.read()``) first."""
    request = response.request
    path = request.url.raw_path.decode("ascii").split("?", 1)[0]
    origin = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
    return decode_error_reply(
        request.method,
        path,
        response.status_code,
        response.reason_phrase,
        response.content,
        service_name(origin, path),
    )


def raise_for_error(response: httpx.Response) -> httpx.Response:
    """Return the response if it succeeded, else raise ``decode_error(response)``. Reads a streamed error body."""
    if response.status_code < 400:
        return response
    response.read()
    raise decode_error(response)


# What urllib3 raises when the connection, not the server's answer, fails: refused, reset or dropped
# connections and bodies cut short (ProtocolError), connect and read timeouts and DNS failures
# (TimeoutError and its NewConnectionError/NameResolutionError), TLS failures (SSLError) and proxies.
# The same failures httpx reports as TimeoutException/NetworkError/RemoteProtocolError (``is_transient``).
_URLLIB3_TRANSPORT_ERRORS = (
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    urllib3.exceptions.SSLError,
    urllib3.exceptions.ProxyError,
)


def _environment_proxy(url: str) -> str | None:
    """The proxy the environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY) names for ``url``, as the
    httpx client (trust_env) would use it for the JSON calls, so downloads take the same way out."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.netloc):
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    if not proxy.startswith(("http://", "https://")):
        scheme = proxy.split("://", 1)[0]  # the rest may hold the proxy's password
        raise ConfigurationError(
            f"only http:// and https:// proxies are supported for Storage downloads, got {scheme}://"
        )
    return proxy


class DownloadPool:
    """A urllib3 connection pool for object downloads: thread-safe, shared by all download threads.

    Sends the same headers as ``open_client`` plus ``Accept-Encoding: identity`` (the object's bytes as
    stored, and a Content-Length that counts exactly those), with the same timeouts (connect 15 s, read
    60 s between bytes), never follows redirects and never retries (``call_with_retries`` does).
    HTTPS verifies certificates and host names against the same trust store as httpx (certifi, or
    SSL_CERT_FILE/SSL_CERT_DIR): urllib3's own default would be the OS store. Holds up to
    ``max_connections`` keep-alive connections; size it to the number of download threads.
    """

    def __init__(self, settings: ApiSettings, *, max_connections: int = 16) -> None:
        parts = urlsplit(settings.url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.base_path = parts.path  # a project URL with a path prefix, like httpx's base_url
        self._headers = {**_auth_headers(settings), "Accept-Encoding": "identity"}
        options: dict[str, Any] = {
            "maxsize": max_connections,
            "block": False,  # never wait for a connection: the pool is sized to the threads anyway
            "retries": False,
            "timeout": urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS),
        }
        if parts.scheme == "https":
            options["cert_reqs"] = "CERT_REQUIRED"
            options["ssl_context"] = httpx.create_ssl_context()
        proxy = _environment_proxy(settings.url)
        self._manager: urllib3.PoolManager
        # Requests go to the one origin's connection pool with the path alone: through the manager,
        # every request would have its whole URL parsed and its pool looked up again, about 20 µs of CPU
        # per object. Through a proxy the manager decides the request's form (an http:// proxy is sent
        # the absolute URL), so it is asked each time.
        self._origin_pool: urllib3.HTTPConnectionPool | None
        if proxy is None:
            self._manager = urllib3.PoolManager(**options)
            self._origin_pool = self._manager.connection_from_url(self.origin)
        else:
            proxy_url = urllib3.util.parse_url(proxy)
            proxy_headers = (
                urllib3.make_headers(proxy_basic_auth=unquote(proxy_url.auth))
                if proxy_url.auth
                else None
            )
            self._manager = urllib3.ProxyManager(
                proxy_url._replace(auth=None).url, proxy_headers=proxy_headers, **options
            )
            self._origin_pool = None

    @contextmanager
    def get(self, route: str) -> Iterator[urllib3.BaseHTTPResponse]:
        """``GET route`` (a percent-encoded path such as ``storage.object_route`` builds); yield the
        successful response with its body unread, for ``response.stream(...)``.

        An error reply raises the exception ``decode_error_reply`` gives. A transport failure raises
        ApiTransientError: refused, reset or dropped connections, timeouts, TLS failures, and a body that
        ends before its Content-Length (code ``TruncatedBody``; urllib3 enforces the length). On leaving,
        a connection whose body was read to the end goes back to the pool; any other is closed, so an
        error or a cancelled download never leaves unread bytes on a pooled connection.
        """
        path = self.base_path + route
        try:
            if self._origin_pool is not None:
                response = self._origin_pool.urlopen(
                    "GET",
                    path,
                    headers=self._headers,
                    preload_content=False,
                    redirect=False,
                    retries=False,
                )
            else:
                response = self._manager.urlopen(
                    "GET",
                    self.origin + path,
                    headers=self._headers,
                    preload_content=False,
                    redirect=False,
                    retries=False,
                )
        except _URLLIB3_TRANSPORT_ERRORS as error:
            raise ApiTransientError(
                "GET", path, None, None, _transport_code(error), str(error)
            ) from error
        finished = False
        try:
            if 300 <= response.status < 400 or response.status in (204, 205, 206):
                # Not the object's bytes (redirects are not followed): saving this body would store
                # a wrong object under the right name.
                response.drain_conn()
                finished = True
                location = response.headers.get("location", "no Location header")
                raise ApiError(
                    "GET",
                    path,
                    response.status,
                    response.status,
                    None,
                    f"expected the object's bytes, got HTTP {response.status} ({location})",
                )
            if response.status >= 400:
                try:
                    body = response.read()
                except _URLLIB3_TRANSPORT_ERRORS:
                    body = b""
                else:
                    finished = True
                raise decode_error_reply(
                    "GET",
                    path,
                    response.status,
                    response.reason or "",
                    body,
                    service_name(self.origin, path),
                )
            try:
                yield response
            except _URLLIB3_TRANSPORT_ERRORS as error:
                if isinstance(error, urllib3.exceptions.ProtocolError) and _is_incomplete_read(
                    error
                ):
                    expected = response.headers.get("content-length", "?")
                    message = f"the body ended after {response.tell()} of {expected} bytes"
                    raise ApiTransientError(
                        "GET", path, response.status, response.status, "TruncatedBody", message
                    ) from error
                raise ApiTransientError(
                    "GET",
                    path,
                    response.status,
                    response.status,
                    _transport_code(error),
                    str(error),
                ) from error
            finished = True
        finally:
            if not finished:
                response.close()
            response.release_conn()

    def close(self) -> None:
        self._manager.clear()

    def __enter__(self) -> DownloadPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_incomplete_read(error: BaseException) -> bool:
    # urllib3 wraps its IncompleteRead (the body ended before Content-Length) in a ProtocolError.
    return any(
        isinstance(arg, urllib3.exceptions.IncompleteRead) for arg in error.args
    ) or "IncompleteRead" in str(error)


def _transport_code(error: BaseException) -> str:
    # NewConnectionError (refused, unreachable, DNS) is a TimeoutError subclass in urllib3 2, but not a timeout.
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return "ConnectionError"
    if isinstance(error, urllib3.exceptions.TimeoutError):
        return "Timeout"
    if isinstance(error, urllib3.exceptions.SSLError):
        return "TLSError"
    return "ConnectionError"


def is_transient(error: BaseException) -> bool:
    """True for failures worth retrying: 5xx/429 and passing body codes, dropped or refused connections,
    timeouts, and bodies shorter than their Content-Length. Never for other 4xx."""
    if isinstance(error, ApiTransientError):
        return True
    # RemoteProtocolError is what h11 raises when the peer closes mid-body; LocalProtocolError and
    # UnsupportedProtocol are our own mistakes and would fail the same way again.
    return isinstance(
        error, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
    )


def call_with_retries(what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``function(*args, **kwargs)``, retrying transient failures (``is_transient``) with exponential
    backoff and jitter, at most RETRY_ATTEMPTS times; the last failure is raised as it was. ``what``
    names the operation in the retry log lines ("listing bucket 'avatars'").

    The first attempt is a plain call; tenacity takes over only once it failed transiently. This wraps
    every object download, and setting tenacity up for each call cost about 30 µs of CPU, a measurable
    share of what a small object costs (bench/README.md), while almost every call succeeds at once.
    """
    try:
        return function(*args, **kwargs)
    except Exception as error:
        if not is_transient(error) or RETRY_ATTEMPTS <= 1:
            raise
        first_failure: list[BaseException] = [error]

    def attempt() -> T:
        # tenacity's attempt 1 is the call that already failed: it waits and logs as for any attempt.
        if first_failure:
            raise first_failure.pop()
        return function(*args, **kwargs)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential_jitter(
            multiplier=RETRY_INITIAL_WAIT_SECONDS,
            max=RETRY_MAX_WAIT_SECONDS,
            jitter=RETRY_JITTER_SECONDS,
        ),
        stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS),
        sleep=lambda seconds: time.sleep(
            seconds
        ),  # looked up at each call, so a test can replace it
        before_sleep=_log_retry(what),
        reraise=True,
    )
    return retrying(attempt)


def _log_retry(what: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s failed (attempt %d of %d), retrying in %.1f s: %s: %s",
            what, state.attempt_number, RETRY_ATTEMPTS, wait, type(error).__name__, error,
        )  # fmt: skip

    return before_sleep


def request_json(
    client: httpx.Client, method: str, path: str, *, what: str, **kwargs: Any
) -> httpx.Response:
    """Send one small request (listing, paging) with retries; return the successful, fully read response.

    Use ``response.json()`` for the body and ``response.headers`` for paging headers (X-Total-Count).
    Raises the decoded error from errors.py when the server refuses, after retries when it is transient.
    """

    def send() -> httpx.Response:
        return raise_for_error(client.request(method, path, **kwargs))

    return call_with_retries(what, send)
