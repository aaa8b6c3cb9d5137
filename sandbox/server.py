"""The Supabase API stand-in: /storage/v1, /auth/v1 and /_sandbox on one port.

Run as ``python -m sandbox.server --state-dir DIR`` (the runtime starts it). It reads
DIR/settings.json, talks to the sandbox Postgres (storage.objects, storage.buckets, auth.users) and
keeps object bytes in DIR/blobs/<object id>.

Written from the wire facts in SPEC section 6 and the public supabase/storage and supabase/auth
sources; it shares no code with include/supabase_backup.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
import os
import re
import sys
import uuid
from typing import Any
from urllib.parse import unquote, urlencode, parse_qsl

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .bulk import BulkSpecs, object_bytes
from .common import (NIL_UUID, gotrue_ts, http_date, is_valid_bucket_name, is_valid_key,
                     storage_metadata, storage_ts)
from .faults import Faults
from .management import ManagementApi

log = logging.getLogger("sandbox.server")

CHUNK = 256 * 1024


# ------------------------------------------------------------------------------------------------
# infrastructure
# ------------------------------------------------------------------------------------------------
class Pool:
    """A tiny asyncio pool of autocommit psycopg connections."""

    def __init__(self, conninfo: str, size: int = 10):
        self.conninfo = conninfo
        self.size = size
        self.idle: asyncio.LifoQueue | None = None
        self.created = 0
        self.sem: asyncio.Semaphore | None = None

    async def _get(self) -> psycopg.AsyncConnection:
        if self.idle is None:
            self.idle = asyncio.LifoQueue()
            self.sem = asyncio.Semaphore(self.size)
        await self.sem.acquire()
        try:
            while not self.idle.empty():
                conn = self.idle.get_nowait()
                if not conn.closed:
                    return conn
            return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True,
                                                         row_factory=dict_row)
        except BaseException:
            self.sem.release()
            raise

    def _put(self, conn: psycopg.AsyncConnection, broken: bool) -> None:
        if broken or conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            asyncio.ensure_future(conn.close())
        else:
            self.idle.put_nowait(conn)
        self.sem.release()

    async def fetch(self, sql: str, params: Any = None) -> list[dict]:
        conn = await self._get()
        broken = False
        try:
            cur = await conn.execute(sql, params)
            return await cur.fetchall() if cur.description else []
        except psycopg.OperationalError:
            broken = True
            raise
        finally:
            self._put(conn, broken)

    async def fetchone(self, sql: str, params: Any = None) -> dict | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def transaction(self, fn):
        conn = await self._get()
        broken = False
        try:
            async with conn.transaction():
                return await fn(conn)
        except psycopg.OperationalError:
            broken = True
            raise
        finally:
            self._put(conn, broken)


class App:
    def __init__(self, settings: dict):
        self.settings = settings
        self.blobs = settings["blobs_dir"]
        self.tmp = os.path.join(settings["state_dir"], "tmp")
        os.makedirs(self.blobs, exist_ok=True)
        os.makedirs(self.tmp, exist_ok=True)
        self.db = Pool(
            f"host={settings['pg_host']} port={settings['pg_port']} dbname={settings['pg_dbname']} "
            f"user={settings['pg_user']} password={settings['pg_password']} "
            f"application_name=sandbox-api"
        )
        settings_path = os.path.join(settings["state_dir"], "settings.json")

        def load_baseline() -> dict:
            with open(settings_path) as fh:
                return json.load(fh).get("faults_baseline") or {}

        self.faults = Faults(os.path.join(settings["state_dir"], "faults.json"),
                             settings.get("faults_baseline") or {}, baseline_loader=load_baseline)
        self.bulk = BulkSpecs(settings["state_dir"])
        self.service_tokens = {settings["service_key"], settings.get("service_role_jwt", "")} - {""}
        self.anon_tokens = {settings["anon_key"], settings.get("anon_jwt", "")} - {""}


APP: App  # set in create_app


# ------------------------------------------------------------------------------------------------
# error bodies
# ------------------------------------------------------------------------------------------------
def storage_error(status: str, code: str, message: str, error: str | None = None,
                  http: int | None = None, head: bool = False) -> Response:
    """Storage error as the real server renders it: HTTP 400 unless the code is 500."""
    if http is None:
        http = 500 if status == "500" else 400
    body = {"statusCode": status, "code": code, "error": error or code, "message": message}
    if head:
        return Response(status_code=http, headers={"content-type": "application/json"})
    return JSONResponse(body, status_code=http)


def no_such_key(head: bool = False) -> Response:
    return storage_error("404", "NoSuchKey", "Object not found", "not_found", head=head)


def no_such_bucket(head: bool = False) -> Response:
    return storage_error("404", "NoSuchBucket", "Bucket not found", "Bucket not found", head=head)


def gotrue_error(http: int, error_code: str, msg: str) -> Response:
    return JSONResponse({"code": http, "error_code": error_code, "msg": msg}, status_code=http,
                        headers={"x-sb-error-code": error_code})


def injected_error(kind: str, area: str) -> Response:
    if area == "auth":
        if kind == "http544":
            return gotrue_error(504, "request_timeout", "Processing this request timed out, please retry after a moment.")
        if kind in ("http503", "body503"):
            return gotrue_error(503, "unexpected_failure", "Service Unavailable (sandbox fault)")
        return gotrue_error(500, "unexpected_failure", "Internal Server Error (sandbox fault)")
    if kind == "http503":
        return storage_error("503", "ServiceUnavailable", "Service Unavailable (sandbox fault)", http=503)
    if kind == "body503":
        return storage_error("503", "S3Error", "ServiceUnavailable", http=400)
    if kind == "http544":
        return storage_error("544", "DatabaseTimeout", "The connection to the database timed out", http=544)
    return storage_error("500", "InternalError", "Internal server error (sandbox fault)", http=500)


# ------------------------------------------------------------------------------------------------
# fault middleware
# ------------------------------------------------------------------------------------------------
_DOWNLOAD_SKIP = ("list", "list-v2", "info", "sign", "upload", "move", "copy")


def classify(method: str, path: str) -> str | None:
    """Which error_rate category a request belongs to (None: not subject to error_rate)."""
    if path.startswith("/storage/v1/"):
        rest = path[len("/storage/v1/"):]
        if method == "GET" and rest.rstrip("/") == "bucket":
            return "listing"
        if rest.startswith("object/"):
            first = rest[len("object/"):].split("/", 1)[0]
            if method == "POST" and first in ("list", "list-v2"):
                return "listing"
            if method in ("GET", "HEAD") and first not in _DOWNLOAD_SKIP:
                return "download"
        return None
    if path.startswith("/auth/v1/") and method == "GET" and path.rstrip("/") == "/auth/v1/admin/users":
        return "auth_page"
    return None


class FaultMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw.decode("latin-1")
        area = "storage" if raw_path.startswith("/storage/v1") else "auth" if raw_path.startswith("/auth/v1") else None
        if area is None:
            return await self.app(scope, receive, send)
        faults = APP.faults
        latency = faults.get("latency_ms")
        if latency:
            await asyncio.sleep(latency / 1000)
            faults.count("delayed_requests")
        resp: Response | None = None
        if area == "storage" and faults.get("storage_down"):
            resp = injected_error("http503", "storage")
        elif area == "auth" and faults.get("auth_down"):
            resp = injected_error("http503", "auth")
        else:
            decoded = unquote(raw_path)
            for needle in faults.get("fail_routes"):
                if needle in raw_path or needle in decoded:
                    resp = injected_error("http503", area)
                    break
        if resp is None and classify(scope["method"], raw_path):
            kind = faults.roll_error()
            if kind:
                resp = injected_error(kind, area)
        if resp is not None:
            faults.count("faulted_requests")
            if scope["method"] == "HEAD":
                resp = Response(status_code=resp.status_code, headers={"content-type": "application/json"})
            return await resp(scope, receive, send)
        return await self.app(scope, receive, send)


# ------------------------------------------------------------------------------------------------
# auth of callers
# ------------------------------------------------------------------------------------------------
def _bearer(request: Request) -> str:
    value = request.headers.get("authorization", "")
    if value[:7].lower() == "bearer ":
        return value[7:].strip()
    return ""


def storage_role(request: Request) -> tuple[str | None, Response | None]:
    """The Storage server reads the Bearer token; the gateway checks apikey when sent."""
    apikey = request.headers.get("apikey")
    if apikey is not None and apikey not in APP.service_tokens | APP.anon_tokens:
        return None, JSONResponse({"statusCode": "401", "code": "InvalidJWT", "error": "Unauthorized",
                                   "message": "Invalid API key"}, status_code=401)
    # Past the gateway, the Storage server (1.11) answers HTTP 400 with the real status in the body.
    token = _bearer(request)
    if not token:
        return None, storage_error("400", "InvalidRequest",
                                   "headers must have required property 'authorization'")
    if token in APP.service_tokens:
        return "service_role", None
    if token in APP.anon_tokens:
        return "anon", None
    message = "Invalid Compact JWS" if token.count(".") != 2 else "signature verification failed"
    return None, storage_error("403", "AccessDenied", message)


def auth_admin_check(request: Request) -> Response | None:
    apikey = request.headers.get("apikey")
    if apikey is not None and apikey not in APP.service_tokens | APP.anon_tokens:
        return gotrue_error(401, "bad_jwt", "Invalid API key")
    token = _bearer(request)
    if not token:
        return gotrue_error(401, "no_authorization", "This endpoint requires a valid Bearer token")
    if token in APP.service_tokens:
        return None
    if token in APP.anon_tokens:
        return gotrue_error(403, "not_admin", "User not allowed")
    return gotrue_error(401, "bad_jwt", "invalid JWT: unable to parse or verify signature, token is malformed")


# ------------------------------------------------------------------------------------------------
# storage
# ------------------------------------------------------------------------------------------------
def raw_segments(request: Request, prefix: str) -> list[str]:
    """Decode the raw (not normalised) request path after ``prefix`` segment by segment."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    raw_path = raw.decode("latin-1")
    rest = raw_path[len(prefix):]
    return [unquote(seg, encoding="utf-8", errors="replace") for seg in rest.split("/")]


def bucket_json(row: dict) -> dict:
    return {
        "id": row["id"], "name": row["name"], "owner": str(row["owner"]) if row["owner"] else "",
        "public": bool(row["public"]), "type": row["type"],
        "file_size_limit": row["file_size_limit"], "allowed_mime_types": row["allowed_mime_types"],
        "created_at": storage_ts(row["created_at"]), "updated_at": storage_ts(row["updated_at"]),
    }


def object_row(row: dict, name: str | None = None, extra: dict | None = None) -> dict:
    out = {
        "name": row["name"] if name is None else name,
        "id": str(row["id"]) if row["id"] is not None else None,
        "updated_at": storage_ts(row["updated_at"]),
        "created_at": storage_ts(row["created_at"]),
        "last_accessed_at": storage_ts(row["last_accessed_at"]),
        "metadata": row["metadata"],
    }
    if extra:
        out.update(extra)
    return out


FOLDER_ROW = {"id": None, "updated_at": None, "created_at": None, "last_accessed_at": None, "metadata": None}


async def find_bucket(bucket_id: str) -> dict | None:
    return await APP.db.fetchone("SELECT * FROM storage.buckets WHERE id = %s", (bucket_id,))


async def visible_bucket(bucket_id: str, role: str) -> dict | None:
    b = await find_bucket(bucket_id)
    if b is None or (role == "anon" and not b["public"]):
        return None
    return b


async def json_body(request: Request) -> tuple[dict | None, Response | None]:
    raw = await request.body()
    if not raw:
        return {}, None
    try:
        body = json.loads(raw)
    except ValueError:
        return None, storage_error("400", "InvalidRequest", "Body is not valid JSON", "Bad Request")
    if not isinstance(body, dict):
        return None, storage_error("400", "InvalidRequest", "body must be object", "Bad Request")
    return body, None


def bad_param(message: str) -> Response:
    return storage_error("400", "InvalidRequest", message, "Bad Request")


