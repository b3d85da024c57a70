"""The metrics endpoint during a run: every family is there, with non-zero values."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Cluster
from tests.harness.cluster import eventually, free_port
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase, workflow


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def test_metrics_show_workflows_steps_polls_approvals_errors_and_api_requests(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    operator = OperatorProcess(
        cluster, namespace, tmp_path / "operator.log", env={"CEREBELUM_METRICS_PORT": str(port)}
    )
    operator.start()
    try:
        cluster.apply(
            workflow(
                "polls",
                [
                    {
                        "name": "p",
                        "noop": {"with": {"n": "${{ step.attempt }}"}},
                        "poll": {"until": "output.n >= 2", "interval": "100ms", "maxAttempts": 5},
                    }
                ],
            ),
            namespace,
        )
        cluster.apply(
            workflow("breaks", [{"name": "f", "fail": {"errorClass": "Boom", "retryable": False}}]),
            namespace,
        )
        cluster.apply(workflow("waits", [{"name": "gate", "approval": {}}]), namespace)
        wait_for_phase(cluster, namespace, "polls", "Succeeded")
        wait_for_phase(cluster, namespace, "breaks", "Failed")
        wait_for_phase(cluster, namespace, "waits", "WaitingForApproval")
        metrics = eventually(lambda: _scrape(port), timeout=10)
    finally:
        operator.stop()
    for name in (
        "cerebelum_workflows",
        "cerebelum_approvals_waiting",
        "cerebelum_step_duration_seconds_count",
        "cerebelum_poll_attempts_total",
        "cerebelum_action_attempts_total",
        "cerebelum_action_errors_total",
        "cerebelum_api_requests_total",
    ):
        assert metrics.get(name, 0) > 0, f"{name} missing or zero: {sorted(metrics)}"
    assert metrics["cerebelum_workflows"] == 3
    assert metrics["cerebelum_poll_attempts_total"] == 2
