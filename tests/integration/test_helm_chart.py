"""The Helm chart: lint, server-side validation, and least-privilege RBAC proven by a real run.

The RBAC test installs the chart, then runs the operator with the token of the chart's
ServiceAccount (TokenRequest), not as admin, through workflows that use every permission.
The API server's audit log then shows which (verb, resource) pairs the operator used:
the Role must grant exactly those, nothing missing and nothing unused.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from cerebelum.kube.approvers import webhook_configurations
from tests.fakes import job_controller as jobs
from tests.fakes import python_steps
from tests.fakes.http_server import FakeHttpServer
from tests.harness import Cluster
from tests.harness.cluster import eventually, free_port
from tests.harness.operator import OperatorProcess
from tests.harness.worker import WorkerProcess
from tests.harness.workflows import wait_for_phase, workflow

CHART = Path(__file__).resolve().parents[2] / "charts" / "cerebelum-operator"
RELEASE = "cerebelum-operator"


def _template(cluster: Cluster, *args: str) -> str:
    """The chart as `helm template` renders it with ``args`` (flags and --set values)."""
    return cluster.helm("template", RELEASE, str(CHART), *args).stdout


def _docs(cluster: Cluster, *args: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(_template(cluster, *args)) if d]


def _namespaced(namespace: str) -> tuple[str, ...]:
    return ("--namespace", namespace, "--set", f"watchNamespaces={{{namespace}}}")


def test_chart_lints_clean(cluster: Cluster) -> None:
    result = cluster.helm("lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_rendered_manifests_pass_server_side_validation(
    cluster: Cluster, namespace: str, mode: str
) -> None:
    values = ["--set", f"watchNamespaces={{{namespace}}}"] if mode == "namespaced" else []
    values += [
        "--set",
        "pythonWorkers.queues[0].name=droplets",
        "--set",
        "pythonWorkers.queues[0].image=registry.example.com/steps:1",
        "--set",
        "pythonWorkers.queues[0].modules={deploy}",
    ]
    rendered = _template(cluster, "--namespace", namespace, *values)
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered) if d)
    expected_rbac = (
        ["Role", "RoleBinding"] if mode == "namespaced" else ["ClusterRole", "ClusterRoleBinding"]
    ) * 2  # the operator's and the workers'
    expected_rbac += ["Role", "RoleBinding"]  # the leader-election Lease
    expected_rbac += ["Role", "RoleBinding"]  # the wake-up hint's ConfigMap
    workers = ["ServiceAccount", "Deployment"]  # the workers' identity, queue "droplets"
    webhook = [
        "MutatingWebhookConfiguration",
        "Secret",
        "Service",
        "ValidatingWebhookConfiguration",
    ]
    assert kinds == sorted(["Deployment", "ServiceAccount", *expected_rbac, *webhook, *workers])
    # The API server validates every object against its own schemas (strict fields).
    cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-", stdin=rendered
    )


def test_chart_webhooks_match_the_operators_definition(cluster: Cluster, namespace: str) -> None:
    """The chart's webhook configurations are the ones the webhook tests run against."""
    charted = {
        (d["kind"], w["name"]): w
        for d in _docs(cluster, *_namespaced(namespace))
        if d["kind"].endswith("WebhookConfiguration")
        for w in d["webhooks"]
    }
    expected = {
        (d["kind"], w["name"]): w
        for d in webhook_configurations("x", "https://h", "Y2E=", [namespace])
        for w in d["webhooks"]
    }
    assert sorted(charted) == sorted(expected)
    assert ("ValidatingWebhookConfiguration", "spec.cerebelum.io") in charted
    for kind, hook in charted.items():
        want = dict(expected[kind])
        client = hook.pop("clientConfig")
        want.pop("clientConfig")
        assert client["service"]["path"] == "/" + want["name"].split(".")[0]
        assert base64.b64decode(client["caBundle"]).startswith(b"-----BEGIN CERTIFICATE-----")
        for webhook in (hook, want):
            if "matchConditions" not in webhook:
                continue
            webhook["matchConditions"] = [
                {**c, "expression": " ".join(c["expression"].split())}
                for c in webhook["matchConditions"]
            ]
        assert hook == want