def _int_param(body: dict, key: str, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        raise ValueError(f"body/{key} must be >= {minimum}")
    return int(value)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_v1(bucket_id: str, body: dict) -> list[dict] | Response:
    if "prefix" not in body or not isinstance(body.get("prefix"), str):
        return bad_param("body must have required property 'prefix'")
    try:
        limit = _int_param(body, "limit", 1)
        offset = _int_param(body, "offset", 0) or 0
    except ValueError as exc:
        return bad_param(str(exc))
    search = body.get("search") or ""
    if not isinstance(search, str):
        return bad_param("body/search must be string")
    sort_by = body.get("sortBy") or {}
    column = (sort_by.get("column") or "name").lower() if isinstance(sort_by, dict) else "name"
    order = (sort_by.get("order") or "asc").lower() if isinstance(sort_by, dict) else "asc"
    if column not in ("name", "updated_at", "created_at", "last_accessed_at"):
        column = "name"
    desc = order == "desc"
    limit = min(limit or 100, 1500)
    prefix = body["prefix"]
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    full = prefix + search

    if column != "name":
        start = len(prefix.split("/")) if prefix else 1
        levels = len(full.split("/")) if full else 1
        direction = "DESC" if desc else "ASC"
        rows = await APP.db.fetch(
            f"""
            WITH folders AS (
                SELECT array_to_string(path_tokens[%(start)s:%(levels)s], '/') AS folder
                FROM storage.objects
                WHERE name ILIKE %(pat)s AND bucket_id = %(b)s
                  AND array_length(path_tokens, 1) <> %(levels)s
                GROUP BY folder ORDER BY folder {direction})
            (SELECT folder AS name, NULL::uuid AS id, NULL::timestamptz AS updated_at,
                    NULL::timestamptz AS created_at, NULL::timestamptz AS last_accessed_at,
                    NULL::jsonb AS metadata FROM folders)
            UNION ALL
            (SELECT array_to_string(path_tokens[%(start)s:%(levels)s], '/') AS name, id, updated_at,
                    created_at, last_accessed_at, metadata
             FROM storage.objects
             WHERE name ILIKE %(pat)s AND bucket_id = %(b)s AND array_length(path_tokens, 1) = %(levels)s
             ORDER BY {column} {direction})
            LIMIT %(limit)s OFFSET %(offset)s
            """,
            {"start": start, "levels": levels, "pat": _like_escape(full) + "%", "b": bucket_id,
             "limit": limit, "offset": offset},
        )
        return [object_row(r) if r["id"] is not None else {"name": r["name"], **FOLDER_ROW} for r in rows]

    # Name order: the real search() walks lower(name) COLLATE "C" and is case-insensitive, so
    # "Case/" and "case/" collapse into one folder row (named after the first key seen).
    full_lower_row = await APP.db.fetchone("SELECT lower(%s) AS l", (full,))
    pl = full_lower_row["l"]
    # The prefix again as a range of the (bucket_id, lower(name) COLLATE "C") index, so a recursive
    # walk's call per folder reads that folder, not the bucket (a bulk bucket's million rows).
    where, params = "bucket_id = %s AND starts_with(lower(name), %s)", [bucket_id, pl]
    if pl:
        where += ' AND lower(name) COLLATE "C" >= %s'
        params.append(pl)
        if ord(pl[-1]) < 0xD7FF:
            where += ' AND lower(name) COLLATE "C" < %s'
            params.append(pl[:-1] + chr(ord(pl[-1]) + 1))
    if not desc:
        entries = await _list_v1_ascending(where, params, pl, prefix, offset + limit)
        return entries[offset: offset + limit]
    rows = await APP.db.fetch(
        f"""SELECT name, lower(name) AS lname, id, updated_at, created_at, last_accessed_at, metadata
           FROM storage.objects WHERE {where}
           ORDER BY lower(name) COLLATE "C", name COLLATE "C" """,
        params,
    )
    entries: list[dict] = []
    i, n = 0, len(rows)
    while i < n:
        r = rows[i]
        pos = r["lname"].find("/", len(pl))
        if pos >= 0:
            cp_lower = r["lname"][: pos + 1]
            j = i
            while j < n and rows[j]["lname"].startswith(cp_lower):
                j += 1
            first = rows[j - 1]  # descending: the folder row is named after its last key
            fpos = first["lname"].find("/", len(pl))
            folder = first["name"][: fpos + 1].rstrip("/")[len(prefix):]
            entries.append({"name": folder, **FOLDER_ROW})
            i = j
        else:
            entries.append(object_row(r, name=r["name"][len(prefix):]))
            i += 1
    entries.reverse()
    return entries[offset: offset + limit]


async def _list_v1_ascending(where: str, params: list, pl: str, prefix: str, want: int) -> list[dict]:
    """The first ``want`` v1 entries in ascending name order, folders merged case-insensitively.

    Like the delimited list-v2 page: after a folder's first key, the next query starts past the
    whole folder (lower-cased), so a call reads about as many rows as it returns.
    """
    entries: list[dict] = []
    after: tuple[str, str] | None = None  # (lname, name) of the last object taken
    skip_to: str | None = None  # the lower-cased name just past the last folder taken
    batch = 16
    while len(entries) < want:
        sql, args = where, list(params)
        if after is not None:
            sql += ' AND ROW(lower(name) COLLATE "C", name COLLATE "C") > ROW(%s, %s)'
            args += list(after)
        elif skip_to is not None:
            sql += ' AND lower(name) COLLATE "C" >= %s'
            args.append(skip_to)
        rows = await APP.db.fetch(
            f"""SELECT name, lower(name) AS lname, id, updated_at, created_at, last_accessed_at, metadata
               FROM storage.objects WHERE {sql}
               ORDER BY lower(name) COLLATE "C", name COLLATE "C" LIMIT %s""",
            args + [batch],
        )
        for r in rows:
            pos = r["lname"].find("/", len(pl))
            if pos >= 0:
                # named after its first key; '0' follows '/', so the folder's keys all sort below
                entries.append({"name": r["name"][: pos + 1].rstrip("/")[len(prefix):], **FOLDER_ROW})
                after, skip_to, batch = None, r["lname"][:pos] + "0", 16
                break
            entries.append(object_row(r, name=r["name"][len(prefix):]))
            after, skip_to = (r["lname"], r["name"]), None
            if len(entries) >= want:
                break
        else:
            if len(rows) < batch:
                break
            batch = min(batch * 2, 1000)
    return entries


def _encode_cursor(info: dict) -> str:
    parts = []
    for k, v in (("l", info.get("startAfter")), ("o", info.get("sortOrder")),
                 ("c", info.get("sortColumn")), ("a", info.get("sortColumnAfter"))):
        if v:
            parts.append(f"{k}:{v}")
    return base64.b64encode("\n".join(parts).encode()).decode()


def _decode_cursor(token: str) -> dict:
    try:
        text = base64.b64decode(token.encode(), validate=False).decode()
    except Exception as exc:  # noqa: BLE001
        raise ValueError("continuation token") from exc
    result = {"startAfter": "", "sortOrder": "asc"}
    names = {"l": "startAfter", "o": "sortOrder", "c": "sortColumn", "a": "sortColumnAfter"}
    for part in text.split("\n"):
        m = re.match(r"^(\S):(.*)$", part, re.S)
        if not m or m.group(1) not in names:
            raise ValueError("continuation token")
        result[names[m.group(1)]] = m.group(2)
    return result


async def _list_v2_delimited(conds: list[str], params: dict, prefix: str, desc: bool, limit: int) -> list[dict]:
    """One delimited list-v2 page: up to limit + 1 entries, folders collapsed.

    A folder first reaches us as its first key in the listing order; the next query then starts past
    the whole folder (one index seek per folder), so a page reads about as many rows as it returns,
    whatever the folders hold (a bulk bucket's million objects). Batches grow while rows are objects
    and shrink after a folder, whose other rows would be read for nothing.
    """
    direction = "DESC" if desc else "ASC"
    results: list[dict] = []
    bound, inclusive = None, False
    batch = 16
    while len(results) <= limit:
        where = list(conds)
        if bound is not None:
            where.append(f'name COLLATE "C" {"<" if desc else (">=" if inclusive else ">")} %(bound)s')
        rows = await APP.db.fetch(
            f"SELECT id, name, metadata, updated_at, created_at, last_accessed_at FROM storage.objects "
            f'WHERE {" AND ".join(where)} ORDER BY name COLLATE "C" {direction} LIMIT %(batch)s',
            {**params, "bound": bound, "batch": batch})
        for r in rows:
            rest = r["name"][len(prefix):]
            idx = rest.find("/")
            if idx >= 0:
                folder = r["name"][: len(prefix) + idx + 1]
                results.append({"_row": None, "folder": folder})
                # Past the folder: below it when descending; when ascending, from folder[:-1] + "0"
                # ('0' follows '/' in "C" order, so every key of the folder sorts below it).
                bound, inclusive = (folder, False) if desc else (folder[:-1] + "0", True)
                batch = 16
                break
            results.append({"_row": r, "folder": None})
            bound, inclusive = r["name"], False
            if len(results) > limit:
                break
        else:
            if len(rows) < batch:
                break
            batch = min(batch * 2, limit + 1)
    return results


async def list_v2(bucket_id: str, body: dict) -> dict | Response:
    try:
        limit = _int_param(body, "limit", 1)
    except ValueError as exc:
        return bad_param(str(exc))
    limit = min(limit or 1000, 1000)
    prefix = body.get("prefix") or ""
    with_delimiter = bool(body.get("with_delimiter"))
    sort_by = body.get("sortBy") if isinstance(body.get("sortBy"), dict) else {}
    cursor = None
    if body.get("cursor"):
        try:
            cursor = _decode_cursor(str(body["cursor"]))
        except ValueError:
            return storage_error("400", "InvalidParameter", "Invalid Parameter continuation token")
    sort_order = (cursor or {}).get("sortOrder") or sort_by.get("order") or "asc"
    sort_column = (cursor or {}).get("sortColumn") or sort_by.get("column")
    after = (cursor or {}).get("sortColumnAfter")
    start_after = (cursor or {}).get("startAfter") or ""
    desc = sort_order == "desc"
    op = "<" if desc else ">"
    direction = "DESC" if desc else "ASC"
    col = sort_column if sort_column in ("updated_at", "created_at") else None

    conds = ["bucket_id = %(b)s"]
    params: dict[str, Any] = {"b": bucket_id}
    if prefix:
        conds.append("name LIKE %(pat)s")
        params["pat"] = _like_escape(prefix) + "%"
        # the same as a range the name index can seek to (a bulk bucket's folder among a million keys)
        conds.append('name COLLATE "C" >= %(prefix_low)s')
        params["prefix_low"] = prefix
        if ord(prefix[-1]) < 0xD7FF:
            conds.append('name COLLATE "C" < %(prefix_high)s')
            params["prefix_high"] = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    if start_after:
        params["sa"] = start_after
        if col and after and not with_delimiter:
            params["after"] = after
            conds.append(f"ROW(date_trunc('milliseconds', {col}), name COLLATE \"C\") {op} "
                         f"ROW(COALESCE(NULLIF(%(after)s, '')::timestamptz, 'epoch'::timestamptz), %(sa)s)")
        else:
            conds.append(f"name COLLATE \"C\" {op} %(sa)s")
            if with_delimiter and start_after.endswith("/") and not desc:
                # skip the rest of the folder the cursor stopped on
                conds.append("NOT starts_with(name, %(sa)s)")
    order = (f"{col} {direction}, " if col and not with_delimiter else "") + f'name COLLATE "C" {direction}'
    sql = (f"SELECT id, name, metadata, updated_at, created_at, last_accessed_at FROM storage.objects "
           f"WHERE {' AND '.join(conds)} ORDER BY {order}")

    results: list[dict] = []
    if not with_delimiter:
        params["lim"] = limit + 1
        rows = await APP.db.fetch(sql + " LIMIT %(lim)s", params)
        results = [{"_row": r, "folder": None} for r in rows]
    else:
        results = await _list_v2_delimited(conds, params, prefix, desc, limit)

    truncated = len(results) > limit
    page = results[:limit]
    folders, objects = [], []
    for item in page:
        if item["folder"] is not None:
            folders.append({"id": None, "key": item["folder"], "name": item["folder"], "bucket_id": bucket_id})
        else:
            r = item["_row"]
            row = {
                "id": str(r["id"]), "name": r["name"], "metadata": r["metadata"],
                "updated_at": storage_ts(r["updated_at"]), "created_at": storage_ts(r["created_at"]),
                "last_accessed_at": storage_ts(r["last_accessed_at"]),
            }
            if with_delimiter:  # the real server (1.11) adds "key" only to delimited listings
                row["key"] = r["name"]
            objects.append(row)
    out: dict[str, Any] = {"hasNext": truncated, "folders": folders, "objects": objects}
    if truncated:
        last = page[-1]
        last_name = last["folder"] if last["folder"] is not None else last["_row"]["name"]
        info = {"startAfter": last_name, "sortOrder": (cursor or {}).get("sortOrder") or sort_by.get("order"),
                "sortColumn": sort_column}
        if sort_column and sort_column != "name" and last["_row"] is not None and last["_row"].get(sort_column):
            info["sortColumnAfter"] = storage_ts(last["_row"][sort_column])
        out["nextCursor"] = _encode_cursor(info)
        out["nextCursorKey"] = last_name
    return out


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    spec = header[6:].strip()
    try:
        a, b = spec.split("-", 1)
        if a == "":
            n = int(b)
            if n <= 0:
                return "invalid"
            return max(0, size - n), size - 1
        start = int(a)
        end = int(b) if b else size - 1
    except ValueError:
        return None
    if start >= size or start > end:
        return "invalid"
    return start, min(end, size - 1)


def _file_iter(path: str, start: int, length: int, cut_at: int | None):
    remaining = length
    sent = 0
    with open(path, "rb") as fh:
        fh.seek(start)
        while remaining > 0:
            want = min(CHUNK, remaining)
            if cut_at is not None:
                want = min(want, cut_at - sent)
                if want <= 0:
                    raise ConnectionAbortedError("sandbox fault: truncated download")
            data = fh.read(want)
            if not data:
                raise ConnectionAbortedError("blob shorter than its metadata")
            remaining -= len(data)
            sent += len(data)
            yield data


def _cut_iter(data: bytes, cut: int):
    yield data[:cut]
    raise ConnectionAbortedError("sandbox fault: truncated download")


async def get_object(request: Request, bucket_id: str, key: str, role: str, head: bool) -> Response:
    row = await APP.db.fetchone(
        "SELECT o.id, o.name, o.version, o.metadata, o.updated_at, o.created_at, b.public "
        "FROM storage.objects o JOIN storage.buckets b ON b.id = o.bucket_id "
        "WHERE o.bucket_id = %s AND o.name = %s", (bucket_id, key))
    if row is None or (role == "anon" and not row["public"]):
        if await visible_bucket(bucket_id, role) is None:
            return no_such_bucket(head)
        return no_such_key(head)
    path = os.path.join(APP.blobs, str(row["id"]))
    bulk = None
    try:
        size = os.path.getsize(path)
    except OSError:
        # A row of a bulk bucket without a blob file is generated from (seed, key) (sandbox/bulk.py).
        bulk = APP.bulk.get(bucket_id)
        if bulk is None:
            return no_such_key(head)
        size = bulk["size"]
    md = row["metadata"] or {}
    content_type = md.get("mimetype") or "application/octet-stream"
    if content_type.split(";")[0].strip().lower() == "text/html":
        # The real server never serves stored HTML as HTML (stored XSS): the stored type stays in
        # storage.objects.metadata and the listings, the download says text/plain.
        content_type = "text/plain"
    headers = {
        "content-type": content_type,
        "cache-control": md.get("cacheControl") or "no-cache",
        "etag": md.get("eTag") or "",
        "last-modified": http_date(row["updated_at"]),
        "accept-ranges": "bytes",
    }
    if_none = request.headers.get("if-none-match")
    if if_none and md.get("eTag") and if_none == md.get("eTag"):
        return Response(status_code=304, headers={k: v for k, v in headers.items() if k != "content-type"})
    start, length, status = 0, size, 200
    rng = _parse_range(request.headers.get("range"), size)
    if rng == "invalid":
        return Response(status_code=416, headers={"content-range": f"bytes */{size}"})
    if isinstance(rng, tuple):
        start, end = rng
        length = end - start + 1
        status = 206
        headers["content-range"] = f"bytes {start}-{end}/{size}"
    headers["content-length"] = str(length)
    if head:
        return Response(status_code=status, headers=headers)
    APP.faults.count("downloads")
    await hold_at("download")
    cut = length // 2 if APP.faults.roll_truncate() else None
    if bulk is not None:
        data = object_bytes(bulk["seed"], row["name"], size)[start:start + length]
        if cut is None:
            return Response(data, status_code=status, headers=headers)
        return StreamingResponse(_cut_iter(data, cut), status_code=status, headers=headers)
    if cut is None and length <= CHUNK:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read(length)
        if len(data) == length:
            return Response(data, status_code=status, headers=headers)
    return StreamingResponse(_file_iter(path, start, length, cut), status_code=status, headers=headers)


async def object_info(bucket_id: str, key: str, role: str) -> Response:
    bucket = await visible_bucket(bucket_id, role)
    if bucket is None:
        return no_such_bucket()
    row = await APP.db.fetchone(
        "SELECT id, name, version, bucket_id, metadata, user_metadata, updated_at, created_at "
        "FROM storage.objects WHERE bucket_id = %s AND name = %s", (bucket_id, key))
    if row is None:
        return no_such_key()
    md = row["metadata"] or {}
    body = {
        "id": str(row["id"]), "name": row["name"], "version": row["version"], "bucket_id": row["bucket_id"],
        "size": md.get("size"), "content_type": md.get("mimetype"), "cache_control": md.get("cacheControl"),
        "etag": md.get("eTag"), "metadata": row["user_metadata"],
        "last_modified": storage_ts(row["updated_at"]), "created_at": storage_ts(row["created_at"]),
    }
    headers = {"etag": md.get("eTag") or ""}
    if row["updated_at"]:
        headers["last-modified"] = http_date(row["updated_at"])
    return JSONResponse(body, headers=headers)


async def put_object(request: Request, bucket_id: str, key: str, role: str, update: bool) -> Response:
    if role != "service_role":
        return storage_error("403", "AccessDenied", "new row violates row-level security policy", "Unauthorized")
    if not is_valid_key(key):
        return storage_error("400", "InvalidKey", f"Invalid key: {key}")
    bucket = await find_bucket(bucket_id)
    if bucket is None:
        return no_such_bucket()
    upsert = update or request.headers.get("x-upsert", "").lower() == "true"
    mimetype = request.headers.get("content-type") or "application/octet-stream"
    if mimetype.startswith("multipart/form-data"):
        return storage_error("400", "InvalidRequest", "multipart uploads are not supported by the sandbox; send raw bytes")
    cache_control = request.headers.get("cache-control") or "no-cache"
    if cache_control.isdigit():
        cache_control = f"max-age={cache_control}"
    is_placeholder = key.endswith(".emptyFolderPlaceholder")
    limit = 0 if is_placeholder else bucket["file_size_limit"]
    allowed = bucket["allowed_mime_types"]
    if allowed and not is_placeholder and not any(
            mimetype == a or (a.endswith("/*") and mimetype.startswith(a[:-1])) for a in allowed):
        return storage_error("415", "InvalidMimeType", f"mime type {mimetype} is not supported", "invalid_mime_type")
    user_md = None
    if request.headers.get("x-metadata"):
        try:
            user_md = json.loads(base64.b64decode(request.headers["x-metadata"]))
        except Exception:  # noqa: BLE001
            user_md = None

    existing = await APP.db.fetchone("SELECT id FROM storage.objects WHERE bucket_id = %s AND name = %s",
                                     (bucket_id, key))
    if existing is not None and not upsert:
        return storage_error("409", "KeyAlreadyExists", "The resource already exists", "Duplicate")
    if existing is None and update:
        return no_such_key()

    tmp_path = os.path.join(APP.tmp, f"upload-{uuid.uuid4()}")
    md5 = hashlib.md5()
    size = 0
    too_large = False
    with open(tmp_path, "wb") as fh:
        async for chunk in request.stream():
            if not chunk:
                continue
            size += len(chunk)
            if limit is not None and size > limit:
                too_large = True
                continue
            md5.update(chunk)
            fh.write(chunk)
    if too_large:
        os.unlink(tmp_path)
        return storage_error("413", "EntityTooLarge", "The object exceeded the maximum allowed size",
                             "Payload too large")
    now = dt.datetime.now(dt.timezone.utc)
    metadata = storage_metadata(md5.hexdigest(), size, mimetype, cache_control, now)
    version = str(uuid.uuid4())
    object_id = str(existing["id"]) if existing else str(uuid.uuid4())

    async def write(conn):
        if existing:
            await conn.execute(
                "UPDATE storage.objects SET metadata = %s, version = %s, user_metadata = %s, "
                "updated_at = now(), last_accessed_at = now() WHERE id = %s",
                (Jsonb(metadata), version, Jsonb(user_md) if user_md is not None else None, object_id))
        else:
            await conn.execute(
                "INSERT INTO storage.objects (id, bucket_id, name, owner, owner_id, metadata, version, user_metadata) "
                "VALUES (%s, %s, %s, NULL, NULL, %s, %s, %s)",
                (object_id, bucket_id, key, Jsonb(metadata), version,
                 Jsonb(user_md) if user_md is not None else None))
        os.replace(tmp_path, os.path.join(APP.blobs, object_id))

    try:
        await APP.db.transaction(write)
    except psycopg.errors.UniqueViolation:
        os.unlink(tmp_path)
        return storage_error("409", "KeyAlreadyExists", "The resource already exists", "Duplicate")
    return JSONResponse({"Id": object_id, "Key": f"{bucket_id}/{key}"})


async def delete_object(bucket_id: str, key: str, role: str) -> Response:
    if role != "service_role":
        return no_such_key()
    if await find_bucket(bucket_id) is None:
        return no_such_bucket()
    row = await APP.db.fetchone("DELETE FROM storage.objects WHERE bucket_id = %s AND name = %s RETURNING id",
                                (bucket_id, key))
    if row is None:
        return no_such_key()
    try:
        os.unlink(os.path.join(APP.blobs, str(row["id"])))
    except OSError:
        pass
    return JSONResponse({"message": "Successfully deleted"})


async def delete_objects(request: Request, bucket_id: str, role: str) -> Response:
    body, err = await json_body(request)
    if err:
        return err
    prefixes = body.get("prefixes")
    if not isinstance(prefixes, list) or not prefixes or not all(isinstance(p, str) for p in prefixes):
        return bad_param("body must have required property 'prefixes'")
    if role != "service_role":
        return JSONResponse([])
    if await find_bucket(bucket_id) is None:
        return no_such_bucket()
    rows = await APP.db.fetch(
        "DELETE FROM storage.objects WHERE bucket_id = %s AND name = ANY(%s) "
        "RETURNING id, bucket_id, name, owner, owner_id, version, metadata, user_metadata, "
        "created_at, updated_at, last_accessed_at", (bucket_id, prefixes))
    out = []
    for r in rows:
        try:
            os.unlink(os.path.join(APP.blobs, str(r["id"])))
        except OSError:
            pass
        out.append({**object_row(r), "bucket_id": r["bucket_id"], "owner": str(r["owner"]) if r["owner"] else None,
                    "owner_id": r["owner_id"], "version": r["version"], "user_metadata": r["user_metadata"]})
    return JSONResponse(out)


async def storage_dispatch(request: Request) -> Response:
    segs = raw_segments(request, "/storage/v1/")
    method = request.method
    head = method == "HEAD"
    role, err = storage_role(request)
    # public downloads need no token
    if segs[0] == "object" and len(segs) >= 4 and segs[1] == "public" and method in ("GET", "HEAD"):
        bucket = await find_bucket(segs[2])
        if bucket is None or not bucket["public"]:
            return no_such_bucket(head)
        return await get_object(request, segs[2], "/".join(segs[3:]), "service_role", head)
    if err is not None:
        if head:
            return Response(status_code=err.status_code, headers={"content-type": "application/json"})
        return err

    if segs[0] == "bucket":
        if len(segs) == 1 or (len(segs) == 2 and segs[1] == ""):
            if method == "GET":
                rows = await APP.db.fetch("SELECT * FROM storage.buckets ORDER BY name")
                return JSONResponse([bucket_json(r) for r in rows if role == "service_role" or r["public"]])
            if method == "POST":
                return await create_bucket(request, role)
        elif len(segs) == 2 and method == "GET":
            b = await visible_bucket(segs[1], role)
            return JSONResponse(bucket_json(b)) if b else no_such_bucket()
        elif len(segs) == 2 and method == "DELETE":
            return await delete_bucket(segs[1], role)
        return not_found(request)

    if segs[0] != "object" or len(segs) < 2:
        return not_found(request)
    sub = segs[1]
    if sub in ("list", "list-v2") and method == "POST" and len(segs) == 3:
        bucket_id = segs[2]
        body, err = await json_body(request)
        if err:
            return err
        if sub == "list-v2" and APP.faults.get("list_v2_disabled"):
            return JSONResponse({"statusCode": "400", "error": "FeatureNotEnabled",
                                 "message": "This feature is not available for your tenant",
                                 "code": "FeatureNotEnabled"}, status_code=400)
        APP.faults.count("listings")
        await hold_at("listing")
        if await visible_bucket(bucket_id, role) is None:
            # RLS hides everything: the real server answers an empty list
            return JSONResponse([] if sub == "list" else {"hasNext": False, "folders": [], "objects": []})
        result = await (list_v1(bucket_id, body) if sub == "list" else list_v2(bucket_id, body))
        return result if isinstance(result, Response) else JSONResponse(result)
    if sub == "info" and method in ("GET", "HEAD"):
        rest = segs[2:]
        if rest and rest[0] in ("authenticated", "public") and len(rest) >= 3:
            rest = rest[1:]
        if len(rest) < 2:
            return not_found(request)
        return await object_info(rest[0], "/".join(rest[1:]), role)
    if sub == "authenticated" and method in ("GET", "HEAD") and len(segs) >= 4:
        return await get_object(request, segs[2], "/".join(segs[3:]), role, head)
    if len(segs) == 2 and method == "DELETE":
        return await delete_objects(request, sub, role)
    if len(segs) >= 3:
        bucket_id, key = sub, "/".join(segs[2:])
        if method in ("GET", "HEAD"):
            return await get_object(request, bucket_id, key, role, head)
        if method in ("POST", "PUT"):
            return await put_object(request, bucket_id, key, role, update=method == "PUT")
        if method == "DELETE":
            return await delete_object(bucket_id, key, role)
    return not_found(request)


async def create_bucket(request: Request, role: str) -> Response:
    if role != "service_role":
        return storage_error("403", "AccessDenied", "new row violates row-level security policy", "Unauthorized")
    body, err = await json_body(request)
    if err:
        return err
    name = body.get("name") or body.get("id")
    bucket_id = body.get("id") or name
    if not isinstance(name, str) or not is_valid_bucket_name(name):
        return storage_error("400", "InvalidBucketName", f"Bucket name invalid: {name}")
    try:
        await APP.db.fetch(
            "INSERT INTO storage.buckets (id, name, public, file_size_limit, allowed_mime_types) "
            "VALUES (%s, %s, %s, %s, %s)",
            (bucket_id, name, bool(body.get("public", False)), body.get("file_size_limit"),
             body.get("allowed_mime_types")))
    except psycopg.errors.UniqueViolation:
        return storage_error("409", "BucketAlreadyExists", "The resource already exists", "Duplicate")
    return JSONResponse({"name": name})


async def delete_bucket(bucket_id: str, role: str) -> Response:
    if role != "service_role":
        return no_such_bucket()
    if await find_bucket(bucket_id) is None:
        return no_such_bucket()
    n = await APP.db.fetchone("SELECT count(*) AS n FROM storage.objects WHERE bucket_id = %s", (bucket_id,))
    if n["n"]:
        return storage_error("409", "InvalidRequest", "The bucket you tried to delete is not empty", "Bucket not empty")
    await APP.db.fetch("DELETE FROM storage.buckets WHERE id = %s", (bucket_id,))
    return JSONResponse({"message": "Successfully deleted"})


def not_found(request: Request) -> Response:
    if request.method == "HEAD":
        return Response(status_code=404)
    return JSONResponse({"message": f"Route {request.method}:{request.url.path} not found",
                         "error": "Not Found", "statusCode": 404}, status_code=404)


# ------------------------------------------------------------------------------------------------
# auth
# ------------------------------------------------------------------------------------------------
USER_COLS = """u.id, u.aud, u.role, u.email, u.email_confirmed_at, u.invited_at, u.phone, u.phone_confirmed_at,
    u.confirmation_sent_at, u.confirmed_at, u.recovery_sent_at, u.email_change, u.email_change_sent_at,
    u.phone_change, u.phone_change_sent_at, u.reauthentication_sent_at, u.last_sign_in_at,
    u.raw_app_meta_data, u.raw_user_meta_data, u.created_at, u.updated_at, u.banned_until, u.deleted_at,
    u.is_anonymous"""


async def _identities(user_ids: list) -> dict:
    if not user_ids:
        return {}
    rows = await APP.db.fetch(
        "SELECT id, provider_id, user_id, identity_data, provider, last_sign_in_at, created_at, updated_at, email "
        "FROM auth.identities WHERE user_id = ANY(%s) ORDER BY created_at", (user_ids,))
    out: dict = {}
    for r in rows:
        ident = {"identity_id": str(r["id"]), "id": r["provider_id"], "user_id": str(r["user_id"]),
                 "identity_data": r["identity_data"], "provider": r["provider"]}
        if r["last_sign_in_at"]:
            ident["last_sign_in_at"] = gotrue_ts(r["last_sign_in_at"])
        ident["created_at"] = gotrue_ts(r["created_at"])
        ident["updated_at"] = gotrue_ts(r["updated_at"])
        if r["email"]:
            ident["email"] = r["email"]
        out.setdefault(r["user_id"], []).append(ident)
    return out


def user_json(r: dict, identities: list) -> dict:
    u: dict[str, Any] = {"id": str(r["id"]), "aud": r["aud"] or "", "role": r["role"] or "",
                         "email": r["email"] or ""}
    for key, col in (("email_confirmed_at", "email_confirmed_at"), ("invited_at", "invited_at")):
        if r[col]:
            u[key] = gotrue_ts(r[col])
    u["phone"] = r["phone"] or ""
    for key, col in (("phone_confirmed_at", "phone_confirmed_at"), ("confirmation_sent_at", "confirmation_sent_at"),
                     ("confirmed_at", "confirmed_at"), ("recovery_sent_at", "recovery_sent_at")):
        if r[col]:
            u[key] = gotrue_ts(r[col])
    if r["email_change"]:
        u["new_email"] = r["email_change"]
    if r["email_change_sent_at"]:
        u["email_change_sent_at"] = gotrue_ts(r["email_change_sent_at"])
    if r["phone_change"]:
        u["new_phone"] = r["phone_change"]
    for key in ("phone_change_sent_at", "reauthentication_sent_at", "last_sign_in_at"):
        if r[key]:
            u[key] = gotrue_ts(r[key])
    u["app_metadata"] = r["raw_app_meta_data"] or {}
    u["user_metadata"] = r["raw_user_meta_data"] or {}
    u["identities"] = identities
    u["created_at"] = gotrue_ts(r["created_at"])
    u["updated_at"] = gotrue_ts(r["updated_at"])
    if r["banned_until"]:
        u["banned_until"] = gotrue_ts(r["banned_until"])
    if r["deleted_at"]:
        u["deleted_at"] = gotrue_ts(r["deleted_at"])
    u["is_anonymous"] = bool(r["is_anonymous"])
    return u


async def admin_users(request: Request) -> Response:
    err = auth_admin_check(request)
    if err:
        return err
    if request.method == "POST":
        return await admin_create_user(request)
    query = request.query_params
    try:
        page = int(query["page"]) if query.get("page") else 1
        per_page = int(query["per_page"]) if query.get("per_page") else 50
        if page < 0 or per_page < 0:
            raise ValueError("negative")
    except ValueError as exc:
        return gotrue_error(400, "validation_failed", f"Bad Pagination Parameters: {exc}")
    eff_page = max(page, 1)
    eff_per_page = per_page if per_page > 0 else 20
    aud = "authenticated"
    total_row = await APP.db.fetchone(
        "SELECT count(*) AS n FROM auth.users WHERE instance_id = %s AND aud = %s", (NIL_UUID, aud))
    total = total_row["n"]
    rows = await APP.db.fetch(
        f"SELECT {USER_COLS} FROM auth.users u WHERE u.instance_id = %s AND u.aud = %s "
        f"ORDER BY u.created_at DESC LIMIT %s OFFSET %s",
        (NIL_UUID, aud, eff_per_page, (eff_page - 1) * eff_per_page))
    idents = await _identities([r["id"] for r in rows])
    users = [user_json(r, idents.get(r["id"], [])) for r in rows]

    # Link header as GoTrue builds it: the request URL (as GoTrue sees it, behind the gateway)
    # with page replaced, query keys sorted.
    total_pages = -(-total // per_page) if per_page > 0 else 0
    pairs = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != "page"]

    def link(p: int) -> str:
        qs = urlencode(sorted(pairs + [("page", str(p))], key=lambda kv: kv[0]))
        return f"</admin/users?{qs}>"

    header = ""
    if total_pages > page:
        header += link(page + 1) + '; rel="next", '
    header += link(total_pages) + '; rel="last"'
    return JSONResponse({"users": users, "aud": aud},
                        headers={"X-Total-Count": str(total), "Link": header})


async def admin_user(request: Request) -> Response:
    err = auth_admin_check(request)
    if err:
        return err
    user_id = request.path_params["user_id"]
    try:
        uuid.UUID(user_id)
    except ValueError:
        return gotrue_error(404, "user_not_found", "User not found")
    if request.method == "DELETE":
        row = await APP.db.fetchone("DELETE FROM auth.users WHERE id = %s RETURNING id", (user_id,))
        if row is None:
            return gotrue_error(404, "user_not_found", "User not found")
        return JSONResponse({})
    row = await APP.db.fetchone(f"SELECT {USER_COLS} FROM auth.users u WHERE u.id = %s", (user_id,))
    if row is None:
        return gotrue_error(404, "user_not_found", "User not found")
    idents = await _identities([row["id"]])
    return JSONResponse(user_json(row, idents.get(row["id"], [])))


async def admin_create_user(request: Request) -> Response:
    try:
        body = json.loads(await request.body() or b"{}")
        assert isinstance(body, dict)
    except (ValueError, AssertionError):
        return gotrue_error(400, "bad_json", "Could not parse request body as JSON")
    email = body.get("email")
    phone = body.get("phone")
    if not email and not phone:
        return gotrue_error(400, "validation_failed", "Unable to validate email address: invalid format")
    user_id = body.get("id") or str(uuid.uuid4())
    app_md = {"provider": "email" if email else "phone", "providers": ["email" if email else "phone"]}
    app_md.update(body.get("app_metadata") or {})
    user_md = body.get("user_metadata") or {}
    password = body.get("password")
    enc = ""
    if password:
        salt = hashlib.sha256(f"{user_id}{password}".encode()).digest()
        enc = "$2a$10$" + base64.b64encode(salt + salt[:8]).decode().replace("+", ".")[:53]

    async def create(conn):
        cur = await conn.execute(
            "INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at, "
            "phone, phone_confirmed_at, raw_app_meta_data, raw_user_meta_data, is_super_admin, created_at, "
            "updated_at, confirmation_token, recovery_token, email_change_token_new, email_change) "
            "VALUES (%s, %s, 'authenticated', %s, %s, %s, CASE WHEN %s THEN now() END, %s, "
            "CASE WHEN %s THEN now() END, %s, %s, false, now(), now(), '', '', '', '') RETURNING id",
            (NIL_UUID, user_id, body.get("role") or "authenticated", email.lower() if email else None, enc,
             bool(body.get("email_confirm")), phone, bool(body.get("phone_confirm")), Jsonb(app_md), Jsonb(user_md)))
        await cur.fetchone()
        provider = "email" if email else "phone"
        data = {"sub": user_id, "email": email, "email_verified": bool(body.get("email_confirm")),
                "phone_verified": bool(body.get("phone_confirm"))} if email else {"sub": user_id, "phone": phone}
        await conn.execute(
            "INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, now(), now())", (user_id, user_id, Jsonb(data), provider))

    try:
        await APP.db.transaction(create)
    except psycopg.errors.UniqueViolation:
        if email:
            return gotrue_error(422, "email_exists", "A user with this email address has already been registered")
        return gotrue_error(422, "phone_exists", "A user with this phone number has already been registered")
    row = await APP.db.fetchone(f"SELECT {USER_COLS} FROM auth.users u WHERE u.id = %s", (user_id,))
    idents = await _identities([row["id"]])
    return JSONResponse(user_json(row, idents.get(row["id"], [])))


# ------------------------------------------------------------------------------------------------
# control
# ------------------------------------------------------------------------------------------------
def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    return host in ("127.0.0.1", "::1", "localhost", "testclient")


async def hold_at(point: str) -> None:
    """Wait while the hold for ``point`` is on (see faults.py); other requests go on meanwhile."""
    if not APP.faults.should_hold(point):
        return
    APP.faults.waiting(point, +1)
    try:
        while APP.faults.should_hold(point):
            await asyncio.sleep(0.01)
    finally:
        APP.faults.waiting(point, -1)


async def control_faults(request: Request) -> Response:
    if not _loopback(request):
        return JSONResponse({"error": "loopback only"}, status_code=403)
    if request.method == "GET":
        return JSONResponse(APP.faults.snapshot())
    if request.method == "DELETE":
        return JSONResponse(APP.faults.reset())
    try:
        update = json.loads(await request.body() or b"{}")
        return JSONResponse(APP.faults.update(update))
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)


