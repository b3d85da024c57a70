"""Restart at scale: SIGKILL the operator with many workflows waiting, start it again.

Prints figures, never pass/fail. On one local control plane: ``--workflows`` workflows each
sleep ``--long`` (3 h: none may wake), and ``--due`` more sleep until a moment inside an
outage of ``--outage`` seconds. Once all sleep, the operator is killed (SIGKILL, by PID),
the due moment passes, and a new operator starts. It reports:

- how long after the restart (the new process started) every workflow was scheduled again
  (the operator's ``cerebelum_wakeups_scheduled`` gauge, polled every 0.1 s, holding the
  long sleepers, and the due ones finished);
- how long after the restart the due ones finished (p50 and max, from status) and how late
  that was for them;
- the restarted operator's peak RSS against the killed one's steady-state RSS, and its CPU;
- whether any workflow was lost (not in status as expected) or woke early.

The due ones are named to sort among the others, spread to the end of the list (the
initial list is in name order), so the last of them comes in its last page. The operator
runs with its wake-up hint (``kube.wakehint``) unless ``--no-hint``.

Run: .venv/bin/python bench/restart.py [--workflows 10000 --due 100 --outage 10 --no-hint]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import datetime
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

import cerebelum
from cerebelum.api.durations import format_time, parse_time
from cerebelum.devcluster import LocalControlPlane, ensure_binaries
from cerebelum.kube.command import operator_argv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wakeups import free_port, install, list_all, pct, peak_rss_mib, proc_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "cerebelum.io", "v1alpha1", "workflows"
NS = "restart"


def manifest(name: str, sleep: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        # The due ones are listed by label while the restart is measured: a list of all
        # 10,100 every 0.1 s would be measured as the operator's slowness.
        "metadata": {"name": name, "labels": {"bench": "due" if name.endswith("-due") else "long"}},
        "spec": {"steps": [{"name": "nap", "sleep": sleep}]},
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scheduled(port: int) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read()
    except OSError:
        return None
    for line in text.decode().splitlines():
        if line.startswith("cerebelum_wakeups_scheduled "):
            return float(line.split()[1])
    return None


class Operator:
    def __init__(self, kubeconfig: Path, hint: bool) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkdtemp(prefix="cerebelum-restart-")) / "operator.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "CEREBELUM_METRICS_PORT": str(self.port),
            "CEREBELUM_WAKE_HINT": "true" if hint else "false",
        }
        self.started = time.time()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                operator_argv(NS), stdout=out, stderr=subprocess.STDOUT, env=env
            )

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


async def count_phases(api: client.CustomObjectsApi) -> dict[str, int]:
    phases: dict[str, int] = {}
    for item in await list_all(api, NS):
        phase = (item.get("status") or {}).get("phase", "none")
        phases[phase] = phases.get(phase, 0) + 1
    return phases


async def main_async(args: argparse.Namespace) -> None:
    # The image's `pip install` compiles the package to bytecode; an editable checkout with
    # PYTHONDONTWRITEBYTECODE set would compile it again on every start, and this measures
    # the start.
    compileall.compile_dir(str(Path(cerebelum.__file__).parent), quiet=1)
    bins = ensure_binaries()
    plane = LocalControlPlane(bins)
    plane.start()
    operator: Operator | None = None
    try:
        configuration = await install(plane, [ROOT / "crds"])
        kubectl = [str(bins.kubectl), "--kubeconfig", str(plane.kubeconfig)]
        subprocess.run([*kubectl, "create", "ns", NS], check=True, capture_output=True)
        async with client.ApiClient(configuration) as api_client:
            api = client.CustomObjectsApi(api_client)
            operator = Operator(plane.kubeconfig, not args.no_hint)
            sem = asyncio.Semaphore(32)

            async def create(name: str, sleep: dict[str, str]) -> None:
                async with sem:
                    await api.create_namespaced_custom_object(
                        GROUP, VERSION, NS, PLURAL, manifest(name, sleep)
                    )

            async def all_sleeping(count: int) -> None:
                deadline = time.monotonic() + 900
                while (await count_phases(api)).get("Sleeping", 0) < count:
                    if time.monotonic() > deadline:
                        raise SystemExit("not every workflow started sleeping")
                    await asyncio.sleep(2)

            started = time.monotonic()
            await asyncio.gather(
                *(create(f"wf-{i:05d}", {"duration": args.long}) for i in range(args.workflows))
            )
            await all_sleeping(args.workflows)
            print(
                f"{args.workflows} sleeping {time.monotonic() - started:.0f}s after the first "
                "create",
                flush=True,
            )
            # The due ones: their moment falls in the middle of the outage to come.
            # Late enough for the wake-up hint (rewritten every 5 s) to hold them.
            kill_at = time.time() + 20
            due_at = kill_at + args.outage / 2
            until = format_time(datetime.datetime.fromtimestamp(due_at, datetime.UTC))
            # Named to sort among the long ones, spread evenly to the end of the list (a
            # list is in name order): the last due one comes in the list's last page.
            due_names = [
                f"wf-{(i + 1) * args.workflows // args.due - 1:05d}-due" for i in range(args.due)
            ]
            await asyncio.gather(*(create(name, {"until": until}) for name in due_names))
            total = args.workflows + args.due
            await all_sleeping(total)
            if time.time() > kill_at - 6:
                raise SystemExit("too slow to start the due ones before the kill")
            await asyncio.sleep(max(0.0, kill_at - time.time()))
            steady = rss_mib(operator.proc.pid)
            operator.kill()
            killed = time.time()
            await asyncio.sleep(max(0.0, killed + args.outage - time.time()))
            operator = Operator(plane.kubeconfig, not args.no_hint)
            restart = operator.started
            all_scheduled = None
            ready = None
            while time.time() < restart + 300:
                if ready is None and "cerebelum operator started" in operator.log.read_text(
                    errors="replace"
                ):
                    ready = time.time() - restart
                waiting = scheduled(operator.port)
                finished = 0
                if waiting is not None and waiting >= args.workflows:
                    due = await api.list_namespaced_custom_object(
                        GROUP, VERSION, NS, PLURAL, label_selector="bench=due"
                    )
                    finished = sum(
                        1
                        for item in due["items"]
                        if (item.get("status") or {}).get("phase") == "Succeeded"
                    )
                if finished >= args.due:
                    all_scheduled = time.time() - restart
                    break
                await asyncio.sleep(0.1)
            cpu = proc_cpu_seconds(operator.proc.pid)
            await asyncio.sleep(10)
            peak = peak_rss_mib(operator.proc.pid)
            after = rss_mib(operator.proc.pid)
            items = await list_all(api, NS)
            woke, early, lost = [], 0, 0
            for item in items:
                name = item["metadata"]["name"]
                nap = ((item.get("status") or {}).get("steps") or {}).get("nap") or {}
                if not name.endswith("-due"):
                    lost += nap.get("phase") != "Sleeping"
                    early += nap.get("finishedAt") is not None
                elif nap.get("finishedAt"):
                    woke.append(parse_time(nap["finishedAt"]).timestamp())
                    early += parse_time(nap["finishedAt"]).timestamp() < due_at
            lost += total - len(items) + (args.due - len(woke))
            after_restart = [w - restart for w in woke]
            print(
                f"\nrestart with {total} workflows waiting ({args.due} due during a {args.outage:g}s outage)"
            )
            print(
                "   every workflow scheduled again: "
                + (
                    "never (300 s)"
                    if all_scheduled is None
                    else f"{all_scheduled:.1f}s after the restart"
                )
            )
            if woke:
                print(
                    f"   the due ones finished after the restart: p50 {pct(after_restart, 0.5):.2f}s "
                    f"max {max(after_restart):.2f}s (its start-up hook ended "
                    f"{ready if ready is not None else float('nan'):.2f}s after the restart)"
                )
                late = [w - due_at for w in woke]
                print(
                    f"   their lateness: p50 {pct(late, 0.5):.2f}s max {max(late):.2f}s (the outage included)"
                )
            print(
                f"   RSS: steady state before the kill {steady:.0f} MiB; restarted peak {peak:.0f} MiB "
                f"({peak / steady:.2f}x), {after:.0f} MiB 10 s after; CPU until all scheduled {cpu:.1f}s"
            )
            print(f"   lost: {lost}; woke early: {early}")
    finally:
        if operator is not None and operator.proc.poll() is None:
            operator.kill()
        plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=10000)
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--outage", type=float, default=10)
    parser.add_argument("--long", default="3h")
    parser.add_argument(
        "--no-hint", action="store_true", help="without the wake-up hint (CEREBELUM_WAKE_HINT)"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