def test_optional_parts_render(cluster: Cluster) -> None:
    kinds = {
        d["kind"]
        for d in _docs(
            cluster,
            "--set",
            "webhook.certManager.enabled=true",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        )
    }
    assert {"Certificate", "Issuer", "ServiceMonitor"} <= kinds and "Secret" not in kinds
    bare_kinds = {
        d["kind"]
        for d in _docs(cluster, "--set", "webhook.enabled=false", "--set", "metrics.enabled=false")
    }
    assert not bare_kinds & {
        "Service",
        "Secret",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }


def test_lease_name_is_a_value_so_releases_in_one_namespace_elect_apart(
    cluster: Cluster,
) -> None:
    """Two releases in one namespace (shards of namespaces) each need their own Lease, or
    one release's leader would hold the other's workflows back; the default stays the name
    a running release already holds."""

    def lease(*values: str) -> str:
        (deployment,) = [
            d
            for d in _docs(cluster, *values)
            if d["kind"] == "Deployment" and d["metadata"]["name"] == RELEASE  # its fullname
        ]
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        return str(next(e["value"] for e in env if e["name"] == "CEREBELUM_LEASE_NAME"))

    assert lease() == "cerebelum-operator"
    assert lease("--set", "leaderElection.leaseName=shard-b") == "shard-b"
    refused = cluster.helm(
        "template", RELEASE, str(CHART), "--set", "leaderElection.leaseName=Not_A_Name", check=False
    )
    assert refused.returncode != 0 and "leaseName" in refused.stderr


def test_callbacks_render_a_service_secrets_an_ingress_and_need_a_url(cluster: Cluster) -> None:
    docs = _docs(
        cluster,
        "--set",
        "callbacks.enabled=true",
        "--set",
        "callbacks.url=https://callbacks.example.com",
        "--set",
        "callbacks.ingress.enabled=true",
        "--set",
        "callbacks.ingress.host=callbacks.example.com",
    )
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    names = {name for _, name in by_name}
    assert {"cerebelum-operator-callback-key", "cerebelum-operator-callback-tls"} <= names
    assert ("Ingress", "cerebelum-operator-callbacks") in by_name
    service = by_name[("Service", "cerebelum-operator-callbacks")]
    assert service["spec"]["ports"] == [
        {"name": "callbacks", "port": 443, "targetPort": "callbacks"}
    ]
    key = by_name[("Secret", "cerebelum-operator-callback-key")]
    assert len(base64.b64decode(key["data"]["key"])) >= 16
    [deployment] = [
        d for d in docs if d["kind"] == "Deployment" and "operator" in d["metadata"]["name"]
    ]
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["CEREBELUM_CALLBACK_URL"] == "https://callbacks.example.com"
    assert env["CEREBELUM_CALLBACK_KEY_FILE"] == "/etc/cerebelum/callback-key/key"
    missing = cluster.helm(
        "template", "x", str(CHART), "--set", "callbacks.enabled=true", check=False
    )
    assert missing.returncode != 0 and "callbacks.url is required" in missing.stderr


def test_values_schema_refuses_bad_values(cluster: Cluster) -> None:
    bad = cluster.helm("template", RELEASE, str(CHART), "--set", "logFormat=xml", check=False)
    assert bad.returncode != 0 and "logFormat" in bad.stderr


