"""`kubectl apply` refuses bad Workflow manifests, with a message that names the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import Cluster
from tests.harness.workflows import workflow

OK_STEP = {"name": "ok", "noop": {}}

BAD: dict[str, tuple[dict[str, Any], list[str]]] = {
    "duplicate step names": (
        workflow("w", [{"name": "a", "noop": {}}, {"name": "a", "noop": {}}]),
        ["spec.steps[1]", "Duplicate value"],
    ),
    "step name not identifier-like": (
        workflow("w", [{"name": "create-droplet", "noop": {}}]),
        ["spec.steps[0].name", "should match"],
    ),
    "malformed duration": (
        workflow("w", [{"name": "nap", "sleep": {"duration": "5 minutes"}}]),
        ["spec.steps[0].sleep.duration", "should match"],
    ),
    "goto to an unknown step": (
        workflow("w", [{"name": "a", "noop": {}, "next": [{"goto": "nowhere"}]}]),
        ["spec.steps", "next[].goto must name a step"],
    ),
    "two action kinds in one step": (
        workflow("w", [{"name": "a", "noop": {}, "fail": {}}]),
        ["spec.steps[0]", "at most one action kind"],
    ),
    "a step with nothing to do": (
        workflow("w", [{"name": "a", "when": "true"}]),
        ["spec.steps[0]", "needs an action, a sleep, an approval or a callback"],
    ),
    "dependsOn an unknown step": (
        workflow("w", [OK_STEP, {"name": "b", "noop": {}, "dependsOn": ["ghost"]}]),
        ["spec.steps", "dependsOn must name steps"],
    ),
    "poll without an action": (
        workflow(
            "w",
            [
                {
                    "name": "a",
                    "sleep": {"duration": "1s"},
                    "poll": {"until": "true", "interval": "1s", "maxAttempts": 3},
                }
            ],
        ),
        ["spec.steps[0].poll", "poll needs an action"],
    ),
    "poll without any limit": (
        workflow("w", [{"name": "a", "noop": {}, "poll": {"until": "true", "interval": "1s"}}]),
        ["spec.steps[0].poll", "maxAttempts or timeout"],
    ),
    "negative retry limit": (
        workflow("w", [{"name": "a", "noop": {}, "retry": {"limit": -1}}]),
        ["spec.steps[0].retry.limit", "should be greater than or equal to 0"],
    ),
    "jitter above 1": (
        workflow(
            "w", [{"name": "a", "noop": {}, "retry": {"limit": 1, "backoff": {"jitter": 1.5}}}]
        ),
        ["spec.steps[0].retry.backoff.jitter", "less than or equal to 1"],
    ),
    "sleep with both duration and until": (
        workflow(
            "w", [{"name": "a", "sleep": {"duration": "1s", "until": "2030-01-01T00:00:00Z"}}]
        ),
        ["spec.steps[0].sleep", "exactly one of duration or until"],
    ),
    "unknown onTimeout value": (
        workflow("w", [{"name": "a", "approval": {"onTimeout": "Maybe"}}]),
        ["spec.steps[0].approval.onTimeout", "Unsupported value"],
    ),
    "onTimeout Goto without a target": (
        workflow("w", [{"name": "a", "approval": {"onTimeout": "Goto"}}]),
        ["spec.steps[0].approval.timeoutGoto", "needs timeoutGoto"],
    ),
    "no steps": (
        workflow("w", []),
        ["spec", "a workflow needs spec.steps (at least 1) or spec.templateRef"],
    ),
    "a finally step depending on a main step": (
        workflow("w", [OK_STEP], **{"finally": [{"name": "f", "noop": {}, "dependsOn": ["ok"]}]}),
        ["spec.finally", "dependsOn must name steps of spec.finally"],
    ),
    "a finally step named as a main step": (
        workflow("w", [OK_STEP], **{"finally": [{"name": "ok", "noop": {}}]}),
        ["spec.finally", "finally step names must differ"],
    ),
    "a misspelt field": (
        workflow("w", [{"name": "a", "noop": {}, "retyr": {"limit": 1}}]),
        ["unknown field", "spec.steps[0].retyr"],
    ),
    "a next rule with two outcomes": (
        workflow("w", [{"name": "a", "noop": {}, "next": [{"goto": "a", "fail": "x"}]}]),
        ["spec.steps[0].next[0]", "exactly one of goto, fail, continue or end"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_manifest_is_refused_naming_the_field(
    cluster: Cluster, crds: None, namespace: str, case: str
) -> None:
    manifest, fragments = BAD[case]

    result = cluster.kubectl(
        "-n", namespace, "apply", "-f", "-", stdin=json.dumps(manifest), check=False
    )
    assert result.returncode != 0, f"{case}: accepted"
    for fragment in fragments:
        assert fragment in result.stderr, f"{case}: {fragment!r} not in {result.stderr!r}"
    assert cluster.kubectl("-n", namespace, "get", "workflows", "-o", "name").stdout.strip() == ""


def test_a_good_manifest_is_accepted(cluster: Cluster, crds: None, namespace: str) -> None:
    cluster.apply(
        workflow(
            "w",
            [
                OK_STEP,
                {
                    "name": "b",
                    "sleep": {"duration": "1h30m"},
                    "dependsOn": ["ok"],
                    "next": [{"when": "true", "goto": "ok"}],
                },
            ],
        ),
        namespace,
    )
    assert (
        cluster.kubectl("-n", namespace, "get", "workflows", "-o", "name").stdout.strip()
        == "workflow.cerebelum.io/w"
    )
