"""Small helpers shared by the sandbox runtime, seeder, bulk buckets and server (never by include/).

The modules above it import this one and never each other upwards: runtime starts the processes
and seeds through seed and bulk, which reach the database through ``connect`` here.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re

import psycopg

NIL_UUID = "00000000-0000-0000-0000-000000000000"


class SandboxError(RuntimeError):
    pass


def connect(s: dict, **kw) -> psycopg.Connection:
    """A connection to the sandbox's database as its superuser, from the settings dict."""
    return psycopg.connect(host=s["pg_host"], port=s["pg_port"], user=s["pg_user"],
                           password=s["pg_password"], dbname=s["pg_dbname"], **kw)

# Storage object keys the real server accepts (supabase/storage: letters, digits, space and
# _ / ! . * ' ( ) & $ = @ ; : + , ? -), and it refuses "." / ".." path segments.
_VALID_KEY = re.compile(r"^[A-Za-z0-9_/!.*'() &$=@;:+,?\-]*$")
_VALID_BUCKET = re.compile(r"^[A-Za-z0-9_!.*'() &$=@;:+,?\-]*$")


def is_valid_key(key: str) -> bool:
    if not key or not _VALID_KEY.match(key):
        return False
    if "\0" in key:
        return False
    segments = [s for s in re.split(r"[\\/]+", key) if s]
    return not any(s in (".", "..") for s in segments)


def is_valid_bucket_name(name: str) -> bool:
    return 0 < len(name) < 101 and bool(_VALID_BUCKET.match(name))


def storage_ts(value: dt.datetime | None) -> str | None:
    """Timestamps as the Node storage server renders Dates: 2024-05-01T12:34:56.789Z."""
    if value is None:
        return None
    value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def gotrue_ts(value: dt.datetime | None) -> str | None:
    """Timestamps as Go renders time.Time (RFC 3339 with trimmed fractional seconds)."""
    if value is None:
        return None
    value = value.astimezone(dt.timezone.utc)
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        base += "." + f"{value.microsecond:06d}".rstrip("0")
    return base + "Z"


def http_date(value: dt.datetime) -> str:
    value = value.astimezone(dt.timezone.utc)
    return value.strftime("%a, %d %b %Y %H:%M:%S GMT")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(secret: str, claims: dict) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(sig)}"


def storage_metadata(md5_hex: str, size: int, mimetype: str, cache_control: str,
                     last_modified: dt.datetime) -> dict:
    """storage.objects.metadata as the real server writes it."""
    return {
        "eTag": f'"{md5_hex}"',
        "size": size,
        "mimetype": mimetype,
        "cacheControl": cache_control,
        "lastModified": storage_ts(last_modified),
        "contentLength": size,
        "httpStatusCode": 200,
    }
