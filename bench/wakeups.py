"""Many workflows waking at once: lateness, API writes per transition, and the API's ceiling.

Prints figures, never pass/fail:
(a) the raw ceiling: status writes per second a concurrent client (``--raw-inflight``, 64 by
    default) reaches on the same API server in the same run;
(b) N workflows x 3 sleep steps of ``--sleep`` seconds, created at once: makespan, wake-up
    lateness p50/p99/max (a step's finishedAt minus its sleepUntil, from status), API writes
    per step transition (status writes and Events, from the API server's own counters; a
    transition is a step changing phase, counted from status history), operator CPU-seconds
    and peak RSS, and its transitions per second as a fraction of (a);
(c) with ``--http``: the same with one http step first (a local server answering at once),
    and how long after the action returned its result was recorded (p50/p99).

Run: .venv/bin/python bench/wakeups.py --workflows 10000 --sleep 60 [--http]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from kubernetes_asyncio import client, config, watch

from cerebelum.api.durations import parse_time
from cerebelum.devcluster import LocalControlPlane, ensure_binaries
from cerebelum.kube.command import operator_argv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_throughput import request_counts

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "cerebelum.io", "v1alpha1", "workflows"
#: Resources the API server writes itself (its lease, the kubernetes Service's endpoints).
_SERVER_OWN = frozenset({"leases", "endpoints", "endpointslices"})


class _Answer(BaseHTTPRequestHandler):
    """An endpoint that answers at once and notes when (the action's return, near enough)."""

    answered: ClassVar[dict[str, float]] = {}

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        key = self.path.rsplit("/", 1)[-1]
        _Answer.answered[key] = time.time()
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


def manifest(name: str, seconds: float, url: str | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    if url:
        steps.append({"name": "call", "http": {"method": "POST", "url": f"{url}/{name}"}})
    steps += [{"name": f"nap{i}", "sleep": {"duration": f"{seconds:g}s"}} for i in range(3)]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"steps": steps},
    }


async def create_all(api: client.CustomObjectsApi, ns: str, bodies: list[dict[str, Any]]) -> None:
    sem = asyncio.Semaphore(32)

    async def one(body: dict[str, Any]) -> None:
        async with sem:
            await api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    await asyncio.gather(*(one(b) for b in bodies))


async def raw_ceiling(
    api: client.CustomObjectsApi, ns: str, names: list[str], inflight: int, seconds: float
) -> float:
    """Status writes per second with ``inflight`` requests always in flight."""
    done = 0
    stop = time.monotonic() + seconds

    async def writer(offset: int) -> None:
        nonlocal done
        i = offset
        while time.monotonic() < stop:
            name = names[i % len(names)]
            await api.patch_namespaced_custom_object_status(  # type: ignore[call-arg]
                GROUP,
                VERSION,
                ns,
                PLURAL,
                name,
                {"status": {"message": f"raw {i}"}},
                _content_type="application/merge-patch+json",
            )
            done += 1
            i += inflight

    started = time.monotonic()
    await asyncio.gather(*(writer(k) for k in range(inflight)))
    return done / (time.monotonic() - started)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def sample_gauges(port: int, into: list[tuple[float, float]]) -> None:
    """The operator's reconcile concurrency and queue depth, every second."""
    import urllib.request

    def read() -> tuple[float, float] | None:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
        except OSError:
            return None
        values = {}
        for line in text.decode().splitlines():
            name, _, value = line.partition(" ")
            if name in ("cerebelum_reconcile_concurrency", "cerebelum_queue_depth"):
                values[name] = float(value)
        if len(values) < 2:
            return None
        return values["cerebelum_reconcile_concurrency"], values["cerebelum_queue_depth"]

    while True:
        got = await asyncio.to_thread(read)
        if got is not None:
            into.append(got)
        await asyncio.sleep(1)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def install(
    plane: LocalControlPlane, files: list[Path], *, pool: int = 64
) -> client.Configuration:
    """Apply ``files`` (CRDs), wait until every CRD is established, and return a client
    configuration for the plane's admin with ``pool`` connections."""
    kubectl = [str(ensure_binaries().kubectl), "--kubeconfig", str(plane.kubeconfig)]
    applied = [arg for f in files for arg in ("-f", str(f))]
    subprocess.run([*kubectl, "apply", "--server-side", *applied], check=True, capture_output=True)
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd", "--all"],
        check=True,
        capture_output=True,
    )
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(plane.kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = pool
    return configuration


async def list_all(api: client.CustomObjectsApi, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = None
    while True:
        page = (
            await api.list_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, limit=500, _continue=token
            )
            if token
            else await api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, limit=500)
        )
        items += page["items"]
        token = page["metadata"].get("continue")
        if not token:
            return items


