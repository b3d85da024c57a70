"""Helpers to create Workflows and wait for what a user would wait for."""

from __future__ import annotations

import time
from typing import Any

from tests.harness.cluster import Cluster


def workflow(name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cerebelum.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"steps": steps, **spec},
    }


def get(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cluster.kubectl_json("-n", namespace, "get", "workflow", name)
    return result


def wait_for_phase(
    cluster: Cluster, namespace: str, name: str, phases: str | tuple[str, ...], timeout: float = 30
) -> dict[str, Any]:
    wanted = (phases,) if isinstance(phases, str) else phases
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = get(cluster, namespace, name)
        if obj.get("status", {}).get("phase") in wanted:
            return obj
        time.sleep(0.1)
    raise AssertionError(f"{name} not in {wanted} after {timeout}s; status: {obj.get('status')}")


def wait_for_step_phase(
    cluster: Cluster, namespace: str, name: str, step: str, phase: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = get(cluster, namespace, name)
        if obj.get("status", {}).get("steps", {}).get(step, {}).get("phase") == phase:
            return obj
        time.sleep(0.1)
    raise AssertionError(f"{name}.{step} not {phase} after {timeout}s; status: {obj.get('status')}")
