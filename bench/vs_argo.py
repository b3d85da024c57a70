"""Our operator against Argo Workflows' controller, on one local control plane, in one run.

Prints figures, never pass/fail. It builds Argo's ``workflow-controller`` from its pinned Go
module once (``hack/tools/argo``, cached beside the control-plane binaries; ``make test``
never builds it), starts one kube-apiserver + etcd, measures the raw status-write ceiling,
then runs each controller in turn, alone, out of cluster, on the same workload: ``N``
workflows of three sleeps of ``--sleep`` seconds created at once (Argo: three
``suspend: {duration}`` steps). Each controller authenticates as its own user, so the API
server's audit log tells its requests apart from the benchmark's own.

For each it prints:
- makespan: the first create to the last workflow seen finished by a watch;
- first-start latency: a workflow's create returning to a watch seeing its first sleep begin;
- lateness: a sleep's end minus its due time, from status (finishedAt; Argo writes whole
  seconds, and its due time is its startedAt, also whole seconds, plus the duration) and as
  seen by a watch (the moment a watch event shows the sleep ended);
- writes per transition: the controller's writes (audit log) over the transitions, two per
  sleep (it begins, it ends), the same count for both; its reads (gets, lists, watches) by
  verb beside them, so a relist shows;
- requests while all sleep: the controller's requests per minute while every workflow
  sleeps and none is due;
- controller CPU-seconds and peak RSS; kube-apiserver + etcd CPU-seconds, in all and per
  transition, over the run (the creates and the benchmark's watch included, the same for
  both);
- cores busy (sampled twice a second from /proc): kube-apiserver + etcd, the controller and
  the whole machine, while the creates go and from the first workflow finished to the last
  (when the last wake-ups pile up), so a run where the machine is the limit says so.

``--http`` adds a run of ours with an http step first (a local endpoint): Argo's http
template runs in an agent Pod, which needs a node, so it has no peer run here.

Run: .venv/bin/python bench/vs_argo.py --workflows 5000 [--sleep 60]
     [--argo 500,1000,64 --argo 1000,2000,128,noevents] (qps,burst,workflow-workers per
     run; noevents: with Argo's nodeEvents and workflowEvents off; --argo none: ours alone)
     [--py-spy ours.txt] (profile ours; bench/hotspots.py ours.txt prints where it went)
     [--pprof] (profile kube-apiserver during each run: where its CPU went)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, watch

from cerebelum.api.durations import parse_time
from cerebelum.devcluster import LocalControlPlane, ensure_binaries
from cerebelum.devcluster.binaries import ensure, tools_dir
from cerebelum.kube.command import operator_argv

sys.path.insert(0, str(Path(__file__).resolve().parent))
import apiserver_profile
from wakeups import (
    _Answer,
    free_port,
    install,
    pct,
    peak_rss_mib,
    proc_cpu_seconds,
    raw_ceiling,
)

ROOT = Path(__file__).resolve().parents[1]
OURS = ("cerebelum.io", "v1alpha1", "workflows")
ARGO = ("argoproj.io", "v1alpha1", "workflows")
_WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def argo_crds() -> list[Path]:
    """Argo's own minimal CRDs, from the module the controller was built from."""
    module = tools_dir() / "argo"
    found = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "github.com/argoproj/argo-workflows/v3"],
        cwd=module,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return sorted((Path(found) / "manifests" / "base" / "crds" / "minimal").glob("argoproj.io_*"))


def ours_manifest(name: str, seconds: float, url: str | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    if url:
        steps.append({"name": "call", "http": {"method": "POST", "url": f"{url}/{name}"}})
    steps += [{"name": f"nap{i}", "sleep": {"duration": f"{seconds:g}s"}} for i in range(3)]
    return {
        "apiVersion": "cerebelum.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"steps": steps},
    }


def argo_manifest(name: str, seconds: float) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "steps": [[{"name": f"nap{i}", "template": "nap"}] for i in range(3)],
                },
                {"name": "nap", "suspend": {"duration": f"{seconds:g}s"}},
            ],
        },
    }


def plane_cpu_seconds(plane: LocalControlPlane) -> float:
    """CPU-seconds kube-apiserver and etcd have used since they started."""
    return sum(proc_cpu_seconds(p) for p in plane.pids)