def _granted(cluster: Cluster, namespace: str) -> set[tuple[str, str, str]]:
    roles = [
        d
        for d in _docs(cluster, *_namespaced(namespace))
        if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-worker")
    ]
    assert len(roles) == 3, "the watched namespace's Role, the leader-election and hint Roles"
    return {
        (group, resource, verb)
        for role in roles
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _used(audit_log: Path, username: str) -> tuple[set[tuple[str, str, str]], list[str]]:
    used, denied = set(), []
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef")
        if event["user"]["username"] != username or not ref:
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        if event.get("responseStatus", {}).get("code") == 403:
            denied.append(f"{event['verb']} {resource}")
        used.add((ref.get("apiGroup", ""), resource, event["verb"]))
    return used, denied


TEMPLATE = {
    "apiVersion": "cerebelum.io/v1alpha1",
    "kind": "WorkflowTemplate",
    "metadata": {"name": "greet"},
    "spec": {
        "inputs": {"properties": {"to": {"type": "string", "default": "world"}}},
        "steps": [{"name": "hello", "noop": {"with": {"to": "${{ inputs.to }}"}}}],
    },
}


def test_operator_runs_on_the_charts_least_privilege_rbac(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    if not cluster.is_local:
        pytest.skip("plays the job controller and reads the API server's audit log")
    # The in-cluster webhook needs the operator's pod behind its Service, which no kubelet
    # runs here; the webhooks are tested against the operator process in
    # test_approver_webhook.py, with the same configurations (see above).
    cluster.helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        f"watchNamespaces={{{namespace}}}",
        "--set",
        "webhook.enabled=false",
    )
    token = cluster.kubectl(
        "-n", namespace, "create", "token", RELEASE, "--duration=1h"
    ).stdout.strip()
    as_operator = cluster.kubeconfig_with_token(f"operator-{namespace}", token)
    operator = OperatorProcess(
        cluster,
        namespace,
        tmp_path / "operator.log",
        env={
            "KUBECONFIG": str(as_operator),
            "CEREBELUM_LEADER_ELECTION": "true",
            "CEREBELUM_LEASE_NAMESPACE": namespace,
            "CEREBELUM_POD_NAME": "operator-0",
            # As the chart's Deployment sets them (rewritten every second here, so that
            # the run both creates the ConfigMap and updates it).
            "CEREBELUM_WAKE_HINT": "true",
            "CEREBELUM_WAKE_HINT_NAMESPACE": namespace,
            "CEREBELUM_WAKE_HINT_NAME": f"{RELEASE}-wakeups",
            "CEREBELUM_WAKE_HINT_SECONDS": "1",
        },
    )
    operator.start()
    worker_token = cluster.kubectl(
        "-n", namespace, "create", "token", f"{RELEASE}-worker", "--duration=1h"
    ).stdout.strip()
    worker = WorkerProcess(
        cluster,
        namespace,
        tmp_path / "worker.log",
        [str(python_steps.PATH)],
        env={"KUBECONFIG": str(cluster.kubeconfig_with_token(f"worker-{namespace}", worker_token))},
    )
    worker.start()
    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", "api", "--from-literal=token=t0k3n"
    )
    job = {"image": "busybox", "args": ["true"]}
    try:
        with FakeHttpServer() as web:
            cluster.apply(
                workflow(
                    "everything",
                    [
                        {"name": "gate", "approval": {}},
                        {
                            "name": "call",
                            "http": {
                                "url": f"{web.url}/ok",
                                "headersFrom": [
                                    {
                                        "name": "X-Token",
                                        "secretKeyRef": {"name": "api", "key": "token"},
                                    }
                                ],
                            },
                        },
                        {"name": "run", "job": job},
                        {
                            "name": "stuck",
                            "job": job,
                            "timeout": "1s",
                            "next": [{"when": "error.errorClass == 'Timeout'", "continue": True}],
                        },
                        {"name": "py", "python": {"function": "python_steps:echo"}},
                        {
                            "name": "py_stuck",
                            "python": {"function": "python_steps:slow"},
                            "timeout": "1s",
                            "next": [{"when": "error.errorClass == 'Timeout'", "continue": True}],
                        },
                    ],
                ),
                namespace,
            )
            cluster.kubectl(
                "-n",
                namespace,
                "patch",
                "workflow",
                "everything",
                "--type=merge",
                "-p",
                '{"spec": {"ttlAfterFinished": "5s"}}',
            )
            cluster.apply(TEMPLATE, namespace)
            cluster.apply(
                {
                    "apiVersion": "cerebelum.io/v1alpha1",
                    "kind": "Workflow",
                    "metadata": {"name": "templated"},
                    "spec": {"templateRef": {"name": "greet"}, "ttlAfterFinished": "5s"},
                },
                namespace,
            )
            wait_for_phase(cluster, namespace, "everything", "WaitingForApproval")
            cluster.kubectl(
                "-n", namespace, "annotate", "workflow", "everything", "cerebelum.io/approve=gate"
            )
            [run_job] = jobs.wait_for_jobs(cluster, namespace, "everything", 1)
            jobs.complete(cluster, namespace, run_job, output={"ran": True})
            done = wait_for_phase(
                cluster, namespace, "everything", ("Succeeded", "Failed"), timeout=40
            )
            cluster.apply(
                {
                    "apiVersion": "cerebelum.io/v1alpha1",
                    "kind": "CronWorkflow",
                    "metadata": {"name": "tick"},
                    "spec": {
                        "schedule": "@every 1s",
                        "successfulHistoryLimit": 0,
                        "workflowSpec": {
                            "steps": [{"name": "a", "noop": {}}],
                            "ttlAfterFinished": "5s",
                        },
                    },
                },
                namespace,
            )
            templated = wait_for_phase(
                cluster, namespace, "templated", ("Succeeded", "Failed"), timeout=20
            )
            eventually(
                lambda: (
                    cluster.kubectl_json("-n", namespace, "get", "cronworkflow", "tick")
                    .get("status", {})
                    .get("lastSuccessfulTime")
                ),
                timeout=20,
            )
            cluster.kubectl("-n", namespace, "delete", "cronworkflow", "tick")
            assert templated["status"]["steps"]["hello"]["output"] == {"to": "world"}

            # ttlAfterFinished: the workflow, its StepRuns and its Jobs go.
            def left() -> list[str]:
                return [
                    f"{kind}/{item['metadata']['name']}"
                    for kind in ("workflows", "jobs")
                    for item in cluster.kubectl_json("-n", namespace, "get", kind)["items"]
                ]

            assert any(x.startswith("jobs/") for x in left()), "its Jobs are there at first"
            eventually(lambda: not left() or None, timeout=20)
            assert not cluster.kubectl_json("-n", namespace, "get", "stepruns")["items"]
    finally:
        operator.stop()
        worker.stop()
    assert done["status"]["phase"] == "Succeeded", done["status"]["message"]
    assert done["status"]["steps"]["py"]["output"]["step"] == "py"
    assert "HTTP 403" not in worker.logs(), worker.logs()
    assert done["status"]["steps"]["run"]["output"] == {"ran": True}
    assert done["status"]["steps"]["stuck"]["error"]["errorClass"] == "Timeout"
    # Timestamps carry milliseconds ("42,403]"), so a bare "403" would match by chance.
    assert not re.search(r"Forbidden|[\s(:]403[\s):]", operator.logs()), operator.logs()
    if cluster.control_plane is None:
        return  # an external cluster's audit log is not ours to read
    used, denied = _used(
        cluster.control_plane.audit_log, f"system:serviceaccount:{namespace}:{RELEASE}"
    )
    assert denied == [], f"the operator was refused: {denied}"
    worker_used, worker_denied = _used(
        cluster.control_plane.audit_log, f"system:serviceaccount:{namespace}:{RELEASE}-worker"
    )
    assert worker_denied == [], f"the worker was refused: {worker_denied}"
    assert ("cerebelum.io", "stepruns/status", "update") in worker_used
    granted = _granted(cluster, namespace)
    assert used - granted == set(), "used without being granted (should have been refused)"
    assert granted - used == set(), "granted but never used: remove from the chart's rules"


