"""A status that would outgrow the API server's object limit: 100 steps with 16 KiB outputs
fail once with StatusTooLarge, a workflow beside it is unaffected, and the operator makes no
endless retries (its status writes are counted in the API server's audit log)."""

from __future__ import annotations

import json
import time

import pytest

from tests.harness import Cluster
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase, workflow


def _status_writes(cluster: Cluster, namespace: str, name: str) -> int:
    assert cluster.control_plane is not None
    count = 0
    for line in cluster.control_plane.audit_log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (
            ref.get("resource") == "workflows"
            and ref.get("subresource") == "status"
            and ref.get("namespace") == namespace
            and ref.get("name") == name
            and event.get("verb") in ("update", "patch")
        ):
            count += 1
    return count


def test_a_hundred_16k_outputs_fail_once_with_status_too_large(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    if cluster.control_plane is None:
        pytest.skip("counts writes in the local control plane's audit log")
    # The spec holds the 16 KiB once (an object over 1.5 MiB could not even be stored);
    # each step's output copies it.
    steps = [
        {"name": f"s{i:02d}", "noop": {"with": {"blob": "${{ inputs.blob }}"}}} for i in range(100)
    ]
    big = workflow("big", steps, inputs={"blob": "x" * 16 * 1024})
    beside = workflow("beside", [{"name": "a", "noop": {"with": {"ok": True}}}])
    cluster.apply(big, namespace)
    cluster.apply(beside, namespace)
    done = wait_for_phase(cluster, namespace, "big", ("Succeeded", "Failed"), timeout=60)
    assert done["status"]["phase"] == "Failed"
    failed = [s for s in done["status"]["steps"].values() if s["phase"] == "Failed"]
    assert len(failed) == 1 and failed[0]["error"]["errorClass"] == "StatusTooLarge"
    assert "The largest: s00 (16396 bytes)" in failed[0]["error"]["message"]
    assert wait_for_phase(cluster, namespace, "beside", "Succeeded")["status"]["phase"]
    writes = _status_writes(cluster, namespace, "big")
    time.sleep(3)
    assert _status_writes(cluster, namespace, "big") == writes <= 5, "no endless retries"
    assert len(json.dumps(done["status"])) < 768 * 1024
    events = cluster.kubectl_json("-n", namespace, "get", "events")["items"]
    assert not [e for e in events if e["reason"] == "ReconcileFailing"]
