"""Real receivers for alert delivery tests: a Slack-style webhook (HTTP) and an SMTP sink
(aiosmtpd), both on 127.0.0.1, both stopped by their own handles."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def webhook_receiver():
    """Yields (url, payloads): every JSON body POSTed to the URL is appended to payloads."""
    payloads: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            payloads.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/inferwatch", payloads
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def smtp_sink(port: int):
    """Yields the list of e-mails (email.message.EmailMessage) an aiosmtpd server receives."""
    from aiosmtpd.controller import Controller

    messages: list = []

    class Collect:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
            messages.append(message_from_bytes(envelope.content, policy=default_policy))
            return "250 Message accepted"

    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield messages
    finally:
        controller.stop()
