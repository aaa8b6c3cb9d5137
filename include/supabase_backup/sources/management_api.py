"""The Supabase Management API (``https://api.supabase.com/v1/projects/{ref}/...``): the project's
configuration, its Edge Functions and the names of their secrets.

A personal access token (``sbp_...``) authorises every call; it travels only in the Authorization
header, never in a URL, a log line or an exception. Answers come back as plain JSON, with every value
the API would hand out as a secret removed first (``withheld_fields`` names them): PostgREST's
``jwt_secret``, the Auth providers' client secrets, the SMTP password, the SMS providers' tokens, the
hooks' secrets, every API key's ``api_key`` and every Edge Function secret's ``value`` (the API
sends a digest there; the value itself is not exportable from any endpoint).

The API allows 120 requests a minute per token, project and endpoint and answers HTTP 429 past it
(with ``X-RateLimit-Reset``, the seconds until the window resets; ``Retry-After`` is honoured too
when sent). A 429 waits exactly that long and asks again, up to RETRY_ATTEMPTS tries in all; 5xx
answers and dropped connections are retried with backoff like the Storage calls (``api_client``).

Not wired into the DAG yet: the coverage table and the export task come in a later slice (issue 16).
"""

from __future__ import annotations

import email.utils
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import tenacity

from supabase_backup.errors import (
    ApiError,
    ApiNotFound,
    ApiTransientError,
    ConfigurationError,
    ManagementAccessDenied,
    ManagementRateLimited,
    ManagementTokenRefused,
)
from supabase_backup.sources.api_client import (
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    is_transient,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MANAGEMENT_URL = "https://api.supabase.com"

# Each configuration part the backup reads, and its endpoint under /v1/projects/{ref}.
CONFIGURATION_ENDPOINTS: dict[str, str] = {
    "auth": "/config/auth",
    "postgrest": "/postgrest",
    "storage": "/config/storage",
    "postgres": "/config/database/postgres",
    "pooler": "/config/database/pooler",
    "network_restrictions": "/network-restrictions",
    "ssl_enforcement": "/ssl-enforcement",
    "sso_providers": "/config/auth/sso/providers",
    "custom_hostname": "/custom-hostname",
    "api_keys": "/api-keys",
}

# Fields whose values are credentials, by the names the API gives them: external_*_secret,
# hook_*_secrets, smtp_pass, sms_*_auth_token/_api_key/_access_key/_api_secret, jwt_secret, and
# every API key's api_key. No non-secret field of the spec's schemas ends so (checked by a test).
SECRET_FIELD = re.compile(r"(_secret|_secrets|_pass|_auth_token|_api_key|_access_key|^api_key)$")

# Attempts of one call, whatever failed. A 429 waits for the window to reset: with a minute's window,
# five attempts ride out four resets, enough for a backup that shares its token with another job.
RETRY_ATTEMPTS = 5
# When a 429 names no wait, or an absurd one: the API's window is a minute.
RATE_LIMIT_DEFAULT_WAIT_SECONDS = 60.0
RATE_LIMIT_MAX_WAIT_SECONDS = 120.0
# Transient failures (5xx, dropped connections): backoff like the Storage calls.
TRANSIENT_INITIAL_WAIT_SECONDS = 0.5
TRANSIENT_MAX_WAIT_SECONDS = 20.0

DOWNLOAD_CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class ManagementSettings:
    """Where the Management API is, the personal access token, and the project's ref.

    ``url`` is ``https://api.supabase.com`` for hosted projects; ``token`` a personal access token
    (left out of ``repr``); ``project_ref`` the 20-letter ref in the project's URL.
    """

    url: str
    token: str = field(repr=False)
    project_ref: str

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"the Management API URL must start with http:// or https://, got {self.url!r}"
            )
        if not self.token:
            raise ConfigurationError(
                "the Management API token is empty; set a personal access token (sbp_...) as the "
                "password of the supabase_management connection"
            )
        if not re.fullmatch(r"[a-z]{20}", self.project_ref):
            raise ConfigurationError(
                f"the project ref must be the 20 lowercase letters of the project's URL, got "
                f"{self.project_ref!r}; set it as project_ref in the supabase_management "
                "connection's extra"
            )
        object.__setattr__(self, "url", self.url.rstrip("/"))