def machine_busy_seconds() -> float:
    """CPU-seconds all cores spent on anything but idling since boot (/proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    guest = sum(ticks[8:10])  # already counted in user and nice
    return (sum(ticks) - guest - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuTrace:
    """Cumulative CPU-seconds sampled over a run: (wall time, control plane, controller,
    whole machine); ``busy`` reads the cores each kept busy between two moments."""

    samples: list[tuple[float, float, float, float]] = field(default_factory=list)

    def sample(self, plane: LocalControlPlane, pid: int) -> None:
        self.samples.append(
            (
                time.time(),
                plane_cpu_seconds(plane),
                proc_cpu_seconds(pid),
                machine_busy_seconds(),
            )
        )

    async def run(self, plane: LocalControlPlane, pid: int, every: float = 0.5) -> None:
        while True:
            try:
                self.sample(plane, pid)
            except (OSError, IndexError, ValueError):  # a process gone: the run is ending
                return
            await asyncio.sleep(every)

    def busy(self, start: float, end: float) -> tuple[float, float, float] | None:
        """Cores busy on average from the first sample at or after ``start`` to the last
        at or before ``end``: control plane, controller, machine; None under a second."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 1:
            return None
        (t0, *a), (t1, *b) = inside[0], inside[-1]
        plane, ctl, machine = ((y - x) / (t1 - t0) for x, y in zip(a, b, strict=True))
        return plane, ctl, machine


@dataclass
class Sleeps:
    """Per sleep (workflow, step): when it began and ended, in status and as first seen."""

    started: dict[tuple[str, str], float] = field(default_factory=dict)
    due: dict[tuple[str, str], float] = field(default_factory=dict)
    ended: dict[tuple[str, str], float] = field(default_factory=dict)
    seen_start: dict[tuple[str, str], float] = field(default_factory=dict)
    seen_end: dict[tuple[str, str], float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)


def observe_ours(obj: dict[str, Any], now: float, into: Sleeps) -> None:
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    for step, s in (status.get("steps") or {}).items():
        if not step.startswith("nap"):
            continue
        key = (name, step)
        if s.get("sleepUntil") and key not in into.seen_start:
            into.seen_start[key] = now
            into.due[key] = parse_time(s["sleepUntil"]).timestamp()
        if s.get("finishedAt") and key not in into.seen_end:
            into.seen_end[key] = now
            into.ended[key] = parse_time(s["finishedAt"]).timestamp()
    if status.get("phase") in ("Succeeded", "Failed") and name not in into.finished:
        into.finished[name] = now


def observe_argo(obj: dict[str, Any], now: float, into: Sleeps, seconds: float) -> None:
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    for node in (status.get("nodes") or {}).values():
        if node.get("type") != "Suspend" or not node.get("startedAt"):
            continue
        key = (name, node.get("displayName", node["id"]))
        if key not in into.seen_start:
            into.seen_start[key] = now
            # Argo's own due time: its startedAt (whole seconds) plus the duration.
            into.due[key] = parse_time(node["startedAt"]).timestamp() + seconds
        ended = node.get("phase") == "Succeeded" and node.get("finishedAt")
        if ended and key not in into.seen_end:
            into.seen_end[key] = now
            into.ended[key] = parse_time(node["finishedAt"]).timestamp()
    if status.get("phase") in ("Succeeded", "Failed", "Error") and name not in into.finished:
        into.finished[name] = now


async def watch_until(
    api: client.CustomObjectsApi,
    ns: str,
    kind: tuple[str, str, str],
    count: int,
    observe: Any,
    into: Sleeps,
) -> None:
    """Follow every change of the namespace's workflows until ``count`` have finished."""
    group, version, plural = kind
    resource_version = ""
    while len(into.finished) < count:
        if not resource_version:
            listed = await api.list_namespaced_custom_object(group, version, ns, plural)
            resource_version = listed["metadata"]["resourceVersion"]
            now = time.time()
            for item in listed["items"]:
                observe(item, now, into)
            continue
        stream = watch.Watch()
        try:
            async for event in stream.stream(
                api.list_namespaced_custom_object,
                group,
                version,
                ns,
                plural,
                resource_version=resource_version,
                timeout_seconds=300,
                allow_watch_bookmarks=True,
            ):
                if event["type"] == "ERROR":
                    resource_version = ""
                    break
                obj = event["object"]
                resource_version = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    observe(obj, time.time(), into)
                if len(into.finished) >= count:
                    break
        except client.ApiException as exc:
            if exc.status != 410:
                raise
            resource_version = ""
        finally:
            await stream.close()


