"""What one Workflow status write costs the API server and etcd, and what makes it cost.

Prints figures, never pass/fail. On one local control plane it takes the status the operator
really wrote for a workflow of three sleeps, then, for each variant below, makes ``--writes``
status writes (``--inflight`` at a time) to ``--objects`` such workflows and reports the
kube-apiserver + etcd CPU-milliseconds per write, the API server's own mean request duration
(``apiserver_request_duration_seconds``), the stored object's size and etcd's DB size:

- ``as-is``: the CRD as ``crds/`` has it, a PUT of the whole status (what the operator does);
- ``merge-patch``: the same object, a JSON merge patch of the fields that changed;
- ``apply``: server-side apply of the whole status;
- ``put-no-spec``: the PUT without the spec (the API server keeps the stored one anyway);
- ``no-spec-cel``: the spec's CEL rules removed (they are evaluated on status writes too);
- ``lean-status``: status as ``x-kubernetes-preserve-unknown-fields`` below its top level;
- ``no-history``: the status without its ``history`` list;
- ``opaque-spec``, ``opaque-status``, ``opaque-both``: that part (or both) as
  ``x-kubernetes-preserve-unknown-fields`` with no schema and no CEL, as Argo's CRDs are;
- ``atomic-status``, ``atomic-both``, ``lean-atomic``: that part marked
  ``x-kubernetes-map-type: atomic`` (one field for server-side apply's field tracking);
  ``lean-atomic``: the lean status, atomic;
- ``cel-unchanged``: each spec rule wrapped to pass at once on an unchanged value
  (``optionalOldSelf``); ``best``: that, with the lean atomic status and an atomic spec;
- ``candidate``: no spec CEL rules, the lean atomic status, and a PUT without the spec;
  ``candidate-typed``: the same with the status's schema whole.

The CRD applied for ``as-is`` is ``crds/`` as generated (so after a change to the
generator, ``as-is`` measures the new one).

With ``--profile SECONDS`` it also profiles kube-apiserver during each variant's writes and
prints the share of its CPU under each part of a write (``bench/apiserver_profile.py``).

Run: .venv/bin/python bench/status_cost.py [--objects 300 --writes 3000 --inflight 32]
     [--variants as-is no-spec-cel] [--profile 10]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client, config

from cerebelum.devcluster import LocalControlPlane, ensure_binaries
from cerebelum.kube.command import operator_argv

sys.path.insert(0, str(Path(__file__).resolve().parent))
import apiserver_profile
from wakeups import proc_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "cerebelum.io", "v1alpha1", "workflows"
CRD = ROOT / "crds" / "workflows.cerebelum.io.yaml"


def kubectl(plane: LocalControlPlane, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(ensure_binaries().kubectl), "--kubeconfig", str(plane.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


_DURATION = re.compile(
    r"^apiserver_request_duration_seconds_(sum|count)\{(?P<labels>[^}]*)\} (?P<value>\S+)$"
)


def put_status_duration(plane: LocalControlPlane) -> tuple[float, float]:
    """(sum of seconds, count) of the API server's status writes to workflows so far."""
    total, count = 0.0, 0.0
    for line in kubectl(plane, "get", "--raw", "/metrics").splitlines():
        match = _DURATION.match(line)
        if not match:
            continue
        labels = match.group("labels")
        if 'resource="workflows"' in labels and 'subresource="status"' in labels:
            if line.startswith("apiserver_request_duration_seconds_sum"):
                total += float(match.group("value"))
            else:
                count += float(match.group("value"))
    return total, count


def etcd_db_size(plane: LocalControlPlane) -> int:
    for line in kubectl(plane, "get", "--raw", "/metrics").splitlines():
        if line.startswith("apiserver_storage_size_bytes"):
            return int(float(line.split()[-1]))
    return 0


def crd_variant(name: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    if name in ("no-spec-cel", "candidate", "candidate-typed"):

        def strip(node: Any) -> None:
            if isinstance(node, dict):
                node.pop("x-kubernetes-validations", None)
                for value in node.values():
                    strip(value)
            elif isinstance(node, list):
                for value in node:
                    strip(value)

        strip(schema["properties"]["spec"])
    if name in ("cel-unchanged", "best"):
        skip_unchanged_rules(schema["properties"]["spec"])
    if name == "best":
        schema["properties"]["spec"]["x-kubernetes-map-type"] = "atomic"
    if name in ("lean-status", "lean-atomic", "best", "candidate"):
        status = schema["properties"]["status"]
        for prop in status.get("properties", {}).values():
            opaque = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            if prop.get("type") == "object":
                for key in ("properties", "additionalProperties", "required"):
                    prop.pop(key, None)
                prop.update(opaque)
            elif prop.get("type") == "array" and prop["items"].get("type") == "object":
                prop["items"] = opaque
    if name in ("opaque-spec", "opaque-both"):
        schema["properties"]["spec"] = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }
    if name in ("opaque-status", "opaque-both"):
        schema["properties"]["status"] = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"phase": {"type": "string"}},
        }
    if name.startswith("atomic-") or name.endswith("-atomic") or name.startswith(("best", "cand")):
        schema["properties"]["status"]["x-kubernetes-map-type"] = "atomic"
    if name == "atomic-both":
        schema["properties"]["spec"]["x-kubernetes-map-type"] = "atomic"
    schema.pop("x-kubernetes-validations", None) if name.startswith("opaque-") else None
    return crd


