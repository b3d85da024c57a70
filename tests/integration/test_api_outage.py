"""A flaky cluster: kube-apiserver is killed and restarted (same flags) three times while
100 workflows run steps that read a Secret, poll, and run Python in a worker. Every
workflow must succeed, with no side effect done twice and the operator never restarted.

This test owns its control plane: the session's shared one must not go down under others.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cerebelum.devcluster import LocalControlPlane, ensure_binaries
from tests.fakes import python_steps
from tests.fakes.http_server import FakeHttpServer
from tests.harness import Cluster
from tests.harness.operator import OperatorProcess
from tests.harness.worker import WorkerProcess
from tests.harness.workflows import workflow

CRDS = Path(__file__).resolve().parents[2] / "crds"
WORKFLOWS = 100
OUTAGES = 3
TOKEN = "outage-test-token-do-not-leak"


@pytest.fixture
def own_cluster(cluster: Cluster, tmp_path: Path) -> Iterator[Cluster]:
    if cluster.control_plane is None:
        pytest.skip("restarts kube-apiserver: needs the local control plane")
    plane = LocalControlPlane(ensure_binaries())
    plane.start()
    try:
        yield Cluster(
            kubeconfig=plane.kubeconfig,
            kubectl_bin=cluster.kubectl_bin,
            helm_bin=cluster.helm_bin,
            workdir=tmp_path,
            control_plane=plane,
        )
    finally:
        plane.stop()
    assert not plane.leftovers()


def _spec(index: int, url: str) -> dict[str, Any]:
    return workflow(
        f"wf-{index:03d}",
        [
            {
                "name": "notify",
                "http": {
                    "method": "POST",
                    "url": f"{url}/effect",
                    "headersFrom": [
                        {
                            "name": "Authorization",
                            "prefix": "Bearer ",
                            "secretKeyRef": {"name": "api-token", "key": "token"},
                        }
                    ],
                    "body": {"workflow": "${{ workflow.name }}"},
                },
            },
            {
                "name": "ready",
                "http": {"url": f"{url}/progress/wf-{index:03d}/3"},
                "poll": {
                    "until": "output.body.state == 'done'",
                    "interval": "1s",
                    "maxAttempts": 60,
                },
            },
            {
                "name": "effect",
                "python": {
                    "function": "python_steps:fenced_effect",
                    "arguments": {"inputs": "${{ inputs }}"},
                },
            },
        ],
        inputs={"url": url, "seconds": 0},
    )


def _unfinished(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    """What a stuck workflow looks like, for the failure message."""
    items = cluster.kubectl_json("-n", namespace, "get", "workflows")["items"]
    return [
        {
            "name": item["metadata"]["name"],
            "resourceVersion": item["metadata"]["resourceVersion"],
            "status": item.get("status"),
        }
        for item in items
        if (item.get("status") or {}).get("phase") != "Succeeded"
    ][:3] + [
        {"steprun": run["metadata"]["name"], "status": run.get("status")}
        for run in cluster.kubectl_json("-n", namespace, "get", "stepruns")["items"]
        if (run.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ][:3]


def test_three_api_server_restarts_lose_no_workflow_and_repeat_no_effect(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    plane = own_cluster.control_plane
    assert plane is not None
    own_cluster.kubectl("apply", "-f", str(CRDS))
    own_cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    namespace = "outage"
    own_cluster.kubectl("create", "namespace", namespace)
    own_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "api-token"},
            "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
        },
        namespace,
    )
    with FakeHttpServer() as web:
        operator = OperatorProcess(own_cluster, namespace, tmp_path / "operator.log")
        worker = WorkerProcess(
            own_cluster, namespace, tmp_path / "worker.log", [str(python_steps.PATH)], lease="5s"
        )
        operator.start()
        worker.start()
        try:
            own_cluster.apply(
                {
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": [_spec(i, web.url) for i in range(WORKFLOWS)],
                },
                namespace,
            )
            downtimes = []
            for _ in range(OUTAGES):
                time.sleep(2)
                plane.kill_apiserver()
                started = time.monotonic()
                time.sleep(3)
                plane.start_apiserver()
                downtimes.append(time.monotonic() - started)

            def phases() -> dict[str, int]:
                items = own_cluster.kubectl_json("-n", namespace, "get", "workflows")["items"]
                counts: dict[str, int] = {}
                for item in items:
                    phase = (item.get("status") or {}).get("phase", "None")
                    counts[phase] = counts.get(phase, 0) + 1
                return counts

            deadline = time.monotonic() + 240
            counts = phases()
            while counts.get("Succeeded", 0) < WORKFLOWS and time.monotonic() < deadline:
                if counts.get("Failed"):
                    break
                time.sleep(1)
                counts = phases()
            assert counts == {"Succeeded": WORKFLOWS}, (
                f"{counts}; unfinished: {_unfinished(own_cluster, namespace)}; "
                f"operator log tail:\n{operator.logs()[-3000:]}\n"
                f"worker log tail:\n{worker.logs()[-3000:]}"
            )
            assert operator.proc is not None and operator.proc.poll() is None
            assert operator.starts == 1, "the operator never restarted"
        finally:
            worker.stop()
            operator.stop()
        # Every side effect once: 100 notifications (deduplicated by Idempotency-Key if a
        # request was repeated) and 100 python effects.
        assert len(web.effects) == 2 * WORKFLOWS
        assert set(web.effects.values()) == {1}
        assert web.refused == []
        notified = [r for r in web.requests if r["path"] == "/effect" and "workflow" in r["body"]]
        assert len({json.loads(r["body"])["workflow"] for r in notified}) == WORKFLOWS
        assert all(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in notified)
    logs = operator.logs() + worker.logs()
    assert TOKEN not in logs
    failed = own_cluster.kubectl_json("-n", namespace, "get", "events")["items"]
    assert not [e for e in failed if e["reason"] in ("StepFailed", "WorkflowFailed")]
    print(
        f"\n{WORKFLOWS} workflows, {OUTAGES} API server restarts "
        f"(down {', '.join(f'{d:.1f}s' for d in downtimes)}): all succeeded; "
        f"{sum(web.repeats.values())} repeated requests deduplicated",
        json.dumps(counts),
    )