def audit_since(path: Path, offset: int, user: str) -> list[tuple[float, str]]:
    """(time, verb) of each request ``user`` made, in the audit log after ``offset``."""
    out: list[tuple[float, str]] = []
    with path.open("rb") as log:
        log.seek(offset)
        for line in log:
            if user.encode() not in line:
                continue
            entry = json.loads(line)
            if entry.get("stage") != "ResponseComplete" or entry["user"]["username"] != user:
                continue
            resource = (entry.get("objectRef") or {}).get("resource", "")
            sub = (entry.get("objectRef") or {}).get("subresource")
            verb = entry["verb"] + " " + resource + (f"/{sub}" if sub else "")
            out.append((parse_time(entry["requestReceivedTimestamp"]).timestamp(), verb))
    return out


@dataclass
class Result:
    label: str
    workflows: int
    created_in: float
    makespan: float
    first_start_p50: float
    first_start_max: float
    late_status: list[float]
    late_watch: list[float]
    transitions: int
    writes: Counter[str]
    reads: Counter[str]
    sleeping_rpm: float | None
    cpu: float
    rss: float
    plane_cpu: float
    #: Seconds over which plane_cpu was measured.
    measured: float
    unfinished: int
    #: A finished workflow as the API server serves it, in bytes of JSON: whole, and the
    #: share of it that is managedFields (both are stored, and sent on every watch event).
    size: int
    managed_size: int
    #: Cores busy (control plane, controller, machine) while creating, and from the first
    #: workflow finished to the last; None where the window was under a second.
    busy_creating: tuple[float, float, float] | None = None
    busy_finishing: tuple[float, float, float] | None = None


