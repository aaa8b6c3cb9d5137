"""A real HTTP/1.1 server on 127.0.0.1 for tests of the urllib3 download path (httpx's MockTransport
cannot reach urllib3), with faults a mock cannot fake: a body cut short under a full Content-Length, a
connection reset halfway, a connection closed before any reply, a body that stalls past the read timeout.

``serve(handle)`` runs ``handle(method, target, headers, body) -> Reply`` for every request in its own
thread (ThreadingHTTPServer) and yields the server's base URL. ``target`` is the request target exactly as
it arrived (percent-encoding untouched; absolute-form when the client speaks to it as a proxy).
"""

from __future__ import annotations

import socket
import struct
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock, Thread
from typing import Callable, Iterator

# Faults, applied to a reply whose status and headers are otherwise sent as given:
TRUNCATE = "truncate"  # full Content-Length, half the body, then close
RESET = "reset"  # full Content-Length, half the body, then a TCP reset
DROP = "drop"  # close the connection without any reply
STALL = "stall"  # half the body, then silence for STALL_SECONDS, then the rest
CHUNKED = "chunked"  # no Content-Length: Transfer-Encoding chunked, in two chunks
STALL_SECONDS = 1.5


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    fault: str | None = None


@dataclass
class Seen:
    """What the server saw: one entry per request, and how many connections were opened."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    connections: int = 0
    lock: Lock = field(default_factory=Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls
    server: "_Server"

    def setup(self) -> None:
        super().setup()
        with self.server.seen.lock:
            self.server.seen.connections += 1

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        request_body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        with self.server.seen.lock:
            self.server.seen.requests.append((self.command, self.path, headers))
        reply = self.server.handle(self.command, self.path, headers, request_body)
        if reply.fault == DROP:
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            if not (reply.fault == CHUNKED and name.lower() == "content-length"):
                self.send_header(name, value)
        if reply.fault == CHUNKED:
            self.send_header("Transfer-Encoding", "chunked")
        elif "content-length" not in {name.lower() for name in reply.headers}:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        half = len(reply.body) // 2
        if reply.fault == CHUNKED:
            for part in (reply.body[:10], reply.body[10:]):
                if part:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif reply.fault == TRUNCATE:
            self.wfile.write(reply.body[:half])
            self.wfile.flush()
            self.close_connection = True
        elif reply.fault == RESET:
            self.wfile.write(reply.body[:half])
            self.wfile.flush()
            time.sleep(0.05)
            # SO_LINGER with a zero timeout turns close() into a TCP reset.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif reply.fault == STALL:
            self.wfile.write(reply.body[:half])
            self.wfile.flush()
            time.sleep(STALL_SECONDS)
            try:
                self.wfile.write(reply.body[half:])
            except OSError:
                pass
            self.close_connection = True
        else:
            self.wfile.write(reply.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    handle: Callable[[str, str, dict[str, str], bytes], Reply]
    seen: Seen

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up on purpose (timeouts, cancels) are part of the tests


@contextmanager
def serve(handle: Callable[[str, str, dict[str, str], bytes], Reply], *, ssl_context=None) -> Iterator[tuple[str, Seen]]:
    """Serve ``handle`` on 127.0.0.1 (HTTPS with ``ssl_context``); yield ``(base_url, seen)``."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.handle = handle
    server.seen = Seen()
    scheme = "http"
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", server.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
