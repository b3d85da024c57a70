"""The UI's server with 10,000 workflows in its cache: the list page's server time, and
how long a change takes to reach a browser's event stream.

Prints figures, never pass/fail. The cache is filled directly (no API server: what is
measured is the UI's own work), and requests go through aiohttp over loopback, so the
times include HTTP parsing and JSON encoding, as a browser's request would.

Run: .venv/bin/python bench/ui.py [--workflows 10000] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from cerebelum.ui.cache import WatchCache
from cerebelum.ui.identity import LocalIdentity
from cerebelum.ui.server import UiServer, UiSettings

PHASES = ["Succeeded", "Failed", "Running", "Sleeping", "WaitingForApproval"]


class _NoApi:
    async def close(self) -> None:
        pass


def workflows(n: int) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        phase = PHASES[i % len(PHASES)]
        steps = {
            f"s{j}": {"phase": "Succeeded", "attempts": 1, "output": {"i": i, "j": j}}
            for j in range(5)
        }
        if phase == "WaitingForApproval":
            steps["gate"] = {"phase": phase, "approval": {"deadline": "2026-12-31T00:00:00Z"}}
        items.append(
            {
                "metadata": {
                    "name": f"deploy-{i:05}",
                    "namespace": "bench",
                    "creationTimestamp": f"2026-01-{1 + i % 28:02}T00:00:{i % 60:02}Z",
                },
                "spec": {
                    "steps": [{"name": f"s{j}", "noop": {}} for j in range(5)]
                    + [{"name": "gate", "approval": {}}]
                },
                "status": {"phase": phase, "progress": "5/6", "currentStep": "s4", "steps": steps},
            }
        )
    return items


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    identity = LocalIdentity(_NoApi())
    identity.session.user = "alice"
    cache = WatchCache(None, "bench")
    cache.load(workflows(args.workflows))
    identity.session.caches["bench"] = cache
    server = UiServer(identity, UiSettings(namespace="bench", secure_cookies=False))
    client = TestClient(TestServer(server.app))
    await client.start_server()
    try:
        print(f"{args.workflows} workflows in the cache; {args.requests} requests per page")
        for label, path in (
            ("list, first page", "/api/workflows?ns=bench"),
            ("list, phase filter, page 3", "/api/workflows?ns=bench&phase=Failed&page=3"),
            ("list, search", "/api/workflows?ns=bench&q=deploy-0999"),
            ("waiting for me", "/api/waiting?ns=bench"),
        ):
            times = []
            for _ in range(args.requests):
                started = time.perf_counter()
                answer = await client.get(path)
                await answer.read()
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status == 200
            print(
                f"  {label:28} p50 {statistics.median(times):6.1f} ms  p99 {pct(times, 0.99):6.1f} ms"
            )
        latencies = []
        for i in range(args.changes):
            answer = await client.get("/api/stream?ns=bench")
            await answer.content.readuntil(b"\n\n")  # ready
            started = time.perf_counter()
            obj = cache.items[f"deploy-{i:05}"]
            cache._publish("MODIFIED", obj)
            await answer.content.readuntil(b"\n\n")
            latencies.append((time.perf_counter() - started) * 1000)
            answer.close()
        print(
            f"  first SSE event after a change: p50 {statistics.median(latencies):.2f} ms, "
            f"p99 {pct(latencies, 0.99):.2f} ms ({args.changes} streams)"
        )
    finally:
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--changes", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
