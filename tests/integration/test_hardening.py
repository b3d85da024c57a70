"""A hostile user against the real API server and the real operator: every case ends in a
status and an Event that say what went wrong, the operator stays up, and other workflows
are not affected."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import Cluster
from tests.harness.cluster import eventually
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import get, wait_for_phase, wait_for_step_phase, workflow


def events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "-n", namespace, "get", "events", "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items


def event(cluster: Cluster, namespace: str, name: str, reason: str) -> dict[str, Any]:
    """The Event with ``reason`` on ``name`` (waits for it)."""

    def find() -> dict[str, Any]:
        found = [e for e in events(cluster, namespace, name) if e["reason"] == reason]
        return found[0] if found else {}

    result: dict[str, Any] = eventually(find, timeout=15)
    return result


def patch_status(cluster: Cluster, namespace: str, name: str, patch: dict[str, Any]) -> None:
    """What a user with workflows/status permission can do: ``kubectl patch --subresource``."""
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "workflow",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": patch}),
    )


def still_up(operator: OperatorProcess) -> None:
    assert operator.proc is not None and operator.proc.poll() is None, operator.logs()[-3000:]
    assert operator.starts == 1
    assert "Fatal Python error" not in operator.logs()


BENIGN = workflow("benign", [{"name": "a", "noop": {"with": {"ok": True}}}])


def test_an_expression_that_crashed_the_parser_fails_its_workflow_only(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    huge = "${{ " + " + ".join(["1"] * 15000) + " }}"
    cluster.apply(workflow("bomb", [{"name": "boom", "noop": {"with": {"sum": huge}}}]), namespace)
    cluster.apply(BENIGN, namespace)
    failed = wait_for_phase(cluster, namespace, "bomb", "Failed")
    condition = failed["status"]["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "Succeeded",
        "False",
        "InvalidSpec",
    )
    assert "noop.with.sum: a string with ${{ }} is 60004 characters long" in condition["message"]
    assert "over the limit of 16384" in event(cluster, namespace, "bomb", "InvalidSpec")["message"]
    assert wait_for_phase(cluster, namespace, "benign", "Succeeded")
    still_up(operator)
    assert "Fatal Python error" not in operator.logs()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"steps": [{"name": "nap", "sleep": {"duration": "3000000d"}}]}, "steps.0.sleep.duration"),
        (
            {"activeDeadline": "3000000d", "steps": [{"name": "a", "noop": {}}]},
            "activeDeadline",
        ),
    ],
)
def test_durations_beyond_a_year_fail_at_once_with_the_field_named(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    spec: dict[str, Any],
    field: str,
) -> None:
    cluster.apply({**workflow("far", []), "spec": spec}, namespace)
    failed = wait_for_phase(cluster, namespace, "far", "Failed")
    assert (
        f"spec.{field}: Value error, duration '3000000d' is longer than the limit of 366d"
        in (failed["status"]["message"])
    )
    assert "OverflowError" not in operator.logs()
    still_up(operator)


def test_a_sleep_until_edited_to_garbage_is_recomputed_and_the_step_wakes_on_time(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(workflow("nap", [{"name": "nap", "sleep": {"duration": "3s"}}]), namespace)
    sleeping = wait_for_step_phase(cluster, namespace, "nap", "nap", "Sleeping")
    planned = sleeping["status"]["steps"]["nap"]["sleepUntil"]
    patch_status(cluster, namespace, "nap", {"steps": {"nap": {"sleepUntil": "not-a-time"}}})
    repaired = event(cluster, namespace, "nap", "StatusRepaired")
    assert repaired["type"] == "Warning"
    assert "sleepUntil 'not-a-time' is not a time" in repaired["message"]
    assert f"sleepUntil recomputed from its start: {planned}" in repaired["message"]
    done = wait_for_phase(cluster, namespace, "nap", "Succeeded", timeout=15)
    assert done["status"]["steps"]["nap"]["sleepUntil"] == planned
    assert "ValueError" not in operator.logs()


def test_a_removed_sleep_until_does_not_leave_the_step_asleep_forever(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(workflow("nap", [{"name": "nap", "sleep": {"duration": "3s"}}]), namespace)
    wait_for_step_phase(cluster, namespace, "nap", "nap", "Sleeping")
    patch_status(cluster, namespace, "nap", {"steps": {"nap": {"sleepUntil": None}}})
    assert "sleepUntil recomputed" in event(cluster, namespace, "nap", "StatusRepaired")["message"]
    wait_for_phase(cluster, namespace, "nap", "Succeeded", timeout=15)


def test_a_sleep_only_step_set_to_running_sleeps_again(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(workflow("nap", [{"name": "nap", "sleep": {"duration": "2s"}}]), namespace)
    wait_for_step_phase(cluster, namespace, "nap", "nap", "Sleeping")
    patch_status(cluster, namespace, "nap", {"steps": {"nap": {"phase": "Running"}}})
    repaired = event(cluster, namespace, "nap", "StatusRepaired")
    assert "step nap is Running but has no action: its visit starts again" in repaired["message"]
    done = wait_for_phase(cluster, namespace, "nap", "Succeeded", timeout=15)
    assert done["status"]["steps"]["nap"]["visits"] == 1
    assert "AssertionError" not in operator.logs()


def test_succeeded_written_by_hand_is_not_believed(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow("gate", [{"name": "go", "approval": {}}, {"name": "ship", "noop": {}}]), namespace
    )
    wait_for_phase(cluster, namespace, "gate", "WaitingForApproval")
    patch_status(cluster, namespace, "gate", {"phase": "Succeeded"})
    repaired = event(cluster, namespace, "gate", "StatusRepaired")
    assert "phase was set to finished but go, ship did not finish" in repaired["message"]
    back = wait_for_phase(cluster, namespace, "gate", "WaitingForApproval")
    condition = back["status"]["conditions"][0]
    assert (condition["type"], condition["status"]) == ("Succeeded", "Unknown")
    cluster.kubectl(
        "-n",
        namespace,
        "wait",
        "--for=condition=Succeeded=Unknown",
        "workflow/gate",
        "--timeout=5s",
    )
    cluster.kubectl("-n", namespace, "annotate", "workflow", "gate", "cerebelum.io/approve=go")
    done = wait_for_phase(cluster, namespace, "gate", "Succeeded")
    assert done["status"]["steps"]["ship"]["phase"] == "Succeeded"


def test_approval_data_that_is_not_json_is_not_applied(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(workflow("gate", [{"name": "go", "approval": {}}]), namespace)
    wait_for_phase(cluster, namespace, "gate", "WaitingForApproval")
    cluster.kubectl(
        "-n",
        namespace,
        "annotate",
        "workflow",
        "gate",
        "cerebelum.io/approve=go",
        "cerebelum.io/approval-data=yes please",
    )
    warning = event(cluster, namespace, "gate", "InvalidApprovalData")
    assert warning["type"] == "Warning"
    assert (
        "approval of step go not applied: cerebelum.io/approval-data is not JSON"
        in (warning["message"])
    )

    def annotations_removed() -> bool:
        return "cerebelum.io/approve" not in (
            get(cluster, namespace, "gate")["metadata"].get("annotations") or {}
        )

    eventually(annotations_removed)
    assert get(cluster, namespace, "gate")["status"]["phase"] == "WaitingForApproval"
    cluster.kubectl(
        "-n",
        namespace,
        "annotate",
        "workflow",
        "gate",
        "cerebelum.io/approve=go",
        'cerebelum.io/approval-data={"ticket": 42}',
    )
    done = wait_for_phase(cluster, namespace, "gate", "Succeeded")
    assert done["status"]["steps"]["go"]["approval"]["data"] == {"ticket": 42}


def test_approve_and_reject_in_one_annotate_rejects_and_says_why(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(workflow("gate", [{"name": "go", "approval": {}}]), namespace)
    wait_for_phase(cluster, namespace, "gate", "WaitingForApproval")
    cluster.kubectl(
        "-n",
        namespace,
        "annotate",
        "workflow",
        "gate",
        "cerebelum.io/approve=go",
        "cerebelum.io/reject=go",
    )
    failed = wait_for_phase(cluster, namespace, "gate", "Failed")
    assert failed["status"]["steps"]["go"]["approval"]["decision"] == "Rejected"
    message = event(cluster, namespace, "gate", "ConflictingDecision")["message"]
    assert "both cerebelum.io/approve and cerebelum.io/reject name step go: the rejection wins" in (
        message
    )


def test_an_ftp_url_fails_at_once_and_is_not_retried(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow(
            "ftp",
            [
                {
                    "name": "fetch",
                    "http": {"url": "ftp://127.0.0.1/file"},
                    "retry": {"limit": 5, "backoff": {"delay": "100ms"}},
                }
            ],
        ),
        namespace,
    )
    failed = wait_for_phase(cluster, namespace, "ftp", "Failed")
    step = failed["status"]["steps"]["fetch"]
    assert step["error"]["errorClass"] == "InvalidAction" and not step["error"]["retryable"]
    assert "only http and https are supported" in step["error"]["message"]
    assert step["attempts"] == 1, "refused before any I/O, and not retried"


def test_a_port_expression_that_is_not_a_number_names_the_field_and_expression(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow(
            "tcp",
            [{"name": "ssh", "tcp": {"host": "127.0.0.1", "port": "${{ inputs.port }}"}}],
            inputs={"port": "abc"},
        ),
        namespace,
    )
    failed = wait_for_phase(cluster, namespace, "tcp", "Failed")
    assert failed["status"]["steps"]["ssh"]["error"] == {
        "errorClass": "InvalidAction",
        "message": "spec.steps[0].tcp.port: 'abc' (from '${{ inputs.port }}') is not a port number",
        "retryable": False,
    }
    assert "invalid literal for int()" not in json.dumps(failed)


def test_a_workflow_whose_writes_keep_failing_backs_off_and_says_so(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    """A ValidatingAdmissionPolicy refuses this workflow's progress (but lets a Reconciling
    condition through): the operator must back off, and show the problem where users look."""
    policy = f"refuse-progress-{namespace}"[:63]
    cluster.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["cerebelum.io"],
                            "apiVersions": ["v1alpha1"],
                            "operations": ["UPDATE"],
                            "resources": ["workflows/status"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "!(object.metadata.name in ['stuck', 'probe']) || "
                        "(has(object.status.conditions) && "
                        "object.status.conditions.exists(c, c.type == 'Reconciling'))",
                        "message": "progress of stuck is refused by a test policy",
                    }
                ],
            },
        }
    )
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy},
        "spec": {
            "policyName": policy,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    cluster.apply(binding)
    try:
        cluster.apply(BENIGN, namespace)
        # A policy takes a moment to be enforced: probe until a status write is refused.
        cluster.apply(workflow("probe", [{"name": "a", "approval": {}}], suspend=True), namespace)

        def enforced() -> bool:
            probe = cluster.kubectl(
                "-n",
                namespace,
                "patch",
                "workflow",
                "probe",
                "--subresource=status",
                "--type=merge",
                "-p",
                '{"status": {"message": "probe"}}',
                check=False,
            )
            return probe.returncode != 0 and "refused by a test policy" in probe.stderr

        eventually(enforced, timeout=20, interval=0.3)
        cluster.apply(workflow("stuck", [{"name": "a", "noop": {}}]), namespace)
        warning = event(cluster, namespace, "stuck", "ReconcileFailing")
        assert warning["type"] == "Warning"
        assert (
            "3 reconciliations in a row failed: the API server answered HTTP"
            in (warning["message"])
        )
        assert "progress of stuck is refused by a test policy" in warning["message"]
        stuck = get(cluster, namespace, "stuck")
        reconciling = [c for c in stuck["status"]["conditions"] if c["type"] == "Reconciling"]
        assert reconciling and reconciling[0]["status"] == "False"
        assert reconciling[0]["reason"] == "ReconcileError"
        cluster.kubectl("delete", "validatingadmissionpolicybinding", policy)
        done = wait_for_phase(cluster, namespace, "stuck", "Succeeded", timeout=90)
        assert [c["type"] for c in done["status"]["conditions"]] == ["Succeeded"]
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding", policy, check=False)
        cluster.kubectl("delete", "validatingadmissionpolicy", policy, check=False)
    assert wait_for_phase(cluster, namespace, "benign", "Succeeded")
    still_up(operator)