def skip_unchanged_rules(node: dict[str, Any], correlatable: bool = True) -> None:
    """Make each CEL rule where an old value can be correlated pass at once when its value
    is unchanged (a status write leaves the spec as it was)."""
    if correlatable:
        for rule in node.get("x-kubernetes-validations", []):
            rule["rule"] = f"(oldSelf.hasValue() && oldSelf.value() == self) || ({rule['rule']})"
            rule["optionalOldSelf"] = True
    for child in (node.get("properties") or {}).values():
        skip_unchanged_rules(child, correlatable)
    if isinstance(node.get("additionalProperties"), dict):
        skip_unchanged_rules(node["additionalProperties"], correlatable)
    if isinstance(node.get("items"), dict):
        keyed = node.get("x-kubernetes-list-type") == "map"
        skip_unchanged_rules(node["items"], correlatable and keyed)


async def sample_status(plane: LocalControlPlane, api: client.CustomObjectsApi) -> dict[str, Any]:
    """The status the operator writes for three 1 s sleeps, read back when it Succeeded."""
    kubectl(plane, "create", "namespace", "sample")
    log = Path(tempfile.mkdtemp(prefix="cerebelum-bench-")) / "operator.log"
    with log.open("wb") as out:
        operator = subprocess.Popen(
            operator_argv("sample"),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
        )
    try:
        steps = [{"name": f"nap{i}", "sleep": {"duration": "1s"}} for i in range(3)]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Workflow",
            "metadata": {"name": "sample"},
            "spec": {"steps": steps},
        }
        await api.create_namespaced_custom_object(GROUP, VERSION, "sample", PLURAL, body)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = await api.get_namespaced_custom_object(GROUP, VERSION, "sample", PLURAL, "sample")
            if (got.get("status") or {}).get("phase") == "Succeeded":
                return {"spec": got["spec"], "status": got["status"]}
            await asyncio.sleep(0.5)
        raise SystemExit(f"the sample workflow did not succeed:\n{log.read_text()[-2000:]}")
    finally:
        operator.terminate()
        operator.wait(timeout=30)


#: How many times each variant has run (its namespace is named after the count).
_RUNS: dict[str, int] = {}

Writer = Callable[[client.CustomObjectsApi, str, str, dict[str, Any], int], Any]


#: The last body written per object: a PUT carries its resourceVersion, as the operator's
#: does (it writes from its cache, never reading first).
_LAST: dict[tuple[str, str], dict[str, Any]] = {}


async def write_put(api: Any, ns: str, name: str, status: dict[str, Any], i: int) -> None:
    body = _LAST.get((ns, name)) or await api.get_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name
    )
    body = {**body, "status": {**status, "message": f"write {i}"}}
    if ns.startswith(
        ("v-put-no-spec-", "v-candidate-")
    ):  # the API server keeps the stored spec on a status write
        body.pop("spec", None)
    body["metadata"] = {k: body["metadata"][k] for k in ("name", "namespace", "resourceVersion")}
    _LAST[(ns, name)] = await api.replace_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, name, body
    )


async def write_merge(api: Any, ns: str, name: str, status: dict[str, Any], i: int) -> None:
    await api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        ns,
        PLURAL,
        name,
        {"status": {"message": f"write {i}"}},
        _content_type="application/merge-patch+json",
    )


async def write_apply(api: Any, ns: str, name: str, status: dict[str, Any], i: int) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": ns},
        "status": {**status, "message": f"write {i}"},
    }
    await api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        ns,
        PLURAL,
        name,
        body,
        field_manager="bench",
        force=True,
        _content_type="application/apply-patch+yaml",
    )


