"""A Slack-shaped incoming webhook on 127.0.0.1: it records every notice POSTed to it, and
can be "down" (HTTP 503) for a while, or hold a request before it answers."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.base import LocalServer


class _Handler(BaseHTTPRequestHandler):
    server: NotifyReceiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        hold = self.server.arrived(payload, dict(self.headers))
        if hold:
            time.sleep(hold)
        status = 503 if time.monotonic() < self.server.down_until else 200
        raw = b"ok" if status == 200 else b"down"
        self.send_response(status)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
        if status == 200:
            self.server.accepted(payload)


class NotifyReceiver(LocalServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        #: Every request: (body, headers).
        self.requests: list[tuple[dict[str, Any], dict[str, str]]] = []
        #: Bodies answered 200.
        self.received: list[dict[str, Any]] = []
        self.down_until = 0.0
        #: Hold the next request this many seconds before answering.
        self.hold_next = 0.0
        self._lock = threading.Lock()

    def down_for(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds

    def arrived(self, payload: dict[str, Any], headers: dict[str, str]) -> float:
        with self._lock:
            self.requests.append((payload, headers))
            hold, self.hold_next = self.hold_next, 0.0
            return hold

    def accepted(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self.received.append(payload)
