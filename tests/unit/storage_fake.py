"""A fake Supabase Storage for the storage_listing and storage_download tests.

It answers like Supabase Storage per SPEC §6 (errors as HTTP 400 with the real status in the body,
list-v2 with cursors, v1 one level per call with folder rows and case-insensitive prefixes), so the
exporter is checked against the wire contract rather than against itself. Listing tests reach it
through httpx's MockTransport; everything that downloads reaches it over a real socket
(http_server.py), because downloads go through urllib3, which no httpx transport can stand in for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from contextlib import ExitStack
from urllib.parse import unquote

import httpx
import pytest
from upath import UPath

from supabase_backup.sources.api_client import ApiSettings
from supabase_backup.staging import StagingArea
from tests.unit.http_server import CHUNKED, DROP, RESET, STALL, TRUNCATE, Reply, serve

SECRET = "service-role-secret-never-shown"
SETTINGS = ApiSettings("http://127.0.0.1:54321", SECRET)



def json_reply(status: int, body) -> Reply:
    return Reply(status, {"content-type": "application/json; charset=utf-8"}, json.dumps(body).encode())


def storage_error(status: str, code: str, message: str) -> Reply:
    return json_reply(400, {"statusCode": status, "error": code, "code": code, "message": message})


def to_httpx(reply: Reply) -> httpx.Response:
    assert reply.fault is None, "faults need the real server (serve_fake)"
    return httpx.Response(reply.status, headers=reply.headers, content=reply.body)


class FakeStorage:
    """Supabase Storage for one process: buckets of {key: bytes}, with switches and fault injection."""

    def __init__(self, buckets: dict[str, dict[str, bytes]], *, list_v2: str = "yes"):
        self.buckets = buckets
        self.list_v2 = list_v2  # "yes", "feature-not-enabled" or "no-route"
        self.faults: dict[str, list[str]] = {}  # key → faults for its next downloads, in order
        self.vanished: set[str] = set()  # listed, but NoSuchKey on download (deleted in between)
        self.requests: list[tuple[str, str]] = []
        self.list_bodies: list[dict] = []
        self.downloads: dict[str, int] = {}
        self.lock = threading.Lock()

    def transport(self) -> httpx.MockTransport:
        """For listing tests: the fake behind httpx's MockTransport (no downloads, no faults)."""

        def handle(request: httpx.Request) -> httpx.Response:
            headers = {name.lower(): value for name, value in request.headers.items()}
            return to_httpx(self.handle(request.method, request.url.raw_path.decode("ascii"), headers, request.content))

        return httpx.MockTransport(handle)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        assert headers["authorization"] == f"Bearer {SECRET}"
        assert headers["apikey"] == SECRET
        if "://" in target:  # absolute-form: the client took us for its proxy
            target = "/" + target.split("://", 1)[1].split("/", 1)[1]
        raw_path = target.split("?", 1)[0]
        with self.lock:
            self.requests.append((method, raw_path))
        parts = raw_path.split("/")  # '', 'storage', 'v1', ...
        route = parts[3:]
        if method == "GET" and route == ["bucket"]:
            return json_reply(200, [{"id": name, "name": name, "public": False} for name in self.buckets])
        if method == "POST" and route[:2] == ["object", "list-v2"]:
            return self.list_v2_page(unquote(route[2]), json.loads(body))
        if method == "POST" and route[:2] == ["object", "list"]:
            return self.list_v1_page(unquote(route[2]), json.loads(body))
        if method == "GET" and route[:2] == ["object", "authenticated"]:
            assert headers.get("accept-encoding") == "identity"
            # Each segment decoded on its own, as the server's router does: empty segments survive.
            return self.download(unquote(route[2]), "/".join(unquote(segment) for segment in route[3:]))
        return json_reply(404, {"statusCode": 404, "error": "Not Found", "message": f"Route {raw_path} not found"})

    @staticmethod
    def metadata(content: bytes) -> dict:
        return {"size": len(content), "eTag": f'"{hashlib.md5(content).hexdigest()}"', "mimetype": "text/plain"}

    def list_v2_page(self, bucket: str, body: dict) -> httpx.Response:
        if self.list_v2 == "feature-not-enabled":
            return storage_error("400", "FeatureNotEnabled", "feature not enabled for this tenant")
        if self.list_v2 == "no-route":
            return json_reply(404, {"statusCode": 404, "error": "Not Found", "message": "Route not found"})
        if bucket not in self.buckets:
            return storage_error("404", "NoSuchBucket", "Bucket not found")
        with self.lock:
            self.list_bodies.append(body)
        limit = min(body.get("limit", 1000), 1000)
        after = base64.b64decode(body["cursor"]).decode() if body.get("cursor") else None
        keys = sorted(key for key in self.buckets[bucket] if after is None or key > after)
        page = keys[:limit]
        reply = {
            "hasNext": len(keys) > limit,
            "folders": [],
            "objects": [{"id": f"id-{key}", "name": key, "metadata": self.metadata(self.buckets[bucket][key])} for key in page],
        }
        if reply["hasNext"]:
            reply["nextCursor"] = base64.b64encode(page[-1].encode()).decode()
            reply["nextCursorKey"] = page[-1]
        return json_reply(200, reply)

    def list_v1_page(self, bucket: str, body: dict) -> httpx.Response:
        if bucket not in self.buckets:
            return json_reply(200, [])
        with self.lock:
            self.list_bodies.append(body)
        prefix = body.get("prefix", "")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        limit = min(body.get("limit", 100), 1500)
        offset = body.get("offset", 0)
        rows: dict[str, dict] = {}
        for key, content in self.buckets[bucket].items():
            # Case-insensitive like the real v1: folders "Case/" and "case/" merge into one row.
            if not key.lower().startswith(prefix.lower()):
                continue
            rest = key[len(prefix) :]
            if "/" in rest:
                folder = rest.split("/", 1)[0]
                rows.setdefault(folder.lower() + "/", {"name": folder, "id": None, "metadata": None})
            else:
                rows[rest] = {"name": rest, "id": f"id-{key}", "metadata": self.metadata(content)}
        ordered = sorted(rows.values(), key=lambda row: row["name"])
        return json_reply(200, ordered[offset : offset + limit])

    def download(self, bucket: str, key: str) -> Reply:
        with self.lock:
            self.downloads[key] = self.downloads.get(key, 0) + 1
            fault = self.faults[key].pop(0) if self.faults.get(key) else None
        content = self.buckets.get(bucket, {}).get(key)
        if content is None or key in self.vanished:
            return storage_error("404", "NoSuchKey", "Object not found")
        if fault == "503":
            return Reply(503, {"content-type": "text/plain"}, b"upstream unavailable")
        if fault == "internal":
            return storage_error("500", "InternalError", "Internal Server Error")
        if fault == "invalid":
            return storage_error("400", "InvalidKey", "Invalid key")
        if fault == "unauthorized":
            return storage_error("403", "AccessDenied", "invalid signature")
        headers = {
            "content-type": "text/plain; charset=utf-8",
            "cache-control": "max-age=3600",
            "etag": self.metadata(content)["eTag"],
            "last-modified": "Wed, 25 Nov 2026 10:00:00 GMT",
            "content-length": str(len(content)),
        }
        # truncate, reset, drop, stall and chunked are played by the server (http_server.py).
        return Reply(200, headers, content, fault=fault if fault in (TRUNCATE, RESET, DROP, STALL, CHUNKED) else None)

    @property
    def download_targets(self) -> list[str]:
        return [path for method, path in self.requests if "/object/authenticated/" in path]


@pytest.fixture
def serve_fake():
    """``serve_fake(fake) -> ApiSettings`` pointing at ``fake`` on a real socket; ``.seen`` on the fake."""
    with ExitStack() as stack:

        def start(fake: FakeStorage) -> ApiSettings:
            url, fake.seen = stack.enter_context(serve(fake.handle))
            return ApiSettings(url, SECRET)

        yield start


def staging_for(tmp_path, bucket: str = "media"):
    return StagingArea(UPath(f"file://{tmp_path}") / "run").bucket(bucket)


def read_lines(path) -> list[dict]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]



# Keys that look like paths, queries, fragments, encodings or traversal: each must reach the
# server as itself.
TRICKY_KEYS = [
    "plain.txt",
    "dot/../escape.txt",
    "./here.txt",
    "a/./b",
    "..",
    ".",
    "a//b",
    "/leading",
    "trailing/",
    "..hidden",
    "a..b",
    "q?/what?.txt",
    "it's & ok=yes;@:+,$!*",
    "100%/done#frag",
    "sp ace/and\ttab",
    "ünïcødé/日本語.txt",
    "back\\slash",
    "~tilde/%2E",
    "plus+sign",
    "",
]
