"""A local stand-in for the DigitalOcean API v2, for tests and the demo.

It serves the real request and response shapes (from DigitalOcean's public OpenAPI
document) of the endpoints the digitalocean action uses:

    POST   /v2/droplets                      202 {"droplet": ..., "links": {"actions": [...]}}
    GET    /v2/droplets?tag_name=&page=      200 {"droplets": [...], "links": {}, "meta": {"total": n}}
    GET    /v2/droplets/{id}                 200 {"droplet": ...} | 404 {"id": "not_found", ...}
    DELETE /v2/droplets/{id}                 204
    POST   /v2/droplets/{id}/actions         201 {"action": ...}
    GET    /v2/actions/{id}                  200 {"action": ...}

Droplets start as "new" without networks and become "active" with a public IPv4 after
``active_after`` seconds. Faults can be injected: an error status (with Retry-After) for the
next N requests, a slow response, or a create that succeeds and then stalls its reply (to
kill the caller at the worst moment). ``creates_by_tag`` counts creates per tag, so tests
can prove a droplet was created exactly once.

Run standalone: python -m tests.fakes.digitalocean --port 8099 --token TOKEN
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.fakes.base import LocalServer


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    status: int
    remaining: int
    retry_after: int | None = None


@dataclass
class _State:
    token: str
    active_after: float
    public_ip: str
    droplets: dict[int, dict[str, Any]] = field(default_factory=dict)
    created_at: dict[int, float] = field(default_factory=dict)
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)
    creates_by_tag: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    delay: float = 0.0
    stall_after_create: float = 0.0
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(3164444))
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: FakeDigitalOcean

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(
        self, status: int, payload: Any | None = None, headers: dict[str, str] | None = None
    ) -> None:
        raw = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("ratelimit-limit", "5000")
        self.send_header("ratelimit-remaining", "4999")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if raw:
            self.wfile.write(raw)

    def _error(
        self, status: int, error_id: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, {"id": error_id, "message": message, "request_id": "fake"}, headers)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else {}

    def _handle(self) -> None:
        state = self.server.state
        url = urlparse(self.path)
        with state.lock:
            state.requests.append((self.command, url.path))
        if self.headers.get("Authorization") != f"Bearer {state.token}":
            self._error(401, "unauthorized", "Unable to authenticate you")
            return
        if state.delay:
            time.sleep(state.delay)
        with state.lock:
            fault = next((f for f in state.faults if f.remaining > 0), None)
            if fault is not None:
                fault.remaining -= 1
        if fault is not None:
            headers = (
                {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            )
            error_id = "too_many_requests" if fault.status == 429 else "server_error"
            self._error(fault.status, error_id, f"injected fault {fault.status}", headers)
            return
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            self._route(parts, query)
        except (KeyError, ValueError) as exc:
            self._error(422, "unprocessable_entity", f"invalid request: {exc}")

    def _route(self, parts: list[str], query: dict[str, str]) -> None:
        state = self.server.state
        method = self.command
        if parts == ["v2", "droplets"] and method == "POST":
            self._create(self._body())
        elif parts == ["v2", "droplets"] and method == "GET":
            with state.lock:
                found = [self.server.view(i) for i in sorted(state.droplets)]
            if "tag_name" in query:
                found = [d for d in found if query["tag_name"] in d["tags"]]
            per_page, page = int(query.get("per_page", 20)), int(query.get("page", 1))
            chunk = found[(page - 1) * per_page : page * per_page]
            self._send(200, {"droplets": chunk, "links": {}, "meta": {"total": len(found)}})
        elif parts[:2] == ["v2", "droplets"] and len(parts) == 3:
            droplet_id = int(parts[2])
            if droplet_id not in state.droplets:
                self._error(404, "not_found", "The resource you were accessing could not be found.")
            elif method == "GET":
                self._send(200, {"droplet": self.server.view(droplet_id)})
            elif method == "DELETE":
                with state.lock:
                    del state.droplets[droplet_id]
                self._send(204)
        elif (
            parts[:2] == ["v2", "droplets"]
            and len(parts) == 4
            and parts[3] == "actions"
            and method == "POST"
        ):
            droplet_id = int(parts[2])
            if droplet_id not in state.droplets:
                self._error(404, "not_found", "The resource you were accessing could not be found.")
                return
            action = self.server.new_action(self._body()["type"], droplet_id, status="completed")
            self._send(201, {"action": action})
        elif parts[:2] == ["v2", "actions"] and len(parts) == 3 and method == "GET":
            action_id = int(parts[2])
            if action_id not in state.actions:
                self._error(404, "not_found", "The resource you were accessing could not be found.")
                return
            self._send(200, {"action": self.server.action_view(action_id)})
        else:
            self._error(404, "not_found", f"no route for {method} /{'/'.join(parts)}")

    def _create(self, body: dict[str, Any]) -> None:
        state = self.server.state
        for required in ("name", "region", "size", "image"):
            if required not in body:
                self._error(422, "unprocessable_entity", f"{required} is required")
                return
        with state.lock:
            droplet_id = next(state.ids)
            tags = list(body.get("tags") or [])
            state.droplets[droplet_id] = {
                "id": droplet_id,
                "name": body["name"],
                "memory": 1024,
                "vcpus": 1,
                "disk": 25,
                "locked": False,
                "status": "new",
                "kernel": None,
                "created_at": _now(),
                "features": [],
                "backup_ids": [],
                "snapshot_ids": [],
                "image": {"slug": body["image"], "distribution": "Ubuntu"},
                "size_slug": body["size"],
                "region": {"slug": body["region"], "name": body["region"]},
                "tags": tags,
                "vpc_uuid": "5a4981aa-9653-4bd1-bef5-d6bff52042e4",
                "volume_ids": [],
            }
            state.created_at[droplet_id] = time.monotonic()
            for tag in tags:
                state.creates_by_tag[tag] += 1
        action = self.server.new_action("create", droplet_id, status="in-progress")
        if state.stall_after_create:
            time.sleep(state.stall_after_create)  # created, but the caller hears nothing yet
        self._send(
            202,
            {
                "droplet": self.server.view(droplet_id),
                "links": {
                    "actions": [
                        {
                            "id": action["id"],
                            "rel": "create",
                            "href": f"{self.server.url}/v2/actions/{action['id']}",
                        }
                    ]
                },
            },
        )

    do_GET = do_POST = do_DELETE = _handle


class FakeDigitalOcean(LocalServer):
    def __init__(
        self,
        token: str,
        *,
        active_after: float = 1.0,
        public_ip: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[Path, Path] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(_Handler, port, tls=tls, host=host)
        self.state = _State(token=token, active_after=active_after, public_ip=public_ip)

    # -- views -------------------------------------------------------------------------

    def view(self, droplet_id: int) -> dict[str, Any]:
        state = self.state
        droplet = dict(state.droplets[droplet_id])
        if time.monotonic() - state.created_at[droplet_id] >= state.active_after:
            droplet["status"] = "active"
            droplet["networks"] = {
                "v4": [
                    {
                        "ip_address": "10.116.0.2",
                        "netmask": "255.255.240.0",
                        "gateway": "",
                        "type": "private",
                    },
                    {
                        "ip_address": state.public_ip,
                        "netmask": "255.255.240.0",
                        "gateway": "127.0.0.254",
                        "type": "public",
                    },
                ],
                "v6": [],
            }
        else:
            droplet["networks"] = {"v4": [], "v6": []}
        return droplet

    def new_action(self, kind: str, droplet_id: int, status: str) -> dict[str, Any]:
        with self.state.lock:
            action_id = next(self.state.ids)
            self.state.actions[action_id] = {
                "id": action_id,
                "status": status,
                "type": kind,
                "started_at": _now(),
                "completed_at": _now() if status == "completed" else None,
                "resource_id": droplet_id,
                "resource_type": "droplet",
                "region_slug": "nyc3",
                "_started": time.monotonic(),
            }
        return self.action_view(action_id)

    def action_view(self, action_id: int) -> dict[str, Any]:
        action = dict(self.state.actions[action_id])
        started = action.pop("_started")
        if (
            action["status"] == "in-progress"
            and time.monotonic() - started >= self.state.active_after
        ):
            action["status"], action["completed_at"] = "completed", _now()
        return action

    # -- faults and inspection ---------------------------------------------------------

    def fail_next(self, status: int, count: int = 1, retry_after: int | None = None) -> None:
        with self.state.lock:
            self.state.faults.append(Fault(status, count, retry_after))

    def set_delay(self, seconds: float) -> None:
        self.state.delay = seconds

    def stall_after_create(self, seconds: float) -> None:
        self.state.stall_after_create = seconds

    @property
    def creates_by_tag(self) -> Counter[str]:
        with self.state.lock:
            return Counter(self.state.creates_by_tag)

    @property
    def droplet_count(self) -> int:
        with self.state.lock:
            return len(self.state.droplets)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--token", required=True)
    parser.add_argument("--active-after", type=float, default=5.0)
    args = parser.parse_args()
    with FakeDigitalOcean(args.token, active_after=args.active_after, port=args.port) as fake:
        print(f"fake DigitalOcean API at {fake.url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
