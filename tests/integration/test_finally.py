"""``finally`` steps on the real API server: they run after a cancel and after the
workflow's deadline, with the main result kept in status. (Failure: the droplet example,
tests/integration/test_actions_digitalocean.py; every end, with fake time:
tests/unit/test_finally.py.)"""

from __future__ import annotations

from tests.harness import Cluster
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase, workflow

CLEANUP = [{"name": "cleanup", "noop": {"with": {"saw": "${{ workflow.phase }}"}}}]


def test_a_cancelled_workflow_runs_its_finally_steps(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow("long", [{"name": "nap", "sleep": {"duration": "1h"}}], **{"finally": CLEANUP}),
        namespace,
    )
    wait_for_phase(cluster, namespace, "long", "Sleeping")
    cluster.kubectl("-n", namespace, "annotate", "workflow", "long", "cerebelum.io/cancel=true")
    done = wait_for_phase(cluster, namespace, "long", "Cancelled", timeout=10)
    steps = done["status"]["steps"]
    assert steps["nap"]["phase"] == "Cancelled"
    assert steps["cleanup"]["output"] == {"saw": "Cancelled"}
    assert done["status"]["main"]["reason"] == "Cancelled"
    reasons = [h.get("reason") for h in done["status"]["history"]]
    assert reasons.index("Finally") < reasons.index("Cancelled", reasons.index("Finally"))


def test_the_deadline_ends_the_steps_and_finally_still_runs(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow(
            "late",
            [{"name": "nap", "sleep": {"duration": "1h"}}],
            activeDeadline="2s",
            **{"finally": CLEANUP},
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "late", "Failed", timeout=15)
    assert done["status"]["steps"]["cleanup"]["output"] == {"saw": "Failed"}
    assert "activeDeadline 2s passed" in done["status"]["message"]
    assert done["status"]["conditions"][0]["status"] == "False"
