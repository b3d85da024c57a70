"""Engine throughput and idle cost, through the real operator and a real API server.

Prints figures, never pass/fail:
1. N workflows of K no-op steps: step transitions per second; API write requests per
   transition (from the API server's own apiserver_request_total); and, in the same run,
   the rate at which a plain client patches the status of the same objects, with the ratio.
2. S workflows that sleep: operator memory (RSS) and API requests during an idle window.

Run: .venv/bin/python bench/engine_throughput.py [--workflows 200] [--steps 5] [--sleepers 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from kubernetes_asyncio import client, config

from cerebelum.devcluster import LocalControlPlane, ensure_binaries
from cerebelum.kube.command import operator_argv

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "cerebelum.io", "v1alpha1", "workflows"
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")


def request_counts(kubectl: Path, kubeconfig: Path) -> Counter[tuple[str, str, str]]:
    """apiserver_request_total summed by (verb, resource, subresource)."""
    text = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "get", "--raw", "/metrics"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts: Counter[tuple[str, str, str]] = Counter()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
            key = (
                labels.get("verb", ""),
                labels.get("resource", ""),
                labels.get("subresource", ""),
            )
            counts[key] += int(float(match.group("value")))
    return counts


def writes(delta: Counter[tuple[str, str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (verb, resource, sub), n in delta.items():
        if verb in ("POST", "PUT", "PATCH", "DELETE", "APPLY") and n > 0:
            out[f"{verb} {resource}{'/' + sub if sub else ''}"] += n
    return out


def workflow(name: str, steps: list[dict[str, object]]) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"steps": steps},
    }


async def create_all(
    api: client.CustomObjectsApi, namespace: str, bodies: list[dict[str, object]]
) -> None:
    sem = asyncio.Semaphore(16)

    async def one(body: dict[str, object]) -> None:
        async with sem:
            await api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    await asyncio.gather(*(one(b) for b in bodies))


async def wait_phase(
    api: client.CustomObjectsApi, namespace: str, phase: str, count: int, timeout: float
) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        items = (await api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL))[
            "items"
        ]
        if sum(1 for i in items if i.get("status", {}).get("phase") == phase) >= count:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise SystemExit(f"timed out waiting for {count} workflows to be {phase}")


async def raw_status_patches(
    api: client.CustomObjectsApi, namespace: str, names: list[str], per: int
) -> float:
    """Patches per second a plain client achieves on the same objects' status."""
    sem = asyncio.Semaphore(8)

    async def patch(name: str, i: int) -> None:
        async with sem:
            await api.patch_namespaced_custom_object_status(  # type: ignore[call-arg]
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": {"message": f"raw {i}"}},
                _content_type="application/merge-patch+json",
            )

    started = time.monotonic()
    await asyncio.gather(*(patch(n, i) for n in names for i in range(per)))
    return len(names) * per / (time.monotonic() - started)


async def idle_requests(kubectl: Path, kubeconfig: Path, seconds: float) -> Counter[str]:
    """Requests the API server served during ``seconds`` of quiet, by verb and resource."""
    before = request_counts(kubectl, kubeconfig)
    await asyncio.sleep(seconds)
    delta = request_counts(kubectl, kubeconfig)
    delta.subtract(before)
    out: Counter[str] = Counter()
    for (verb, resource, sub), n in delta.items():
        if n > 0 and resource:  # resource "" is this benchmark's own /metrics reads
            out[f"{verb} {resource}{'/' + sub if sub else ''}"] += n
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(args: argparse.Namespace, cp: LocalControlPlane, kubectl: Path) -> None:
    kube = ["--kubeconfig", str(cp.kubeconfig)]
    subprocess.run(
        [str(kubectl), *kube, "apply", "-f", str(ROOT / "crds")], check=True, capture_output=True
    )
    subprocess.run(
        [str(kubectl), *kube, "wait", "--for=condition=Established", "crd", "--all"],
        check=True,
        capture_output=True,
    )
    for ns in ("bench", "sleepers"):
        subprocess.run(
            [str(kubectl), *kube, "create", "namespace", ns], check=True, capture_output=True
        )
    # The API server's own controllers (leases, endpoints) make requests too: measure them
    # without the operator, to tell what the operator adds while workflows sleep.
    baseline = await idle_requests(kubectl, cp.kubeconfig, args.idle)
    await config.load_kube_config(config_file=str(cp.kubeconfig))
    async with client.ApiClient() as api_client:
        api = client.CustomObjectsApi(api_client)
        log = Path(tempfile.mkdtemp(prefix="cerebelum-bench-")) / "operator.log"
        with log.open("wb") as out:
            operator = subprocess.Popen(
                operator_argv(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "KUBECONFIG": str(cp.kubeconfig)},
            )
        try:
            await asyncio.sleep(3)
            steps: list[dict[str, object]] = [
                {"name": f"s{i}", "noop": {"with": {"i": i}}} for i in range(args.steps)
            ]
            names = [f"wf-{i}" for i in range(args.workflows)]
            before = request_counts(kubectl, cp.kubeconfig)
            started = time.monotonic()
            await create_all(api, "bench", [workflow(n, steps) for n in names])
            await wait_phase(api, "bench", "Succeeded", len(names), timeout=600)
            elapsed = time.monotonic() - started
            delta = request_counts(kubectl, cp.kubeconfig)
            delta.subtract(before)
            by_kind = writes(delta)
            by_kind.pop("POST workflows", None)  # the benchmark's own creates
            transitions = args.workflows * args.steps
            operator_writes = sum(by_kind.values())
            rate = transitions / elapsed
            raw = await raw_status_patches(
                api, "bench", names, per=max(1, transitions // len(names))
            )
            print(
                f"1. {args.workflows} workflows x {args.steps} no-op steps = {transitions} step transitions"
            )
            print(f"   operator: {rate:.0f} transitions/s ({elapsed:.1f}s including creation)")
            print(
                f"   API writes by the operator: {operator_writes} = {operator_writes / transitions:.2f} per "
                f"transition; by kind: {dict(by_kind)}"
            )
            status_writes = by_kind.get("PUT workflows/status", 0)
            print(f"   status writes only: {status_writes / transitions:.2f} per transition")
            print(
                f"   plain client status patches: {raw:.0f}/s; operator transitions / raw patches = "
                f"{rate / raw:.2f}"
            )

            sleepers = [
                workflow(f"sleep-{i}", [{"name": "nap", "sleep": {"duration": "1h"}}])
                for i in range(args.sleepers)
            ]
            await create_all(api, "sleepers", sleepers)
            await wait_phase(api, "sleepers", "Sleeping", args.sleepers, timeout=600)
            await asyncio.sleep(2)
            idle = await idle_requests(kubectl, cp.kubeconfig, args.idle)
            print(
                f"2. {args.sleepers} sleeping workflows: operator RSS {rss_mib(operator.pid):.0f} MiB"
            )
            print(f"   API requests in {args.idle:.0f}s idle: {sum(idle.values())} {dict(idle)}")
            print(f"   same window without the operator: {sum(baseline.values())} {dict(baseline)}")
            print(f"   added by the operator: {sum(idle.values()) - sum(baseline.values())}")
        finally:
            operator.terminate()
            operator.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sleepers", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=30.0, help="idle window in seconds")
    args = parser.parse_args()
    binaries = ensure_binaries()
    with LocalControlPlane(binaries) as cp:
        asyncio.run(run(args, cp, binaries.kubectl))


if __name__ == "__main__":
    main()
