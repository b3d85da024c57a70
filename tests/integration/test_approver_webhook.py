"""Approver identity: the real API server calls the operator's webhooks over TLS."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cerebelum.devcluster.pki import CertificateAuthority
from cerebelum.kube.approvers import webhook_configurations
from tests.harness import Cluster
from tests.harness.cluster import free_port
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase, wait_for_step_phase, workflow


@pytest.fixture
def webhook_operator(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    if cluster.control_plane is None:
        pytest.skip("needs the API server to reach a webhook on this machine's loopback")
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = CertificateAuthority(pki)
    serving = ca.issue("webhook", "cerebelum-webhook", server_ips=("127.0.0.1",))
    port = free_port()
    operator = OperatorProcess(
        cluster,
        namespace,
        tmp_path / "operator.log",
        webhooks=True,
        env={
            "CEREBELUM_WEBHOOK_PORT": str(port),
            "CEREBELUM_WEBHOOK_ADDR": "127.0.0.1",
            "CEREBELUM_WEBHOOK_CERT": str(serving.cert),
            "CEREBELUM_WEBHOOK_KEY": str(serving.key),
        },
    )
    operator.start()
    ca_bundle = base64.b64encode(ca.cert_path.read_bytes()).decode()
    configs = webhook_configurations(
        f"cerebelum-{namespace}", f"https://127.0.0.1:{port}", ca_bundle, [namespace]
    )
    for config in configs:
        cluster.apply(config)
    try:
        yield operator
    finally:
        for config in configs:
            cluster.kubectl("delete", config["kind"], config["metadata"]["name"], check=False)
        operator.stop()


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
