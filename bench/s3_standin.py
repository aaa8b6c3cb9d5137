"""A thin S3 stand-in for the benchmarks: objects are files, ranges are served by seeking.

    python bench/s3_standin.py --data DIR --port PORT

moto_server (the tests' S3) copies the whole object for every GET, ranged or not (moto 5.2.5,
``FakeKey.value``), so a 1 GiB archive read back by 8 MiB ranges costs it 2 GiB of copying per
request: a benchmark against it measures moto. This stand-in does only what the measured code and
its baselines call — HeadObject, GetObject (Range), PutObject, DeleteObject, CreateMultipartUpload,
UploadPart, CompleteMultipartUpload (If-None-Match: *), AbortMultipartUpload — on path-style
URLs, with no authentication. Clients must not send aws-chunked bodies
(``request_checksum_calculation="when_required"``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

COPY = 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    data: Path

    def log_message(self, *args) -> None:
        pass

    def _target(self) -> tuple[Path, dict]:
        parts = urlsplit(self.path)
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
        name = hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()
        return self.data / "objects" / name, parse_qs(parts.query, keep_blank_values=True)

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _read_body_to(self, path: Path) -> str:
        length = int(self.headers.get("Content-Length", "0"))
        digest = hashlib.md5()
        with path.open("wb") as file:
            while length:
                chunk = self.rfile.read(min(length, COPY))
                if not chunk:
                    break
                file.write(chunk)
                digest.update(chunk)
                length -= len(chunk)
        return digest.hexdigest()

    def do_HEAD(self) -> None:
        path, _ = self._target()
        if not path.exists():
            self._reply(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("ETag", '"x"')
        self.end_headers()

    def do_GET(self) -> None:
        path, _ = self._target()
        if not path.exists():
            self._reply(404, b"<Error><Code>NoSuchKey</Code></Error>")
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = min(size - 1, int(match.group(2))) if match.group(2) else size - 1
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("ETag", '"x"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        with path.open("rb") as file:
            file.seek(start)
            left = end - start + 1
            while left:
                chunk = file.read(min(left, COPY))
                self.wfile.write(chunk)
                left -= len(chunk)

    def do_PUT(self) -> None:
        path, query = self._target()
        if "uploadId" in query:
            upload = self.data / "uploads" / query["uploadId"][0]
            etag = self._read_body_to(upload / f"{int(query['partNumber'][0]):05d}")
            self._reply(200, headers={"ETag": f'"{etag}"'})
            return
        if self.headers.get("If-None-Match") == "*" and path.exists():
            self._read_body_to(self.data / "discard")
            self._reply(412, b"<Error><Code>PreconditionFailed</Code></Error>")
            return
        etag = self._read_body_to(path)
        self._reply(200, headers={"ETag": f'"{etag}"'})

    def do_POST(self) -> None:
        path, query = self._target()
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        if "uploads" in query:
            upload_id = uuid.uuid4().hex
            (self.data / "uploads" / upload_id).mkdir(parents=True)
            self._reply(200, f"<InitiateMultipartUploadResult><UploadId>{upload_id}</UploadId>"
                             "</InitiateMultipartUploadResult>".encode())
            return
        upload = self.data / "uploads" / query["uploadId"][0]
        if self.headers.get("If-None-Match") == "*" and path.exists():
            self._reply(412, b"<Error><Code>PreconditionFailed</Code></Error>")
            return
        with path.open("wb") as target:
            for part in sorted(upload.iterdir()):
                with part.open("rb") as source:
                    shutil.copyfileobj(source, target, COPY)
        shutil.rmtree(upload)
        self._reply(200, b'<CompleteMultipartUploadResult><ETag>"x-1"</ETag>'
                         b"</CompleteMultipartUploadResult>")

    def do_DELETE(self) -> None:
        path, query = self._target()
        if "uploadId" in query:
            shutil.rmtree(self.data / "uploads" / query["uploadId"][0], ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        self._reply(204)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    data = Path(args.data)
    (data / "objects").mkdir(parents=True, exist_ok=True)
    (data / "uploads").mkdir(parents=True, exist_ok=True)
    Handler.data = data
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    os.environ.pop("AWS_SECRET_ACCESS_KEY", None)
    server.serve_forever()


if __name__ == "__main__":
    main()