@dataclass(frozen=True)
class ConfigurationPart:
    """One configuration endpoint's answer with its secrets removed.

    ``withheld_fields``: the removed fields that held a value (``api_keys[1].api_key``), for the
    coverage table's ``not_exportable`` reason.
    """

    name: str
    body: Any
    withheld_fields: tuple[str, ...]


def without_secrets(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """``value`` with every SECRET_FIELD removed, and the paths of those that held a value."""
    withheld: list[str] = []
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if SECRET_FIELD.search(key):
                if item not in (None, "", [], {}):
                    withheld.append(where)
                continue
            kept[key], inner = without_secrets(item, where)
            withheld.extend(inner)
        return kept, withheld
    if isinstance(value, list):
        items = []
        for index, item in enumerate(value):
            cleaned, inner = without_secrets(item, f"{path}[{index}]")
            items.append(cleaned)
            withheld.extend(inner)
        return items, withheld
    return value, withheld


class RateLimited(Exception):
    """A 429 answer, with the wait the server asked for (None when it named none)."""

    def __init__(self, error: ManagementRateLimited, wait_seconds: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait_seconds = wait_seconds


def rate_limit_wait(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait before asking again, from ``Retry-After`` (seconds or an HTTP date) or
    ``X-RateLimit-Reset`` (seconds until the reset; a Unix time when it is that large); None when
    neither says."""
    current = time.time() if now is None else now
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(retry_after)
            except (TypeError, ValueError):
                moment = None
            if moment is not None:
                return max(0.0, moment.timestamp() - current)
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            seconds = float(reset)
        except ValueError:
            return None
        # Some gateways send the reset as a Unix time: no window lasts 30 years.
        if seconds > 1e9:
            seconds -= current
        return max(0.0, seconds)
    return None


class ManagementClient:
    """Read a project's configuration, Edge Functions and secret names through the Management API.

    One httpx client, thread-safe; use as a context manager. ``transport`` replaces the network
    (tests pass an ``httpx.MockTransport``).
    """

    def __init__(
        self, settings: ManagementSettings, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.settings = settings
        self._client = httpx.Client(
            base_url=f"{settings.url}/v1/projects/{settings.project_ref}",
            headers={"Authorization": f"Bearer {settings.token}", "Accept": "application/json"},
            timeout=httpx.Timeout(
                connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS, write=60.0, pool=60.0
            ),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ManagementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration ---------------------------------------------------------------------------
    def read_configuration(self, name: str) -> ConfigurationPart:
        """One part of CONFIGURATION_ENDPOINTS, its secrets removed."""
        if name not in CONFIGURATION_ENDPOINTS:
            raise ValueError(f"unknown configuration part {name!r}")
        body = self._get_json(CONFIGURATION_ENDPOINTS[name])
        cleaned, withheld = without_secrets(body)
        return ConfigurationPart(name, cleaned, tuple(withheld))

    def read_all_configuration(self) -> dict[str, ConfigurationPart]:
        return {name: self.read_configuration(name) for name in CONFIGURATION_ENDPOINTS}

    # -- functions -------------------------------------------------------------------------------
    def list_functions(self) -> list[dict[str, Any]]:
        functions = self._get_json("/functions")
        return [without_secrets(function)[0] for function in functions]

    def get_function(self, slug: str) -> dict[str, Any]:
        return without_secrets(self._get_json(f"/functions/{_slug(slug)}"))[0]

    def download_function_body(self, slug: str, destination: Path) -> int:
        """Stream the function's deployable bundle to ``destination``; return its size in bytes.

        Written to ``destination.part`` and renamed when whole, so a failed download never leaves a
        short file under the final name; a retry starts the download again.
        """
        route = f"/functions/{_slug(slug)}/body"
        partial = destination.with_name(destination.name + ".part")

        def download() -> int:
            size = 0
            with self._send_streamed(route) as response, open(partial, "wb") as output:
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                    output.write(chunk)
                    size += len(chunk)
            os.replace(partial, destination)
            return size

        try:
            return self._with_retries(f"downloading function {slug!r}", download)
        finally:
            partial.unlink(missing_ok=True)

    # -- secrets ---------------------------------------------------------------------------------
    def list_secret_names(self) -> list[str]:
        """The names of the Edge Functions' secrets; their values are not exportable."""
        return sorted(secret["name"] for secret in self._get_json("/secrets"))

    # -- HTTP ------------------------------------------------------------------------------------
    def _get_json(self, route: str) -> Any:
        def get() -> Any:
            response = self._client.get(route)
            self._raise_for_error(response)
            try:
                return response.json()
            except ValueError:
                # A proxy's or a captive portal's page instead of the API's answer.
                kind = response.headers.get("content-type", "no content type")
                raise ApiError(
                    "GET", response.request.url.path, response.status_code,
                    response.status_code, "NotJson", f"expected JSON, got {kind}",
                ) from None  # fmt: skip

        return self._with_retries(f"reading {route}", get)

    @contextmanager
    def _send_streamed(self, route: str) -> Iterator[httpx.Response]:
        request = self._client.build_request(
            "GET", route, headers={"Accept": "application/octet-stream"}
        )
        response = self._client.send(request, stream=True)
        try:
            if response.status_code >= 400:
                response.read()
                self._raise_for_error(response)
            yield response
        finally:
            response.close()

    def _raise_for_error(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        method = response.request.method
        route = response.request.url.path
        message = _message(response)
        if status == 401:
            raise ManagementTokenRefused(self.settings.url, status)
        if status == 403:
            raise ManagementAccessDenied(self.settings.url, self.settings.project_ref, message)
        if status == 429:
            error = ManagementRateLimited(method, route, RETRY_ATTEMPTS)
            raise RateLimited(error, rate_limit_wait(response.headers))
        if status == 404:
            raise ApiNotFound(method, route, status, status, None, message)
        if status >= 500:
            raise ApiTransientError(method, route, status, status, None, message)
        raise ApiError(method, route, status, status, None, message)

    def _with_retries(self, what: str, function: Callable[[], T]) -> T:
        """Call ``function`` at most RETRY_ATTEMPTS times: after a 429 wait as long as the server
        says, after a transient failure back off exponentially; any other error is raised at once.
        When the last attempt is still rate limited, ManagementRateLimited is raised."""

        def retryable(error: BaseException) -> bool:
            return isinstance(error, RateLimited) or is_transient(error)

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, RateLimited):
                seconds = error.wait_seconds
                if seconds is None or seconds > RATE_LIMIT_MAX_WAIT_SECONDS:
                    seconds = RATE_LIMIT_DEFAULT_WAIT_SECONDS
                return seconds
            return float(
                tenacity.wait_exponential(
                    multiplier=TRANSIENT_INITIAL_WAIT_SECONDS, max=TRANSIENT_MAX_WAIT_SECONDS
                )(state)
            )

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            seconds = state.next_action.sleep if state.next_action else 0.0
            if isinstance(error, RateLimited):
                log.warning(
                    "%s: the Management API's rate limit was reached (attempt %d of %d), "
                    "asking again in %.0f s",
                    what, state.attempt_number, RETRY_ATTEMPTS, seconds,
                )  # fmt: skip
            else:
                log.warning(
                    "%s failed (attempt %d of %d), retrying in %.1f s: %s: %s",
                    what, state.attempt_number, RETRY_ATTEMPTS, seconds,
                    type(error).__name__, error,
                )  # fmt: skip

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(retryable),
            wait=wait,
            stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS),
            sleep=_sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(function)
        except RateLimited as limited:
            raise limited.error from None


def _sleep(seconds: float) -> None:
    # time.sleep looked up at each call, so a test can replace it.
    time.sleep(seconds)


def _slug(slug: str) -> str:
    # The spec's pattern for function slugs; anything else could change the route.
    if not re.fullmatch(r"[A-Za-z0-9_-]+", slug):
        raise ValueError(f"not a function slug: {slug!r}")
    return slug


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return response.text[:200]