async def wait_all_finished(api: client.CustomObjectsApi, ns: str, count: int) -> None:
    """Return once ``count`` workflows are Succeeded or Failed, learnt from a watch.

    A watch, not a list every few seconds: listing 10,000 growing objects every 2 s costs the
    shared API server and CPUs more than the operator's own work and would be measured as
    the operator's lateness.
    """
    finished: set[str] = set()
    version = ""
    while len(finished) < count:
        if not version:
            listed = await api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, limit=1)
            version = listed["metadata"]["resourceVersion"]
            finished.clear()
            for item in await list_all(api, ns):
                if (item.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    finished.add(item["metadata"]["name"])
            continue
        stream = watch.Watch()
        try:
            async for event in stream.stream(
                api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                ns,
                PLURAL,
                resource_version=version,
                timeout_seconds=120,
                allow_watch_bookmarks=True,
            ):
                obj = event["object"]
                if event["type"] == "ERROR":
                    version = ""  # expired: list again
                    break
                version = obj["metadata"]["resourceVersion"]
                if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    finished.add(obj["metadata"]["name"])
                if len(finished) >= count:
                    break
        except client.ApiException as exc:
            if exc.status != 410:
                raise
            version = ""
        finally:
            await stream.close()  # its own ApiClient and the open response


async def run_case(
    args: argparse.Namespace,
    plane: LocalControlPlane,
    api: Any,
    ns: str,
    url: str | None,
    raw: float,
) -> None:
    kubectl = ensure_binaries().kubectl
    subprocess.run(
        [str(kubectl), "--kubeconfig", str(plane.kubeconfig), "create", "namespace", ns],
        check=True,
        capture_output=True,
    )
    log = Path(tempfile.mkdtemp(prefix="cerebelum-bench-")) / "operator.log"
    metrics_port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(plane.kubeconfig),
        "CEREBELUM_METRICS_PORT": str(metrics_port),
        **dict(kv.split("=", 1) for kv in args.env),
    }
    with log.open("wb") as out:
        operator = subprocess.Popen(
            operator_argv(ns), stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + 30
        while "cerebelum operator started" not in log.read_text():
            if time.monotonic() > deadline or operator.poll() is not None:
                raise SystemExit(f"operator did not start:\n{log.read_text()[-2000:]}")
            await asyncio.sleep(0.2)
        cpu0 = proc_cpu_seconds(operator.pid)
        samples: list[tuple[float, float]] = []
        sampler = asyncio.create_task(sample_gauges(metrics_port, samples))
        before = request_counts(kubectl, plane.kubeconfig)
        names = [f"wf-{i:05d}" for i in range(args.workflows)]
        started = time.monotonic()
        await create_all(api, ns, [manifest(n, args.sleep, url) for n in names])
        created = time.monotonic() - started
        expected = args.sleep * 3
        try:
            await asyncio.wait_for(wait_all_finished(api, ns, len(names)), timeout=expected + 1800)
        except TimeoutError:
            raise SystemExit(f"not all {len(names)} workflows finished in time") from None
        makespan = time.monotonic() - started
        sampler.cancel()
        items = await list_all(api, ns)
        # Events wait while reconciliations are queued: let the last ones be posted, so the
        # writes counted are all the writes the workflows cost.
        quiet_since, last = time.monotonic(), None
        while time.monotonic() - quiet_since < 5 and time.monotonic() - started < makespan + 180:
            posted = request_counts(kubectl, plane.kubeconfig)[("POST", "events", "")]
            if posted != last:
                quiet_since, last = time.monotonic(), posted
            await asyncio.sleep(1)
        cpu = proc_cpu_seconds(operator.pid) - cpu0
        rss = peak_rss_mib(operator.pid)
        delta = request_counts(kubectl, plane.kubeconfig)
        delta.subtract(before)
        writes: Counter[str] = Counter()
        for (verb, resource, sub), n in delta.items():
            if verb in ("POST", "PUT", "PATCH", "DELETE", "APPLY") and n > 0:
                writes[f"{verb} {resource}{'/' + sub if sub else ''}"] += n
        writes.pop("POST workflows", None)  # the benchmark's own creates
        for own in [w for w in writes if w.split()[1].split("/")[0] in _SERVER_OWN]:
            writes.pop(own)  # the API server's own leases and endpoints
        late: list[float] = []
        transitions = 0
        recorded: list[float] = []
        failed = 0
        per_second: Counter[int] = Counter()
        late_by_step: dict[str, list[float]] = {}
        for item in items:
            status = item.get("status") or {}
            failed += status.get("phase") != "Succeeded"
            for h in status.get("history") or []:
                if h.get("step"):
                    transitions += 1
                    per_second[int(parse_time(h["time"]).timestamp())] += 1
            for name, s in (status.get("steps") or {}).items():
                if s.get("sleepUntil") and s.get("finishedAt"):
                    lateness = (
                        parse_time(s["finishedAt"]) - parse_time(s["sleepUntil"])
                    ).total_seconds()
                    late.append(lateness)
                    late_by_step.setdefault(name, []).append(lateness)
                if name == "call" and s.get("finishedAt"):
                    answered = _Answer.answered.get(item["metadata"]["name"])
                    if answered is not None:
                        recorded.append(parse_time(s["finishedAt"]).timestamp() - answered)
        total_writes = sum(writes.values())
        label = f"{args.workflows} workflows x 3 sleeps of {args.sleep:g}s" + (
            " after an http step" if url else ""
        )
        print(f"\n{label} (created in {created:.1f}s; {failed} not Succeeded)")
        print(f"   makespan {makespan:.1f}s (the sleeps alone: {expected:g}s)")
        print(
            f"   wake-up lateness: p50 {pct(late, 0.5):.2f}s  p99 {pct(late, 0.99):.2f}s  "
            f"max {max(late):.2f}s  ({len(late)} wake-ups)"
        )
        print(
            "   by step: "
            + ", ".join(
                f"{n} p99 {pct(v, 0.99):.2f}s max {max(v):.2f}s"
                for n, v in sorted(late_by_step.items())
            )
        )
        print(
            f"   API writes: {total_writes} = {total_writes / max(transitions, 1):.2f} per step "
            f"transition ({transitions} transitions); {dict(writes)}"
        )
        rate = transitions / makespan
        print(
            f"   operator: {cpu:.1f} CPU-seconds, peak RSS {rss:.0f} MiB; "
            f"{transitions / max(cpu, 1e-9):.0f} transitions per CPU-second"
        )
        busiest = sorted(per_second.values(), reverse=True)
        top = busiest[: max(1, len(busiest) // 10)]  # the busiest tenth of the seconds
        print(
            f"   transitions/s: busiest second {busiest[0]}, mean of the busiest tenth "
            f"{statistics.mean(top):.0f}, over the makespan {rate:.0f}; raw ceiling (a) "
            f"{raw:.0f} writes/s; busiest-tenth / raw = {statistics.mean(top) / raw:.2f}"
        )
        if samples:
            slots = [a for a, _ in samples]
            depth = [b for _, b in samples]
            print(
                f"   reconcile concurrency: min {min(slots):.0f} median "
                f"{statistics.median(slots):.0f} max {max(slots):.0f}; queue depth: median "
                f"{statistics.median(depth):.0f} max {max(depth):.0f}"
            )
        if recorded:
            print(
                f"   http result recorded after the action returned: p50 "
                f"{statistics.median(recorded):.3f}s  p99 {pct(recorded, 0.99):.3f}s"
            )
    finally:
        operator.terminate()
        try:
            operator.wait(timeout=60)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()


async def main_async(args: argparse.Namespace) -> None:
    bins = ensure_binaries()
    plane = LocalControlPlane(bins)
    plane.start()
    server = None
    try:
        subprocess.run(
            [
                str(bins.kubectl),
                "--kubeconfig",
                str(plane.kubeconfig),
                "apply",
                "-f",
                str(ROOT / "crds"),
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                str(bins.kubectl),
                "--kubeconfig",
                str(plane.kubeconfig),
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
            ],
            check=True,
            capture_output=True,
        )
        configuration = client.Configuration()
        await config.load_kube_config(
            config_file=str(plane.kubeconfig), client_configuration=configuration
        )
        configuration.connection_pool_maxsize = max(128, args.raw_inflight * 2)
        async with client.ApiClient(configuration) as api_client:
            api = client.CustomObjectsApi(api_client)
            subprocess.run(
                [
                    str(bins.kubectl),
                    "--kubeconfig",
                    str(plane.kubeconfig),
                    "create",
                    "namespace",
                    "raw",
                ],
                check=True,
                capture_output=True,
            )
            raw_names = [f"raw-{i}" for i in range(500)]
            await create_all(api, "raw", [manifest(n, 1, None) for n in raw_names])
            raw = await raw_ceiling(api, "raw", raw_names, args.raw_inflight, 15)
            print(f"(a) raw ceiling: {raw:.0f} status writes/s with {args.raw_inflight} in flight")
            url = None
            if args.http:
                server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
                threading.Thread(target=server.serve_forever, daemon=True).start()
                url = f"http://127.0.0.1:{server.server_address[1]}"
            await run_case(args, plane, api, "bench", url, raw)
    finally:
        if server is not None:
            server.shutdown()
        plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--sleep", type=float, default=60)
    parser.add_argument("--http", action="store_true", help="an http step before the sleeps")
    parser.add_argument("--raw-inflight", type=int, default=64)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the operator")
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    main()