async def run_one(
    plane: LocalControlPlane,
    api: client.CustomObjectsApi,
    args: argparse.Namespace,
    label: str,
    argo: tuple[float, int, int, bool] | None,
    url: str | None = None,
) -> Result:
    ns = label.lower().replace(" ", "-").replace(",", "-")
    subprocess.run(
        [str(ensure_binaries().kubectl), "--kubeconfig", str(plane.kubeconfig), "create", "ns", ns],
        check=True,
        capture_output=True,
    )
    user = f"bench-{ns}"
    kubeconfig = plane.kubeconfig_for_user(user, ("system:masters",))
    log_path = Path(tempfile.mkdtemp(prefix="cerebelum-vs-argo-")) / "controller.log"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    if argo is None:
        env["CEREBELUM_METRICS_PORT"] = str(free_port())
        argv = operator_argv(ns)
        ready = "cerebelum operator started"
    else:
        qps, burst, workers, events = argo
        env["LEADER_ELECTION_DISABLE"] = "true"
        settings = (
            []
            if events
            else [  # Argo's own switches for its per-node Events
                "--from-literal=nodeEvents={enabled: false}",
                "--from-literal=workflowEvents={enabled: false}",
            ]
        )
        subprocess.run(  # its defaults otherwise: it refuses to start without the ConfigMap
            [
                str(ensure_binaries().kubectl),
                "--kubeconfig",
                str(plane.kubeconfig),
                "-n",
                ns,
                "create",
                "configmap",
                "workflow-controller-configmap",
                *settings,
            ],
            check=True,
            capture_output=True,
        )
        argv = [
            str(ensure("workflow-controller")),
            f"--kubeconfig={kubeconfig}",
            "--namespaced",
            f"--managed-namespace={ns}",
            f"--namespace={ns}",
            f"--qps={qps:g}",
            f"--burst={burst}",
            f"--workflow-workers={workers}",
            "--loglevel=warn",
        ]
        ready = ""  # it logs nothing at warn level: its informers' first list is the sign
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    profiler = None
    if args.py_spy and argo is None:
        # Sampled from outside (100 Hz), so the operator runs as it would unprofiled.
        profiler = subprocess.Popen(
            [
                shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(proc.pid),
                "--rate",
                "100",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                args.py_spy,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while ready and ready not in log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{label} did not start:\n{log_path.read_text()[-3000:]}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(5)  # both: informers synced, startup CPU spent
        if proc.poll() is not None:
            raise SystemExit(f"{label} exited:\n{log_path.read_text()[-3000:]}")
        cpu0 = proc_cpu_seconds(proc.pid)
        plane0 = plane_cpu_seconds(plane)
        measured_from = time.monotonic()
        audit_offset = plane.audit_log.stat().st_size
        names = [f"wf-{i:05d}" for i in range(args.workflows)]
        kind = OURS if argo is None else ARGO
        sleeps = Sleeps()
        if argo is None:
            observer = observe_ours
        else:

            def observer(obj: dict[str, Any], now: float, into: Sleeps) -> None:
                observe_argo(obj, now, into, args.sleep)

        watcher = asyncio.create_task(watch_until(api, ns, kind, len(names), observer, sleeps))
        await asyncio.sleep(1)
        created: dict[str, float] = {}
        sem = asyncio.Semaphore(32)

        async def create(name: str) -> None:
            body = (
                ours_manifest(name, args.sleep, url)
                if argo is None
                else argo_manifest(name, args.sleep)
            )
            async with sem:
                await api.create_namespaced_custom_object(*kind[:2], ns, kind[2], body)
                created[name] = time.time()

        profiling = None
        if args.pprof:  # the whole run: creates, starts, every wake-up
            seconds = int(args.sleep * 3 + 45)
            profiling = await apiserver_profile.start(plane, seconds)
        trace = CpuTrace()
        tracer = asyncio.create_task(trace.run(plane, proc.pid))
        started = time.time()
        await asyncio.gather(*(create(n) for n in names))
        created_in = time.time() - started
        try:
            await asyncio.wait_for(watcher, timeout=args.sleep * 3 + 1800)
        except TimeoutError:
            print(f"   {label}: not all finished in time", file=sys.stderr)
        makespan = max(sleeps.finished.values(), default=time.time()) - started
        await asyncio.sleep(5)  # the last writes (and any trailing Events) land
        tracer.cancel()
        busy_creating = trace.busy(started, started + created_in)
        finishes = sorted(sleeps.finished.values())
        busy_finishing = trace.busy(finishes[0], finishes[-1]) if finishes else None
        cpu = proc_cpu_seconds(proc.pid) - cpu0
        rss = peak_rss_mib(proc.pid)
        plane_cpu = plane_cpu_seconds(plane) - plane0
        measured = time.monotonic() - measured_from
        # Read after the figures, so the benchmark's own GET is not in the API server's.
        sample = await api.get_namespaced_custom_object(*kind[:2], ns, kind[2], names[-1])
        size = len(json.dumps(sample, separators=(",", ":")))
        managed = sample.get("metadata", {}).get("managedFields") or []
        managed_size = len(json.dumps(managed, separators=(",", ":")))
        if profiling is not None:
            parts = apiserver_profile.breakdown(await profiling)
            per = plane_cpu / (2 * 3 * len(names)) * 1000
            print(
                f"   {label}: where kube-apiserver's CPU went (ms per transition of "
                f"{per:.2f} with etcd):",
                flush=True,
            )
            print(apiserver_profile.render(parts, per), flush=True)
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            profiler.wait(timeout=60)
            print(f"   py-spy's samples of ours (collapsed stacks): {args.py_spy}", flush=True)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    requests = audit_since(plane.audit_log, audit_offset, user)
    writes = Counter(verb for _, verb in requests if verb.split()[0] in _WRITES)
    reads = Counter(verb for _, verb in requests if verb.split()[0] not in _WRITES)
    by_wf: dict[str, float] = {}
    for (wf, _), seen in sleeps.seen_start.items():
        by_wf[wf] = min(seen, by_wf.get(wf, seen))
    first = [by_wf[n] - created[n] for n in names if n in by_wf and n in created]
    late_status = [sleeps.ended[k] - sleeps.due[k] for k in sleeps.ended if k in sleeps.due]
    late_watch = [sleeps.seen_end[k] - sleeps.due[k] for k in sleeps.seen_end if k in sleeps.due]
    # All sleep: every workflow has begun its first sleep and none is due yet.
    first_sleeps = [at for (_, step), at in sleeps.seen_start.items() if step == "nap0"]
    all_sleeping = max(first_sleeps, default=started) + 2
    first_due = min(sleeps.due.values(), default=started) - 2
    rpm = None
    if first_due - all_sleeping >= 5:
        quiet = sum(1 for at, _ in requests if all_sleeping <= at < first_due)
        rpm = quiet / (first_due - all_sleeping) * 60
    sleeps_per_wf = 3
    return Result(
        label=label,
        workflows=len(names),
        created_in=created_in,
        makespan=makespan,
        first_start_p50=pct(first, 0.5),
        first_start_max=max(first, default=float("nan")),
        late_status=late_status,
        late_watch=late_watch,
        transitions=2 * sleeps_per_wf * len(names),
        writes=writes,
        reads=reads,
        sleeping_rpm=rpm,
        cpu=cpu,
        rss=rss,
        plane_cpu=plane_cpu,
        measured=measured,
        unfinished=len(names) - len(sleeps.finished),
        size=size,
        managed_size=managed_size,
        busy_creating=busy_creating,
        busy_finishing=busy_finishing,
    )


async def idle_cpu(plane: LocalControlPlane, seconds: float = 30) -> float:
    """kube-apiserver + etcd CPU-seconds per second with no controller running: the share
    of each run's figure that neither controller causes."""
    before = plane_cpu_seconds(plane)
    await asyncio.sleep(seconds)
    return (plane_cpu_seconds(plane) - before) / seconds


def table(results: list[Result], raw: float, sleep: float, idle: float = 0.0) -> str:
    def late(values: list[float]) -> str:
        if not values:
            return "n/a"
        return f"{pct(values, 0.5):.2f} / {pct(values, 0.99):.2f} / {max(values):.2f}"

    def cores(busy: tuple[float, float, float] | None) -> str:
        return "n/a" if busy is None else " / ".join(f"{v:.2f}" for v in busy)

    ncpu = os.cpu_count() or 0

    rows: list[tuple[str, list[str]]] = [
        (f"makespan (ideal {3 * sleep:g} s)", [f"{r.makespan:.1f} s" for r in results]),
        ("created in", [f"{r.created_in:.1f} s" for r in results]),
        (
            "first sleep seen begun after create, p50 / max",
            [f"{r.first_start_p50:.2f} / {r.first_start_max:.2f} s" for r in results],
        ),
        ("lateness from status p50 / p99 / max (s)", [late(r.late_status) for r in results]),
        ("lateness seen by a watch p50 / p99 / max (s)", [late(r.late_watch) for r in results]),
        (
            "controller writes per transition",
            [f"{sum(r.writes.values()) / r.transitions:.2f}" for r in results],
        ),
        (
            "  its writes by verb",
            [" ".join(f"{k}:{v}" for k, v in sorted(r.writes.items())) for r in results],
        ),
        (
            "  its reads by verb (a relist of all is a list)",
            [" ".join(f"{k}:{v}" for k, v in sorted(r.reads.items())) for r in results],
        ),
        (
            "controller requests/min while all sleep",
            ["n/a" if r.sleeping_rpm is None else f"{r.sleeping_rpm:.0f}" for r in results],
        ),
        ("controller CPU-s", [f"{r.cpu:.1f}" for r in results]),
        ("controller peak RSS", [f"{r.rss:.0f} MiB" for r in results]),
        ("kube-apiserver + etcd CPU-s", [f"{r.plane_cpu:.1f}" for r in results]),
        (
            "  per transition",
            [f"{r.plane_cpu / r.transitions * 1000:.2f} ms" for r in results],
        ),
        (
            "  per transition, net of the idle control plane",
            [f"{(r.plane_cpu - idle * r.measured) / r.transitions * 1000:.2f} ms" for r in results],
        ),
        (
            f"cores busy while creating: API server + etcd / controller / machine (of {ncpu})",
            [cores(r.busy_creating) for r in results],
        ),
        (
            "  the same from the first workflow finished to the last",
            [cores(r.busy_finishing) for r in results],
        ),
        (
            "a finished workflow, bytes of JSON (of which managedFields)",
            [f"{r.size} ({r.managed_size})" for r in results],
        ),
        ("not finished", [str(r.unfinished) for r in results]),
    ]
    header = "| " + " | ".join(["", *(r.label for r in results)]) + " |"
    lines = [header, "|" + "---|" * (len(results) + 1)]
    lines += ["| " + " | ".join([name, *cells]) + " |" for name, cells in rows]
    lines.append(f"\nraw ceiling of this run: {raw:.0f} status writes/s (64 in flight)")
    lines.append(f"idle kube-apiserver + etcd: {idle * 60:.1f} CPU-s per minute")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    if shutil.which("go") is None and not os.environ.get("CEREBELUM_ARGO_CONTROLLER"):
        raise SystemExit("bench/vs_argo.py builds Argo's controller with Go: install Go")
    ensure("workflow-controller")
    bins = ensure_binaries()
    # The audit log is how each controller's requests are told apart: never rotated here
    # (the API server's default rotates it at 100 MB, mid-run at 5,000 workflows).
    extra: tuple[str, ...] = ("--audit-log-maxsize=100000",)
    if args.pprof:
        extra += apiserver_profile.PROFILING_ARGS
    plane = LocalControlPlane(bins, extra_apiserver_args=extra)
    plane.start()
    server = None
    try:
        configuration = await install(plane, [ROOT / "crds", *argo_crds()], pool=128)
        async with client.ApiClient(configuration) as api_client:
            api = client.CustomObjectsApi(api_client)
            subprocess.run(
                [str(bins.kubectl), "--kubeconfig", str(plane.kubeconfig), "create", "ns", "raw"],
                check=True,
                capture_output=True,
            )
            raw_names = [f"raw-{i}" for i in range(500)]
            sem = asyncio.Semaphore(32)

            async def create_raw(name: str) -> None:
                async with sem:
                    await api.create_namespaced_custom_object(
                        *OURS[:2], "raw", OURS[2], ours_manifest(name, 1, None)
                    )

            await asyncio.gather(*(create_raw(n) for n in raw_names))
            raw = await raw_ceiling(api, "raw", raw_names, 64, 15)
            print(f"raw ceiling: {raw:.0f} status writes/s", flush=True)
            idle = await idle_cpu(plane)
            print(f"idle control plane: {idle * 60:.1f} CPU-s per minute", flush=True)
            results = []
            runs: list[tuple[str, tuple[float, int, int, bool] | None]] = [("ours", None)]
            for spec in args.argo:
                if spec == "none":
                    continue
                qps, burst, workers, *rest = spec.split(",")
                events = rest != ["noevents"]
                runs.append((f"Argo {spec}", (float(qps), int(burst), int(workers), events)))
            for label, argo in runs:
                print(f"running {label} ...", flush=True)
                result = await run_one(plane, api, args, label, argo)
                results.append(result)
                print(table([result], raw, args.sleep, idle), flush=True)
            if args.http:
                server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
                threading.Thread(target=server.serve_forever, daemon=True).start()
                url = f"http://127.0.0.1:{server.server_address[1]}"
                print("running ours with an http step first ...", flush=True)
                results.append(await run_one(plane, api, args, "ours http", None, url))
            print(
                f"\n{args.workflows} workflows x 3 sleeps of {args.sleep:g} s, "
                f"one control plane, one controller at a time\n"
            )
            print(table(results, raw, args.sleep, idle))
    finally:
        if server is not None:
            server.shutdown()
        plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--sleep", type=float, default=60)
    parser.add_argument(
        "--argo",
        action="append",
        help="qps,burst,workflow-workers[,noevents] of one Argo run (repeatable; noevents "
        "turns its node and workflow Events off; none: ours alone)",
    )
    parser.add_argument("--http", action="store_true", help="also ours with an http step")
    parser.add_argument(
        "--pprof",
        action="store_true",
        help="profile kube-apiserver during each run and print where its CPU went (Go)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="profile our operator with py-spy (pip install py-spy) into FILE, as collapsed "
        "stacks; print the hot spots with bench/hotspots.py FILE",
    )
    args = parser.parse_args()
    args.argo = args.argo or ["500,1000,64", "1000,2000,128"]
    asyncio.run(main_async(args))


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    main()
