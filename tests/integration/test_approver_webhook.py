"""Approver identity: the real API server calls the operator's webhooks over TLS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.harness import Cluster
from tests.harness.cluster import eventually
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase, wait_for_step_phase, workflow


def test_approvers_are_enforced_and_recorded(
    cluster: Cluster, namespace: str, webhook_operator: OperatorProcess
) -> None:
    cp = cluster.control_plane
    assert cp is not None
    alice, bob = cp.kubeconfig_for_user("alice"), cp.kubeconfig_for_user("bob", ("ops",))
    mallory, nobody = cp.kubeconfig_for_user("mallory", ("devs",)), cp.kubeconfig_for_user("nobody")
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "role",
        "approver",
        "--verb=get,list,patch",
        "--resource=workflows.cerebelum.io",
    )
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "approvers",
        "--role=approver",
        "--user=alice",
        "--user=mallory",
        "--group=ops",
    )
    cluster.apply(
        workflow(
            "release",
            [
                {
                    "name": "go_live",
                    "approval": {"approvers": {"users": ["alice"], "groups": ["ops"]}},
                },
                {"name": "second_look", "approval": {"approvers": {"groups": ["ops"]}}},
                {"name": "ship", "noop": {}},
            ],
        ),
        namespace,
    )
    wait_for_phase(cluster, namespace, "release", "WaitingForApproval")

    def annotate(kubeconfig: Path, *annotations: str) -> tuple[int, str]:
        result = cluster.kubectl(
            "-n",
            namespace,
            "annotate",
            "workflow",
            "release",
            *annotations,
            kubeconfig=kubeconfig,
            check=False,
        )
        return result.returncode, result.stderr

    code, err = annotate(mallory, "cerebelum.io/approve=go_live")
    assert (
        code != 0
        and "mallory may not approve step 'go_live': only users alice or members of ops may" in err
    )
    code, err = annotate(nobody, "cerebelum.io/approve=go_live")
    assert code != 0 and "(Forbidden)" in err and 'User "nobody" cannot' in err, (
        "RBAC refuses first"
    )
    code, err = annotate(alice, "cerebelum.io/approve=go_live", "cerebelum.io/decided-by=the-ceo")
    assert code == 0, err
    waiting = wait_for_step_phase(
        cluster, namespace, "release", "second_look", "WaitingForApproval"
    )
    assert waiting["status"]["steps"]["go_live"]["approval"]["decidedBy"] == "alice", (
        "not the forged name"
    )
    code, err = annotate(alice, "cerebelum.io/approve=second_look")
    assert code != 0 and "only members of ops may" in err
    code, err = annotate(bob, "cerebelum.io/approve=second_look")
    assert code == 0, err
    done = wait_for_phase(cluster, namespace, "release", "Succeeded")
    assert done["status"]["steps"]["second_look"]["approval"]["decidedBy"] == "bob"
    # Ordinary edits do not go through the webhook at all, so they never depend on it.
    cluster.kubectl("-n", namespace, "label", "workflow", "release", "team=web")


def test_the_webhooks_refuse_hostile_input_at_apply_time(
    cluster: Cluster, namespace: str, webhook_operator: OperatorProcess
) -> None:
    huge = "${{ " + " + ".join(["1"] * 15000) + " }}"
    refused = cluster.kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        stdin=json.dumps(workflow("bomb", [{"name": "boom", "noop": {"with": {"sum": huge}}}])),
        check=False,
    )
    assert refused.returncode != 0
    assert "invalid spec: spec.steps.0: Value error, noop.with.sum" in refused.stderr
    assert "over the limit of 16384" in refused.stderr
    far = cluster.kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        stdin=json.dumps(workflow("far", [{"name": "nap", "sleep": {"duration": "3000000d"}}])),
        check=False,
    )
    assert far.returncode != 0 and "longer than the limit of 366d" in far.stderr
    cluster.apply(workflow("gate", [{"name": "go", "approval": {}}]), namespace)
    wait_for_phase(cluster, namespace, "gate", "WaitingForApproval")
    bad_data = cluster.kubectl(
        "-n",
        namespace,
        "annotate",
        "workflow",
        "gate",
        "cerebelum.io/approve=go",
        "cerebelum.io/approval-data=yes please",
        check=False,
    )
    assert bad_data.returncode != 0
    assert "cerebelum.io/approval-data must be JSON" in bad_data.stderr
    # Label edits (no spec change) never reach the spec webhook.
    cluster.kubectl("-n", namespace, "label", "workflow", "gate", "team=web")


def test_teams_two_of_three_no_self_approval_typed_data_and_a_choice(
    cluster: Cluster, namespace: str, webhook_operator: OperatorProcess
) -> None:
    cp = cluster.control_plane
    assert cp is not None
    users = {name: cp.kubeconfig_for_user(name) for name in ("carol", "alice", "bob")}
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "role",
        "team",
        "--verb=get,list,patch,create",
        "--resource=workflows.cerebelum.io",
    )
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "team",
        "--role=team",
        "--user=carol",
        "--user=alice",
        "--user=bob",
    )
    manifest = workflow(
        "rollout",
        [
            {
                "name": "go",
                "approval": {
                    "required": 2,
                    "allowSelfApproval": False,
                    "options": ["canary", "full"],
                    "schema": {"type": "object", "properties": {"percent": {"type": "integer"}}},
                },
            },
            {
                "name": "canary",
                "noop": {"with": {"p": "${{ steps.go.output.percent }}"}},
                "when": "steps.go.output.choice == 'canary'",
            },
            {
                "name": "full",
                "noop": {},
                "dependsOn": ["go"],
                "when": "steps.go.output.choice == 'full'",
            },
        ],
    )
    manifest["metadata"]["annotations"] = {"cerebelum.io/created-by": "someone-else"}
    cluster.kubectl(
        "-n", namespace, "apply", "-f", "-", stdin=json.dumps(manifest), kubeconfig=users["carol"]
    )
    obj = wait_for_phase(cluster, namespace, "rollout", "WaitingForApproval")
    assert obj["metadata"]["annotations"]["cerebelum.io/created-by"] == "carol", (
        "stamped, not forged"
    )

    def annotate(user: str, *annotations: str) -> tuple[int, str]:
        result = cluster.kubectl(
            "-n",
            namespace,
            "annotate",
            "--overwrite",
            "workflow",
            "rollout",
            *annotations,
            kubeconfig=users[user],
            check=False,
        )
        return result.returncode, result.stderr

    code, err = annotate("carol", "cerebelum.io/approve=go", "cerebelum.io/choice=canary")
    assert code != 0 and "carol created this workflow" in err and "self-approval" in err
    code, err = annotate("alice", "cerebelum.io/created-by=alice")
    assert code != 0 and "cannot be changed" in err
    code, err = annotate("alice", "cerebelum.io/approve=go")
    assert code != 0 and "needs cerebelum.io/choice=one of canary, full" in err
    code, err = annotate(
        "alice",
        "cerebelum.io/approve=go",
        "cerebelum.io/choice=canary",
        'cerebelum.io/approval-data={"percent": "ten"}',
    )
    assert code != 0 and "does not match the schema at percent" in err
    code, err = annotate(
        "alice",
        "cerebelum.io/approve=go",
        "cerebelum.io/choice=canary",
        'cerebelum.io/approval-data={"percent": 10}',
    )
    assert code == 0, err

    def votes() -> list[dict[str, Any]]:
        o = cluster.kubectl_json("-n", namespace, "get", "workflow", "rollout")
        return list(((o["status"]["steps"]["go"].get("approval") or {}).get("votes")) or [])

    def read() -> None:
        """Wait until the operator has read (and removed) the decision annotations."""

        def gone() -> bool:
            obj = cluster.kubectl_json("-n", namespace, "get", "workflow", "rollout")
            return "cerebelum.io/approve" not in (obj["metadata"].get("annotations") or {})

        eventually(lambda: gone() or None, timeout=15)

    eventually(lambda: len(votes()) == 1 or None, timeout=15)
    obj = cluster.kubectl_json("-n", namespace, "get", "workflow", "rollout")
    assert obj["status"]["steps"]["go"]["phase"] == "WaitingForApproval", "1 of 2 leaves it open"
    assert obj["status"]["steps"]["go"]["message"] == "1 of 2 approvals"
    # alice again counts once
    read()
    code, err = annotate("alice", "cerebelum.io/approve=go", "cerebelum.io/choice=canary")
    assert code == 0, err
    read()
    assert len(votes()) == 1
    code, err = annotate(
        "bob",
        "cerebelum.io/approve=go",
        "cerebelum.io/choice=canary",
        'cerebelum.io/approval-data={"percent": 10}',
    )
    assert code == 0, err
    done = wait_for_phase(cluster, namespace, "rollout", "Succeeded")
    steps = done["status"]["steps"]
    assert [v["by"] for v in steps["go"]["approval"]["votes"]] == ["alice", "bob"]
    assert steps["go"]["output"] == {"percent": 10, "choice": "canary"}
    assert steps["canary"]["output"] == {"p": 10} and steps["full"]["phase"] == "Skipped"


def test_a_timeout_approval_applies_the_schemas_defaults_and_the_first_option(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    schema = {"type": "object", "properties": {"percent": {"type": "integer", "default": 10}}}
    gate = {
        "timeout": "1s",
        "onTimeout": "Approve",
        "schema": schema,
        "options": ["canary", "full"],
    }
    cluster.apply(workflow("lazy", [{"name": "go", "approval": gate}]), namespace)
    done = wait_for_phase(cluster, namespace, "lazy", ("Succeeded", "Failed"), timeout=20)
    assert done["status"]["phase"] == "Succeeded"
    go = done["status"]["steps"]["go"]
    assert go["output"] == {"percent": 10, "choice": "canary"}
    assert go["approval"]["decision"] == "TimedOut"
