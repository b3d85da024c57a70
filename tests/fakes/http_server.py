"""A real HTTP server on 127.0.0.1 with scriptable behaviour, for the http action's tests.

Paths: /ok (200 JSON), /status/CODE (that status), /flaky/KEY/N (503 with Retry-After: 0 for
the first N requests of KEY, then 200), /progress/KEY/N ({"state": "pending"} until the Nth
request of KEY, then {"state": "done"}: a build, a database, a certificate coming ready),
/slow/SECONDS, /echo (the request's headers and body back as JSON), /effect (a side effect
deduplicated by Idempotency-Key and fenced by X-Fencing-Token: a token lower than one already
seen for the key is refused with 409). Every request is recorded.

Run standalone: python -m tests.fakes.http_server --port 8080
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.base import LocalServer


class _Handler(BaseHTTPRequestHandler):
    server: FakeHttpServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.server.record(self.command, self.path, dict(self.headers), body)
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if parts == ["ok"]:
            self._reply(200, {"healthy": True, "version": "1.4.2"})
        elif parts[:1] == ["status"]:
            self._reply(int(parts[1]), {"error": f"status {parts[1]}"})
        elif parts[:1] == ["flaky"]:
            key, failures = parts[1], int(parts[2])
            if self.server.count(key) <= failures:
                self._reply(503, {"error": "busy"}, {"Retry-After": "0"})
            else:
                self._reply(200, {"calls": self.server.count(key)})
        elif parts[:1] == ["progress"]:
            calls = self.server.count(parts[1])
            self._reply(
                200, {"state": "done" if calls >= int(parts[2]) else "pending", "calls": calls}
            )
        elif parts[:1] == ["slow"]:
            time.sleep(float(parts[1]))
            self._reply(200, {"slow": True})
        elif parts == ["effect"]:
            status, payload = self.server.effect(
                self.headers.get("Idempotency-Key") or "", self.headers.get("X-Fencing-Token")
            )
            self._reply(status, payload)
        elif parts == ["echo"]:
            self._reply(200, {"method": self.command, "headers": dict(self.headers), "body": body})
        else:
            self._reply(404, {"error": "not found"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class FakeHttpServer(LocalServer):
    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(_Handler, port, host=host)
        self.requests: list[dict[str, Any]] = []
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        #: Side effects applied, per idempotency key (more than 1 would be a duplicate).
        self.effects: Counter[str] = Counter()
        #: Requests for a key that was already applied (deduplicated, not applied again).
        self.repeats: Counter[str] = Counter()
        #: (key, token) of requests refused for a stale fencing token.
        self.refused: list[tuple[str, int]] = []
        self._tokens: dict[str, int] = {}

    def effect(self, key: str, token: str | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if token is not None:
                fence = int(token)
                if fence < self._tokens.get(key, 0):
                    self.refused.append((key, fence))
                    return 409, {"error": f"stale fencing token {fence}"}
                self._tokens[key] = fence
            if self.effects[key]:
                self.repeats[key] += 1
                return 200, {"applied": False, "key": key}
            self.effects[key] += 1
            return 200, {"applied": True, "key": key}

    def record(self, method: str, path: str, headers: dict[str, str], body: str) -> None:
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
            parts = [p for p in path.split("/") if p]
            if parts[:1] in (["flaky"], ["progress"]):
                self._counts[parts[1]] += 1

    def count(self, key: str) -> int:
        with self._lock:
            return self._counts[key]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8080)
    with FakeHttpServer(parser.parse_args().port) as server:
        print(f"fake HTTP server at {server.url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
