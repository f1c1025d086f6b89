"""A fault-injecting HTTP proxy in front of the S3 API server, both on 127.0.0.1.

Faults are real ones at the network level — error answers, connections cut mid-body, a slow
or stopped endpoint — so the client libraries (botocore, s3fs, DuckDB's httpfs) meet them
exactly as they would meet a failing object store.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclass
class Faults:
    """What the proxy does to GETs whose path contains a key fragment.

    Counts are how many more requests get the fault; -1 means every one.
    """

    errors: dict[str, int] = field(default_factory=dict)  # answer 503 SlowDown
    cuts: dict[str, int] = field(default_factory=dict)  # send half the body, then close
    delay_s: float = 0.0  # before answering any request
    seen: list[str] = field(default_factory=list)  # "METHOD path", for assertions

    def take(self, table: dict[str, int], path: str) -> bool:
        for fragment, left in table.items():
            if fragment in path and left != 0:
                table[fragment] = left - 1 if left > 0 else left
                return True
        return False

    def clear(self) -> None:
        self.errors.clear()
        self.cuts.clear()
        self.delay_s = 0.0


class FaultyS3Proxy:
    def __init__(self, upstream: str):
        self.upstream = urlparse(upstream)
        self.faults = Faults()
        self.lock = threading.Lock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._connections: set = set()  # open client sockets, cut on stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultyS3Proxy:
        """Listen (again, on the same port after a stop)."""
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the port: clients get "connection refused", as from a stopped server."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        # Kept-alive connections would otherwise go on being served by their threads.
        with self.lock:
            connections, self._connections = self._connections, set()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep the test output readable
                pass

            def setup(self) -> None:
                super().setup()
                with proxy.lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy.lock:
                    proxy._connections.discard(self.connection)
                super().finish()

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.faults.seen.append(f"{self.command} {self.path}")
                    delay = proxy.faults.delay_s
                    is_get = self.command == "GET"
                    error = is_get and proxy.faults.take(proxy.faults.errors, self.path)
                    cut = is_get and not error and proxy.faults.take(proxy.faults.cuts, self.path)
                if delay:
                    time.sleep(delay)
                if error:
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                self.send_response(response.status)
                head = self.command == "HEAD"  # no body, but the object's own length
                for key, value in response.getheaders():
                    if key.lower() in HOP_BY_HOP or (key.lower() == "content-length" and not head):
                        continue
                    self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                if cut:
                    self.send_header("Connection", "close")
                self.end_headers()
                if cut:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if not head:
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler
