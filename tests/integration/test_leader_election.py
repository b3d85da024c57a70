"""Two replicas: only the Lease holder works; killing it hands over within lease + renew."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.harness import Cluster
from tests.harness.cluster import eventually
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase, workflow

LEASE_SECONDS, RENEW_SECONDS = 3, 1


def _status_writes(audit_log: Path, user: str, namespace: str) -> int:
    count = 0
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (
            event["user"]["username"] == user
            and ref.get("resource") == "workflows"
            and ref.get("subresource") == "status"
            and ref.get("namespace") == namespace
        ):
            count += 1
    return count


def _holder(cluster: Cluster, namespace: str) -> str:
    lease = cluster.kubectl_json("-n", namespace, "get", "lease", "cerebelum-operator")
    return str(lease["spec"].get("holderIdentity") or "")


def test_only_the_leader_works_and_a_standby_takes_over(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    cp = cluster.control_plane
    if cp is None:
        pytest.skip(
            "tells the replicas apart by client-certificate users of the local control plane"
        )
    replicas = {}
    for name in ("operator-a", "operator-b"):
        replicas[name] = OperatorProcess(
            cluster,
            namespace,
            tmp_path / f"{name}.log",
            env={
                "KUBECONFIG": str(cp.kubeconfig_for_user(name, ("system:masters",))),
                "CEREBELUM_LEADER_ELECTION": "true",
                "CEREBELUM_LEASE_NAMESPACE": namespace,
                "CEREBELUM_POD_NAME": name,
                "CEREBELUM_LEASE_SECONDS": str(LEASE_SECONDS),
                "CEREBELUM_LEASE_RENEW_SECONDS": str(RENEW_SECONDS),
            },
        )
    try:
        replicas["operator-a"].start()
        eventually(lambda: _holder(cluster, namespace) == "operator-a", timeout=10)
        replicas["operator-b"].start()
        steps = [{"name": "nap", "sleep": {"duration": "500ms"}}, {"name": "done", "noop": {}}]
        for i in range(5):
            cluster.apply(workflow(f"before-{i}", steps), namespace)
        for i in range(5):
            wait_for_phase(cluster, namespace, f"before-{i}", "Succeeded")
        assert _status_writes(cp.audit_log, "operator-a", namespace) > 0
        assert _status_writes(cp.audit_log, "operator-b", namespace) == 0, (
            "the standby must not work"
        )

        cluster.apply(
            workflow(
                "across",
                [{"name": "nap", "sleep": {"duration": "2s"}}, {"name": "done", "noop": {}}],
            ),
            namespace,
        )
        wait_for_phase(cluster, namespace, "across", "Sleeping")
        replicas["operator-a"].kill()
        killed = time.monotonic()
        cluster.apply(workflow("after", [{"name": "done", "noop": {}}]), namespace)
        wait_for_phase(cluster, namespace, "after", "Succeeded", timeout=30)
        handover = time.monotonic() - killed
        wait_for_phase(cluster, namespace, "across", "Succeeded", timeout=30)
        assert _holder(cluster, namespace) == "operator-b"
    finally:
        for replica in replicas.values():
            replica.stop()
    assert handover < LEASE_SECONDS + RENEW_SECONDS + 3, f"handover took {handover:.1f}s"
    assert _status_writes(cp.audit_log, "operator-b", namespace) > 0


def test_a_clean_shutdown_hands_the_lease_over_at_once(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    env = {
        "CEREBELUM_LEADER_ELECTION": "true",
        "CEREBELUM_LEASE_NAMESPACE": namespace,
        "CEREBELUM_LEASE_SECONDS": "30",
        "CEREBELUM_LEASE_RENEW_SECONDS": "1",
    }
    first = OperatorProcess(
        cluster, namespace, tmp_path / "first.log", env={**env, "CEREBELUM_POD_NAME": "first"}
    )
    first.start()
    eventually(lambda: _holder(cluster, namespace) == "first", timeout=10)
    first.stop()  # SIGTERM: a rolling restart
    second = OperatorProcess(
        cluster, namespace, tmp_path / "second.log", env={**env, "CEREBELUM_POD_NAME": "second"}
    )
    second.start()
    try:
        started = time.monotonic()
        eventually(lambda: _holder(cluster, namespace) == "second", timeout=10)
        assert time.monotonic() - started < 5, "no need to wait out the 30s lease"
        cluster.apply(workflow("next", [{"name": "done", "noop": {}}]), namespace)
        wait_for_phase(cluster, namespace, "next", "Succeeded")
    finally:
        second.stop()
