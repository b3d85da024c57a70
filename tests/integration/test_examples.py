"""Every manifest in examples/ runs, as it is, to the end its comments promise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cerebelum.api.durations import parse_time
from tests.harness import Cluster
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _approve(cluster: Cluster, namespace: str, name: str) -> None:
    wait_for_phase(cluster, namespace, name, "WaitingForApproval")
    cluster.kubectl(
        "-n",
        namespace,
        "annotate",
        "workflow",
        name,
        "cerebelum.io/approve=go_live",
        "cerebelum.io/reason=change 42",
    )


def _cancel(cluster: Cluster, namespace: str, name: str) -> None:
    wait_for_phase(cluster, namespace, name, "Sleeping")
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "workflow",
        name,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":true}}',
    )
    wait_for_phase(cluster, namespace, name, "Suspended")
    cluster.kubectl("-n", namespace, "annotate", "workflow", name, "cerebelum.io/cancel=true")


def _parallel(obj: dict[str, Any]) -> None:
    steps = obj["status"]["steps"]
    ssh, http = steps["verify_ssh"], steps["verify_http"]
    overlap = min(parse_time(ssh["finishedAt"]), parse_time(http["finishedAt"])) - max(
        parse_time(ssh["startedAt"]), parse_time(http["startedAt"])
    )
    assert overlap.total_seconds() > 0.5, "the two checks ran at the same time"
    assert steps["go_live"]["output"] == {"checks": ["203.0.113.10:22", "http://203.0.113.10/"]}


CASES: dict[
    str,
    tuple[str, Callable[[Cluster, str, str], None] | None, Callable[[dict[str, Any]], bool | None]],
] = {
    "sleep.yaml": (
        "Succeeded",
        None,
        lambda o: o["status"]["steps"]["finish"]["output"] == {"message": "finished after started"},
    ),
    "poll.yaml": ("Succeeded", None, lambda o: o["status"]["steps"]["wait_ready"]["attempts"] == 3),
    "approval.yaml": (
        "Succeeded",
        _approve,
        lambda o: o["status"]["steps"]["release"]["output"] == {"released": "1.4.2"},
    ),
    "retry.yaml": (
        "Succeeded",
        None,
        lambda o: o["status"]["steps"]["flaky_call"]["attempts"] == 3,
    ),
    "diverge.yaml": ("Succeeded", None, lambda o: o["status"]["steps"]["attempt"]["visits"] == 3),
    "parallel.yaml": ("Succeeded", None, _parallel),
    "when-skip.yaml": (
        "Succeeded",
        None,
        lambda o: o["status"]["steps"]["notify_oncall"]["phase"] == "Skipped",
    ),
    "deadline.yaml": (
        "Failed",
        None,
        lambda o: (
            o["status"]["conditions"][0]["reason"] == "Failed"
            and "activeDeadline" in o["status"]["message"]
        ),
    ),
    "cancel.yaml": (
        "Cancelled",
        _cancel,
        lambda o: o["status"]["steps"]["maintenance"]["phase"] == "Cancelled",
    ),
}


#: Examples that need local fakes, run by the tests of their action.
COVERED_ELSEWHERE = {
    "digitalocean-droplet.yaml": "test_actions_digitalocean.py",
    "ci-build-poll.yaml": "test_actions_http_tcp.py",
    "ci-build-callback.yaml": "test_callbacks.py",
    "template.yaml": "test_templates.py",
    "cron.yaml": "test_cron.py",
    "database-ready-poll.yaml": "test_actions_http_tcp.py",
    "certificate-poll.yaml": "test_actions_http_tcp.py",
    "health-check.yaml": "test_actions_http_tcp.py",
}


def test_every_example_has_a_case() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted([*CASES, *COVERED_ELSEWHERE])


@pytest.mark.parametrize("example", sorted(CASES))
def test_example_runs_to_its_end(
    cluster: Cluster, namespace: str, operator: OperatorProcess, example: str
) -> None:
    phase, act, check = CASES[example]
    name = yaml.safe_load((EXAMPLES / example).read_text())["metadata"]["name"]
    cluster.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / example))
    if act is not None:
        act(cluster, namespace, name)
    obj = wait_for_phase(cluster, namespace, name, ("Succeeded", "Failed", "Cancelled"), timeout=30)
    assert obj["status"]["phase"] == phase, obj["status"].get("message")
    result = check(obj)
    assert result is None or result, f"{example}: unexpected status {obj['status']}"