async def control_health(request: Request) -> Response:
    row = await APP.db.fetchone("SELECT 1 AS ok")
    return JSONResponse({"ok": bool(row), "pid": os.getpid()})


async def catch_all(request: Request) -> Response:
    return not_found(request)


def create_app(settings: dict) -> Starlette:
    global APP
    APP = App(settings)
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
    routes = [
        Route("/storage/v1/{rest:path}", storage_dispatch, methods=methods),
        Route("/auth/v1/admin/users", admin_users, methods=["GET", "POST"]),
        Route("/auth/v1/admin/users/{user_id}", admin_user, methods=["GET", "DELETE"]),
        Route("/auth/v1/health", lambda r: JSONResponse({"version": "sandbox", "name": "GoTrue",
                                                          "description": "sandbox stand-in"})),
        Route("/_sandbox/faults", control_faults, methods=["GET", "PUT", "DELETE"]),
        Route("/_sandbox/health", control_health),
        Route("/{rest:path}", catch_all, methods=methods),
    ]
    # The Management API (/v1/projects/{ref}/...) is api.supabase.com on a real project; here it
    # shares the port, ahead of the catch-all 404. It keeps its own state and rate limits.
    routes[-1:-1] = ManagementApi(settings, APP.faults).routes()
    app = Starlette(routes=routes)
    app.add_middleware(FaultMiddleware)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.server")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    with open(os.path.join(args.state_dir, "settings.json")) as fh:
        settings = json.load(fh)
    import uvicorn

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(settings), host="127.0.0.1", port=int(settings["api_port"]),
                log_level="warning", access_log=False, timeout_keep_alive=30)


if __name__ == "__main__":
    main()
