"""The API server under test behaves like a real cluster: CRDs, status, watch, tokens, RBAC."""

from __future__ import annotations

import json
import queue
import threading

import pytest

from cerebelum.devcluster.pins import KUBERNETES_VERSION
from tests.harness import Cluster
from tests.harness.cluster import eventually

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.cerebelum.io"},
    "spec": {
        "group": "smoke.cerebelum.io",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {
                                "type": "object",
                                "properties": {"value": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def test_version_is_the_pinned_release(cluster: Cluster) -> None:
    if not cluster.is_local:
        pytest.skip("an external cluster runs its own version")
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == KUBERNETES_VERSION
    client = json.loads(cluster.kubectl("version", "--client", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == KUBERNETES_VERSION


def test_crd_status_subresource_and_watch(cluster: Cluster, namespace: str) -> None:
    cluster.apply(WIDGET_CRD)
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.smoke.cerebelum.io", "--timeout=30s"
    )
    cluster.apply(
        {
            "apiVersion": "smoke.cerebelum.io/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 3},
        },
        namespace,
    )

    watch = cluster.kubectl_watch(
        "-n", namespace, "get", "widget", "w1", "-o", 'jsonpath={.status.value}{"\\n"}'
    )
    seen: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert watch.stdout is not None
        for line in watch.stdout:
            seen.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert seen.get(timeout=15) == ""  # the initial state: no status yet
        # Writing status through the main resource is ignored when a status subresource exists.
        cluster.kubectl(
            "-n",
            namespace,
            "patch",
            "widget",
            "w1",
            "--type=merge",
            "-p",
            '{"status": {"value": "ignored"}}',
        )
        cluster.kubectl(
            "-n",
            namespace,
            "patch",
            "widget",
            "w1",
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status": {"value": "hello"}}',
        )
        values = [seen.get(timeout=15)]
        while values[-1] != "hello":
            values.append(seen.get(timeout=15))
        assert "ignored" not in values
    finally:
        watch.terminate()
        watch.wait(timeout=10)
    obj = cluster.kubectl_json("-n", namespace, "get", "widget", "w1")
    assert obj["status"] == {"value": "hello"}
    assert obj["spec"] == {"size": 3}


def test_service_account_token_is_subject_to_rbac(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "reader")
    cluster.kubectl("-n", namespace, "create", "configmap", "settings", "--from-literal=color=blue")
    token = cluster.kubectl(
        "-n", namespace, "create", "token", "reader", "--duration=10m"
    ).stdout.strip()
    as_reader = cluster.kubeconfig_with_token(f"reader-{namespace}", token)

    who = cluster.kubectl_json("auth", "whoami", kubeconfig=as_reader)
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:reader"

    denied = cluster.kubectl(
        "-n", namespace, "get", "configmap", "settings", kubeconfig=as_reader, check=False
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    assert f"system:serviceaccount:{namespace}:reader" in denied.stderr

    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "role",
        "read-configmaps",
        "--verb=get,list",
        "--resource=configmaps",
    )
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "reader-reads",
        "--role=read-configmaps",
        f"--serviceaccount={namespace}:reader",
    )

    def allowed() -> str:
        return str(
            cluster.kubectl_json(
                "-n", namespace, "get", "configmap", "settings", kubeconfig=as_reader
            )["data"]["color"]
        )

    assert eventually(allowed) == "blue"
    # The binding grants exactly what it names: writes stay forbidden.
    still_denied = cluster.kubectl(
        "-n", namespace, "delete", "configmap", "settings", kubeconfig=as_reader, check=False
    )
    assert still_denied.returncode != 0 and "forbidden" in still_denied.stderr.lower()