@pytest.fixture(scope="module")
def clean_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the package installed by the Dockerfile's two commands
    (`pip wheel .` within hack/constraints.txt, then `pip install` of the wheels): only
    runtime dependencies."""
    venv = tmp_path_factory.mktemp("image") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels = venv / "wheels"
    root = CHART.parents[1]
    constraints = ["--constraint", str(root / "hack" / "constraints.txt")]
    subprocess.run([*pip, "wheel", "--wheel-dir", str(wheels), *constraints, str(root)], check=True)
    subprocess.run([*pip, "install", *map(str, sorted(wheels.glob("*.whl")))], check=True)
    assert not (venv / "bin" / "pytest").exists(), "dev tools must not reach the image"
    return venv


def test_image_entrypoint_runs_the_operator_from_environment_settings(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path, clean_install: Path
) -> None:
    """`cerebelum operator` from a clean install, configured the way the chart configures it."""
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "CEREBELUM_WATCH_NAMESPACES": namespace,
        "CEREBELUM_LIVENESS_PORT": str(port),
        "CEREBELUM_LOG_FORMAT": "json",
        "CEREBELUM_WORKERS": "2",
    }
    log = tmp_path / "entrypoint.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(clean_install / "bin" / "cerebelum"), "operator"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthz", timeout=2
                ) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        eventually(healthy, timeout=30)
        cluster.apply(workflow("entry", [{"name": "a", "noop": {"with": {"ok": True}}}]), namespace)
        done = wait_for_phase(cluster, namespace, "entry", "Succeeded")
        assert done["status"]["steps"]["a"]["output"] == {"ok": True}
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines and all(json.loads(line) for line in lines), "json log format"
    assert any("cerebelum operator started with 2 workers" in line for line in lines)


def test_shards_by_namespace_each_release_runs_its_own_workflows_only(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    """The README's way past one leader: a release per group of namespaces. Two releases
    install side by side (no cluster-scoped name clashes), and each operator, on its own
    release's token, runs the workflows of its namespace and may not touch the other's."""
    if not cluster.is_local:
        pytest.skip("installs two releases and runs their operators as their service accounts")
    other = f"{namespace[:50]}-b"
    cluster.kubectl("create", "namespace", other)
    shards = {"shard-a": namespace, "shard-b": other}
    operators = []
    try:
        for release, ns in shards.items():
            cluster.helm(
                "install",
                release,
                str(CHART),
                "--namespace",
                ns,
                "--set",
                f"watchNamespaces={{{ns}}}",
                "--set",
                "webhook.enabled=false",
            )
            account = f"{release}-cerebelum-operator"  # the chart's fullname
            token = cluster.kubectl(
                "-n", ns, "create", "token", account, "--duration=1h"
            ).stdout.strip()
            operator = OperatorProcess(
                cluster,
                ns,
                tmp_path / f"{release}.log",
                env={
                    "KUBECONFIG": str(cluster.kubeconfig_with_token(f"{release}-{ns}", token)),
                    "CEREBELUM_LEADER_ELECTION": "true",
                    "CEREBELUM_LEASE_NAMESPACE": ns,
                    "CEREBELUM_POD_NAME": f"{release}-0",
                },
            )
            operator.start()
            operators.append(operator)
        for release, ns in shards.items():
            cluster.apply(
                workflow("job-1", [{"name": "a", "noop": {"with": {"shard": release}}}]), ns
            )
        for release, ns in shards.items():
            done = wait_for_phase(cluster, ns, "job-1", "Succeeded", timeout=30)
            assert done["status"]["steps"]["a"]["output"] == {"shard": release}
            lease = cluster.kubectl_json("-n", ns, "get", "lease", "cerebelum-operator")
            assert lease["spec"]["holderIdentity"] == f"{release}-0"
        a_token = cluster.kubectl(
            "-n", namespace, "create", "token", "shard-a-cerebelum-operator", "--duration=10m"
        ).stdout.strip()
        as_a = cluster.kubeconfig_with_token("shard-a-check", a_token)
        allowed = cluster.kubectl(
            "auth",
            "can-i",
            "update",
            "workflows.cerebelum.io/status",
            "-n",
            other,
            check=False,
            kubeconfig=as_a,
        )
        assert allowed.stdout.strip() == "no"
    finally:
        for operator in operators:
            operator.stop()
        for release, ns in shards.items():
            cluster.helm("uninstall", release, "--namespace", ns, check=False)
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)
