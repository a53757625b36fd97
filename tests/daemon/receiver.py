"""A real webhook receiver on 127.0.0.1 for the daemon's notification tests.

``http.server`` in a thread of the test process: it records every request
(headers and body) and answers from a script (a list of statuses, then 200),
optionally after a delay, so a test can make it fail, be slow, or hang while
the daemon is killed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc

    @property
    def delivery(self) -> str:
        return self.headers["x-svwatchd-delivery"]

    def signed_with(self, secret: bytes) -> bool:
        """The receiver's check: HMAC-SHA256 of "<timestamp>.<body>" keyed by the secret."""
        stamp = self.headers["x-svwatchd-timestamp"]
        mac = hmac.new(secret, stamp.encode() + b"." + self.body, hashlib.sha256)
        return hmac.compare_digest(
            "sha256=" + mac.hexdigest(), self.headers["x-svwatchd-signature"]
        )


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on (closed now: connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """Records requests; answers ``statuses`` in turn (then 200), each after ``delay``."""

    def __init__(self, port: int = 0, *, statuses: list[int] | None = None, delay: float = 0):
        self.requests: list[Request] = []
        self.statuses = list(statuses or [])
        self.delay = delay
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.requests.append(Request(headers, body, time.time()))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def got(self) -> list[Request]:
        with self._lock:
            return list(self.requests)
