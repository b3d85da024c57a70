"""Our kinds' short names clash with nothing: not a built-in kind, not a common CRD."""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from cerebelum.api.crd import build_crd, build_steprun_crd
from tests.harness import Cluster

#: Short names of widely installed workflow and platform CRDs (their own manifests):
#: Argo Workflows, Tekton Pipelines, cert-manager.
COMMON_CRDS = {
    "wf": "argoproj.io Workflow",
    "cwf": "argoproj.io CronWorkflow",
    "cronwf": "argoproj.io CronWorkflow",
    "wftmpl": "argoproj.io WorkflowTemplate",
    "cwftmpl": "argoproj.io ClusterWorkflowTemplate",
    "wfeb": "argoproj.io WorkflowEventBinding",
    "pr": "tekton.dev PipelineRun",
    "tr": "tekton.dev TaskRun",
    "cert": "cert-manager.io Certificate",
    "cr": "cert-manager.io CertificateRequest",
}


def _ours() -> dict[str, str]:
    return {
        short: crd["spec"]["names"]["kind"]
        for crd in (build_crd(), build_steprun_crd())
        for short in crd["spec"]["names"].get("shortNames", [])
    }


def test_no_short_name_of_ours_is_a_built_in_or_a_common_crds(cluster: Cluster, crds: None) -> None:
    rows = cluster.kubectl("api-resources", "--no-headers").stdout.splitlines()
    taken: dict[str, list[str]] = {}
    for row in rows:
        cells = row.split()
        # NAME SHORTNAMES APIVERSION NAMESPACED KIND (SHORTNAMES may be empty)
        if len(cells) == 5:
            for short in cells[1].split(","):
                taken.setdefault(short, []).append(f"{cells[2]} {cells[4]}")
    ours = _ours()
    assert set(ours) == {"cbwf", "cbsr"}
    for short, kind in ours.items():
        assert taken.get(short) == [f"cerebelum.io/v1alpha1 {kind}"], (short, taken.get(short))
        assert short not in COMMON_CRDS, (short, COMMON_CRDS[short])
    # The one an earlier version took is a cluster admin's again.
    assert taken["csr"] == ["certificates.k8s.io/v1 CertificateSigningRequest"]
    name = "short-name-check"
    cluster.apply(_csr(name))
    try:
        listed = cluster.kubectl_json("get", "csr")
        assert name in [i["metadata"]["name"] for i in listed["items"]]
        assert {i["kind"] for i in listed["items"]} == {"CertificateSigningRequest"}
    finally:
        cluster.kubectl("delete", "csr", name, "--ignore-not-found")


def _csr(name: str) -> dict[str, object]:
    """A CertificateSigningRequest as a cluster admin would see one."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone")]))
        .sign(key, hashes.SHA256())
    )
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(request.public_bytes(Encoding.PEM)).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
        },
    }