async def run_variant(
    plane: LocalControlPlane,
    api: client.CustomObjectsApi,
    args: argparse.Namespace,
    variant: str,
    sample: dict[str, Any],
) -> None:
    same_crd = ("merge-patch", "apply", "no-history", "put-no-spec")
    crd = crd_variant("as-is" if variant in same_crd else variant)
    kubectl(plane, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(crd))
    kubectl(plane, "wait", "--for=condition=Established", "crd/workflows.cerebelum.io")
    await asyncio.sleep(3)  # the API servers' handlers pick the new schema up
    _RUNS[variant] = _RUNS.get(variant, 0) + 1
    ns = f"v-{variant}-{_RUNS[variant]}"  # a variant may run more than once
    kubectl(plane, "create", "namespace", ns)
    status = copy.deepcopy(sample["status"])
    if variant == "no-history":
        status.pop("history", None)
    names = [f"wf-{i:04d}" for i in range(args.objects)]
    sem = asyncio.Semaphore(args.inflight)

    async def create(name: str) -> None:
        async with sem:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Workflow",
                "metadata": {"name": name},
                "spec": sample["spec"],
            }
            await api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    async def first_write(name: str) -> None:
        async with sem:
            await write_put(api, ns, name, status, 0)

    pids = plane.pids
    cpu0 = sum(proc_cpu_seconds(p) for p in pids)
    await asyncio.gather(*(create(n) for n in names))
    create_ms = (sum(proc_cpu_seconds(p) for p in pids) - cpu0) / len(names) * 1000
    await asyncio.gather(*(first_write(n) for n in names))
    writer: Writer = {"merge-patch": write_merge, "apply": write_apply}.get(variant, write_put)
    cpu0 = sum(proc_cpu_seconds(p) for p in pids)
    api_cpu0 = proc_cpu_seconds(plane.pid("kube-apiserver"))
    dur0 = put_status_duration(plane)
    profiling = await apiserver_profile.start(plane, args.profile) if args.profile else None
    started = time.monotonic()

    async def one(i: int) -> None:
        async with sem:
            await writer(api, ns, names[i % len(names)], status, i + 1)

    await asyncio.gather(*(one(i) for i in range(args.writes)))
    elapsed = time.monotonic() - started
    cpu = sum(proc_cpu_seconds(p) for p in pids) - cpu0
    api_cpu = proc_cpu_seconds(plane.pid("kube-apiserver")) - api_cpu0
    dur1 = put_status_duration(plane)
    mean_ms = (dur1[0] - dur0[0]) / max(dur1[1] - dur0[1], 1) * 1000
    stored = await api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, names[0])
    size = len(json.dumps(stored, separators=(",", ":")))
    managed = len(json.dumps(stored["metadata"].get("managedFields", []), separators=(",", ":")))
    print(
        f"{variant:12} {cpu / args.writes * 1000:7.2f} CPU-ms/write  "
        f"{mean_ms:6.2f} ms/request  {args.writes / elapsed:6.0f} writes/s  "
        f"create {create_ms:5.2f} CPU-ms  "
        f"object {size / 1024:5.1f} KiB (managedFields {managed / 1024:4.1f} KiB)  "
        f"etcd DB {etcd_db_size(plane) / 2**20:6.1f} MiB"
    )
    if profiling is not None:
        if elapsed < args.profile:
            print(f"    (the writes took {elapsed:.1f} s, less than the profile: raise --writes)")
        parts = apiserver_profile.breakdown(await profiling)
        print(
            f"    kube-apiserver alone: {api_cpu / args.writes * 1000:.2f} CPU-ms/write; its profile:"
        )
        print(apiserver_profile.render(parts, api_cpu / args.writes * 1000))
    kubectl(plane, "delete", "namespace", ns, "--wait=false")


async def main_async(args: argparse.Namespace) -> None:
    extra = apiserver_profile.PROFILING_ARGS if args.profile else ()
    plane = LocalControlPlane(ensure_binaries(), extra_apiserver_args=extra)
    plane.start()
    try:
        kubectl(plane, "apply", "--server-side", "-f", str(ROOT / "crds"))
        kubectl(plane, "wait", "--for=condition=Established", "crd", "--all")
        configuration = client.Configuration()
        await config.load_kube_config(
            config_file=str(plane.kubeconfig), client_configuration=configuration
        )
        configuration.connection_pool_maxsize = args.inflight * 2
        async with client.ApiClient(configuration) as api_client:
            api = client.CustomObjectsApi(api_client)
            sample = await sample_status(plane, api)
            print(
                f"sample status: {len(json.dumps(sample['status'])) / 1024:.1f} KiB, "
                f"{len(sample['status'].get('history') or [])} history entries; "
                f"{args.writes} writes to {args.objects} objects, {args.inflight} in flight"
            )
            for variant in args.variants:
                await run_variant(plane, api, args, variant, sample)
    finally:
        plane.stop()


VARIANTS = (
    "as-is",
    "merge-patch",
    "apply",
    "put-no-spec",
    "no-spec-cel",
    "lean-status",
    "no-history",
    "opaque-spec",
    "opaque-status",
    "opaque-both",
    "atomic-status",
    "atomic-both",
    "lean-atomic",
    "cel-unchanged",
    "best",
    "candidate",
    "candidate-typed",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="also take a CPU profile of kube-apiserver for this long during each variant's "
        "writes and print where its time went (needs Go's pprof)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
