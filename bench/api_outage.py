"""Failed API writes while kube-apiserver is down: fixed-interval retries against backoff.

While the API server is away, every workflow that has something to record fails its status
write and retries. With a fixed interval (what the operator did before: every 2 s) the
failed-write rate grows with the number of workflows and stays flat for the whole outage;
with per-workflow exponential backoff and jitter (the default) it falls as the outage goes
on. This prints, for both, the operator's failed writes per second in each window of the
outage (from its own ``cerebelum_api_requests_total{code="error"}``, scraped from its
metrics endpoint, which needs no API server), and checks the workflows carry on after.

Prints figures, never pass/fail.

Run: .venv/bin/python bench/api_outage.py [--workflows 1000] [--outage 60] [--window 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from cerebelum.devcluster import LocalControlPlane, ensure_binaries
from cerebelum.kube.command import operator_argv

ROOT = Path(__file__).resolve().parents[1]
_ERRORS = re.compile(
    r'^cerebelum_api_requests_total\{(?P<labels>[^}]*code="error"[^}]*)\} (?P<value>[0-9.e+]+)$'
)
#: (label, environment): the old behaviour is a fixed 2 s retry, i.e. base == cap == 2 s.
MODES: tuple[tuple[str, dict[str, str]], ...] = (
    (
        "fixed 2s retry (before)",
        {"CEREBELUM_RETRY_BASE_SECONDS": "2", "CEREBELUM_RETRY_MAX_SECONDS": "2"},
    ),
    ("backoff 0.5s..60s + jitter (now)", {}),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def failed_writes(port: int) -> dict[str, float]:
    """The operator's failed API requests so far, by verb and resource."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _ERRORS.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
            out[f"{labels['verb']} {labels['resource']}"] = float(match.group("value"))
    return out


def total(counts: dict[str, float]) -> float:
    return sum(counts.values())


def kubectl(bin_: Path, kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [str(bin_), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def workflows(count: int) -> str:
    """Workflows that poll forever (a no-op checked every second): each has a status write
    due every second, as a busy cluster's workflows do."""
    items = [
        {
            "apiVersion": "cerebelum.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": f"wf-{i:05d}"},
            "spec": {
                "steps": [
                    {
                        "name": "watch",
                        "noop": {"with": {"i": i}},
                        "poll": {"until": "false", "interval": "1s", "maxAttempts": 100000},
                    }
                ]
            },
        }
        for i in range(count)
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def attempts_sum(bin_: Path, kubeconfig: Path, namespace: str) -> tuple[int, int]:
    """(workflows polling, poll attempts recorded in status, summed)."""
    items = json.loads(kubectl(bin_, kubeconfig, "-n", namespace, "get", "workflows", "-o", "json"))
    polling = attempts = 0
    for item in items["items"]:
        step = (item.get("status") or {}).get("steps", {}).get("watch", {})
        polling += step.get("phase") == "Polling"
        attempts += int(step.get("attempts", 0))
    return polling, attempts


def run_mode(
    label: str,
    env: dict[str, str],
    args: argparse.Namespace,
    plane: LocalControlPlane,
    kubectl_bin: Path,
    namespace: str,
) -> None:
    kc = plane.kubeconfig
    kubectl(kubectl_bin, kc, "create", "namespace", namespace)
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="cerebelum-bench-")) / "operator.log"
    with log.open("wb") as out:
        operator = subprocess.Popen(
            operator_argv(namespace),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "KUBECONFIG": str(kc),
                "CEREBELUM_METRICS_PORT": str(port),
                **env,
            },
        )
    try:
        deadline = time.monotonic() + 30
        while "cerebelum operator started" not in log.read_text():
            if time.monotonic() > deadline or operator.poll() is not None:
                raise SystemExit(f"operator did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        kubectl(
            kubectl_bin, kc, "-n", namespace, "apply", "-f", "-", stdin=workflows(args.workflows)
        )
        deadline = time.monotonic() + 300
        while attempts_sum(kubectl_bin, kc, namespace)[0] < args.workflows:
            if time.monotonic() > deadline:
                raise SystemExit("workflows did not all start polling")
            time.sleep(1)
        time.sleep(3)  # steady state
        before_outage = attempts_sum(kubectl_bin, kc, namespace)[1]
        print(f"\n{label}: {args.workflows} workflows polling every 1s; API down {args.outage}s")
        plane.kill_apiserver()
        started = time.monotonic()
        last = total(failed_writes(port))
        first = last
        windows: list[float] = []
        while time.monotonic() - started < args.outage:
            time.sleep(min(args.window, args.outage - (time.monotonic() - started)))
            now = total(failed_writes(port))
            windows.append(now - last)
            last = now
        by_kind = failed_writes(port)
        plane.start_apiserver()
        down = time.monotonic() - started
        rates = " ".join(f"{n / args.window:.0f}" for n in windows)
        print(f"   failed writes/s per {args.window:.0f}s window: {rates}")
        print(
            f"   failed writes in the outage: {last - first:.0f} = {(last - first) / down:.1f}/s "
            f"({(last - first) / down / args.workflows:.3f}/s per workflow); by kind: "
            + ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_kind.items()))
        )
        time.sleep(args.recover)
        polling, after = attempts_sum(kubectl_bin, kc, namespace)
        alive = operator.poll() is None
        print(
            f"   {args.recover:.0f}s after the API returned: operator alive={alive}, "
            f"{polling}/{args.workflows} still polling, poll attempts recorded "
            f"{before_outage} -> {after}"
        )
    finally:
        operator.terminate()
        try:
            operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()
    kubectl(kubectl_bin, kc, "delete", "namespace", namespace, "--wait=false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--outage", type=float, default=60, help="seconds the API is down")
    parser.add_argument("--window", type=float, default=10, help="seconds per printed rate")
    parser.add_argument("--recover", type=float, default=20, help="seconds to watch after")
    args = parser.parse_args()
    bins = ensure_binaries()
    plane = LocalControlPlane(bins)
    plane.start()
    try:
        kc = plane.kubeconfig
        kubectl(bins.kubectl, kc, "apply", "-f", str(ROOT / "crds"))
        kubectl(bins.kubectl, kc, "wait", "--for=condition=Established", "crd", "--all")
        for index, (label, env) in enumerate(MODES):
            run_mode(label, env, args, plane, bins.kubectl, f"outage-{index}")
    finally:
        plane.stop()


if __name__ == "__main__":
    main()
