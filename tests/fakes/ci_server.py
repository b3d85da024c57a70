"""A local "CI" service: ``POST /builds`` with ``{"callback": URL, ...}`` starts a build,
and the build calls that URL back later, over HTTPS, as a real CI system's webhook would.

Per build (numbered from 1) the test chooses what the CI does (``plans``): call back after
``delay`` seconds with a payload, send heartbeats first, or never call back at all. Every
build request and every callback answer is recorded, so a test can replay a callback.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.fakes.base import LocalServer


@dataclass
class Plan:
    #: Seconds before the callback (None: never call back).
    delay: float | None = 2.0
    payload: Any = field(default_factory=lambda: {"artifact": "app-1.0.tgz", "tests": "passed"})
    #: Heartbeats to send first, one every ``heartbeat_every`` seconds.
    heartbeats: int = 0
    heartbeat_every: float = 0.5


class _Handler(BaseHTTPRequestHandler):
    server: FakeCiServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/builds":
            self.send_response(404)
            self.end_headers()
            return
        number = self.server.started(body)
        raw = json.dumps({"build": number, "state": "queued"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class FakeCiServer(LocalServer):
    def __init__(self, ca: Path, plans: list[Plan] | None = None) -> None:
        super().__init__(_Handler)
        self.plans = plans or [Plan()]
        self.builds: list[dict[str, Any]] = []
        #: (build, what, HTTP status) for every call the CI made to the operator.
        self.calls: list[tuple[int, str, int]] = []
        self._context = ssl.create_default_context(cafile=str(ca))
        self._lock = threading.Lock()

    def started(self, request: dict[str, Any]) -> int:
        with self._lock:
            self.builds.append(request)
            number = len(self.builds)
        plan = self.plans[min(number, len(self.plans)) - 1]
        threading.Thread(target=self._run, args=(number, request, plan), daemon=True).start()
        return number

    def post(self, url: str, payload: Any = None) -> tuple[int, dict[str, Any]]:
        """POST JSON to ``url`` over TLS checked against the test CA: (status, body)."""
        data = json.dumps(payload).encode() if payload is not None else b""
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self._context) as reply:
                return reply.status, json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def _run(self, number: int, request: dict[str, Any], plan: Plan) -> None:
        url = request["callback"]
        for _ in range(plan.heartbeats):
            time.sleep(plan.heartbeat_every)
            self.calls.append((number, "heartbeat", self.post(url + "/heartbeat")[0]))
        if plan.delay is None:
            return
        time.sleep(plan.delay)
        payload = plan.payload
        if isinstance(payload, dict):
            payload = {**payload, "build": number}
        self.calls.append((number, "callback", self.post(url, payload)[0]))
