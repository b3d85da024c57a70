"""Everything under integration/ talks to a real API server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cerebelum.api.crd import POLICY_NAME
from cerebelum.devcluster.pki import CertificateAuthority
from cerebelum.kube.approvers import webhook_configurations
from tests.harness import Cluster
from tests.harness.cluster import eventually, free_port
from tests.harness.operator import OperatorProcess

CRDS = Path(__file__).resolve().parents[2] / "crds"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


#: A workflow only the ValidatingAdmissionPolicy refuses (a goto to no step).
_POLICY_PROBE = {
    "apiVersion": "cerebelum.io/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": "policy-probe", "namespace": "default"},
    "spec": {"steps": [{"name": "a", "noop": {}, "next": [{"goto": "nowhere"}]}]},
}


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    """The project's CRDs and the Workflow's ValidatingAdmissionPolicy, installed once per
    session with the real kubectl, and waited for until the policy is enforced (the API
    server takes a moment to load a new policy)."""
    cluster.kubectl("apply", "-f", str(CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")

    def refused() -> bool:
        probe = cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", stdin=json.dumps(_POLICY_PROBE), check=False
        )
        return probe.returncode != 0 and POLICY_NAME in probe.stderr

    eventually(refused, timeout=60, interval=0.5)


@pytest.fixture
def operator(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The real operator process, watching only this test's namespace."""
    proc = OperatorProcess(cluster, namespace, tmp_path / "operator.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def webhook_operator(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The operator serving its webhooks, which the API server calls over TLS."""
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
