"""As users run it: the image built from the Dockerfile, Helm-installed on a real node.

A local node (containerd, kubelet, kube-proxy, controller-manager, scheduler) runs the chart's
pods: two operator replicas with leader election and the webhook, and a worker Deployment
with the example step modules. Job steps run real containers; nothing plays a controller.
Needs root on Linux; elsewhere the module is skipped with one line, unless
``CEREBELUM_REQUIRE_NODE=1`` (set by ``.ci/run``) turns the skip into a failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cerebelum.devcluster.binaries import ensure_binaries, ensure_node_binaries
from cerebelum.devcluster.images import Images, ensure_images
from cerebelum.devcluster.node import NODE_IP, LocalCluster
from tests.e2e.node_required import skip_without_node
from tests.fakes.digitalocean import FakeDigitalOcean
from tests.fakes.http_server import FakeHttpServer
from tests.harness import Cluster
from tests.harness.cluster import eventually
from tests.harness.sshd import SshServer
from tests.harness.workflows import wait_for_phase, workflow

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "cerebelum-operator"
RELEASE, SYSTEM, NS = "cerebelum", "cerebelum-system", "e2e"
TOKEN = "do-token-for-the-node-e2e"
SELECTOR = "app.kubernetes.io/instance=cerebelum,app.kubernetes.io/component=operator"

skip_without_node()


@pytest.fixture(scope="module")
def images() -> tuple[Images, list[Path]]:
    return ensure_images()


@pytest.fixture(scope="module")
def node(
    images: tuple[Images, list[Path]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    local = LocalCluster(ensure_binaries(), ensure_node_binaries(), archives=tuple(images[1]))
    with local:
        binaries = local.binaries
        yield Cluster(
            kubeconfig=local.plane.kubeconfig,
            kubectl_bin=binaries.kubectl,
            helm_bin=binaries.helm,
            workdir=tmp_path_factory.mktemp("node"),
            control_plane=local.plane,
        )
    left = local.leftovers()
    assert not left, f"the node left behind: {left}"


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FakeDigitalOcean, FakeHttpServer, SshServer]]:
    """The external services, on the node's address so pods reach them: the droplet's IP is
    the node's, where a real sshd accepts the user's key."""
    work = tmp_path_factory.mktemp("servers")
    with (
        FakeDigitalOcean(TOKEN, active_after=1.0, public_ip=NODE_IP, host=NODE_IP) as do,
        FakeHttpServer(host=NODE_IP) as web,
        SshServer(work / "sshd", host=NODE_IP) as sshd,
    ):
        sshd.new_client_key(work / "id_ed25519")
        yield do, web, sshd


def _values(images: Images, do_url: str) -> list[str]:
    repository, tag = images.operator.rsplit(":", 1)
    sets = {
        "image.repository": repository,
        "image.tag": tag,
        "image.pullPolicy": "Never",
        "replicaCount": "2",
        "leaderElection.enabled": "true",
        "leaderElection.leaseSeconds": "6",
        "leaderElection.renewSeconds": "2",
        "webhook.enabled": "true",
        "ui.enabled": "true",
        "ui.secureCookies": "false",
        "digitalocean.endpoint": do_url,
        "pythonWorkers.queues[0].name": "default",
        "pythonWorkers.queues[0].image": images.worker,
        "pythonWorkers.queues[0].pullPolicy": "Never",
        "pythonWorkers.queues[0].modules[0]": "01_hello_world",
        "pythonWorkers.queues[0].replicas": "1",
        "pythonWorkers.queues[0].lease": "5s",
    }
    args: list[str] = []
    for key, value in sets.items():
        args += ["--set-string" if key.endswith("tag") else "--set", f"{key}={value}"]
    return args


@pytest.fixture(scope="module")
def release(
    node: Cluster,
    images: tuple[Images, list[Path]],
    servers: tuple[FakeDigitalOcean, FakeHttpServer, SshServer],
) -> Iterator[list[str]]:
    values = _values(images[0], servers[0].url)
    node.kubectl("create", "namespace", NS)
    node.kubectl(
        "-n", NS, "create", "secret", "generic", "do-token", f"--from-literal=token={TOKEN}"
    )
    started = time.monotonic()
    result = node.helm(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        SYSTEM,
        "--create-namespace",
        "--wait",
        "--timeout",
        "4m",
        *values,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"helm install failed: {result.stderr}\n{_describe(node)}")
    print(f"helm install --wait took {time.monotonic() - started:.0f}s", file=sys.stderr)
    yield values


def _describe(node: Cluster) -> str:
    pods = node.kubectl("-n", SYSTEM, "get", "pods", "-o", "wide", check=False).stdout
    events = node.kubectl("-n", SYSTEM, "get", "events", "--sort-by=.lastTimestamp", check=False)
    logs = node.kubectl("-n", SYSTEM, "logs", "-l", SELECTOR, "--tail=30", check=False)
    return f"{pods}\n{events.stdout[-3000:]}\n{logs.stdout[-3000:]}{logs.stderr[-500:]}"


def _pods(node: Cluster, selector: str = SELECTOR) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = node.kubectl_json("-n", SYSTEM, "get", "pods", "-l", selector)[
        "items"
    ]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _leader(node: Cluster) -> str:
    leases = node.kubectl_json("-n", SYSTEM, "get", "leases")["items"]
    holders = [lease["spec"].get("holderIdentity") or "" for lease in leases]
    pods = {p["metadata"]["name"] for p in _pods(node)}
    [holder] = [h for h in holders if h in pods] or [""]
    assert holder, f"no operator pod holds a lease: {holders}"
    return holder


def test_operator_pods_become_ready_through_their_probes(node: Cluster, release: list[str]) -> None:
    pods = eventually(
        lambda: [p for p in _pods(node) if _ready(p)] if len(_pods(node)) == 2 else [], timeout=60
    )
    assert len(pods) == 2, _describe(node)
    for pod in pods:
        [container] = pod["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0, _describe(node)
    eventually(lambda: _leader(node), timeout=30)
    # The image runs as the Dockerfile says (uid 10001), reached through the kubelet by exec.
    name = pods[0]["metadata"]["name"]
    uid = node.kubectl(
        "-n", SYSTEM, "exec", name, "--", "python3", "-c", "import os; print(os.getuid())"
    )
    assert uid.stdout.strip() == "10001"


def test_the_chart_installs_the_policy_that_refuses_a_bad_spec(
    node: Cluster, release: list[str]
) -> None:
    """The chart's crds/ carries the Workflow's ValidatingAdmissionPolicy beside the CRD:
    `kubectl apply` of a goto to no step is refused by the API server itself, naming it."""
    bad = workflow("goto-nowhere", [{"name": "a", "noop": {}, "next": [{"goto": "nowhere"}]}])

    def refused() -> str:
        done = node.kubectl("-n", NS, "apply", "-f", "-", stdin=json.dumps(bad), check=False)
        return done.stderr if done.returncode else ""

    message = eventually(refused, timeout=60)
    assert "spec.steps: next[].goto must name a step of spec.steps" in message, message


def test_droplet_workflow_with_approval_through_the_webhook_service(
    node: Cluster,
    release: list[str],
    servers: tuple[FakeDigitalOcean, FakeHttpServer, SshServer],
) -> None:
    do, _, sshd = servers
    node.kubectl(
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "ssh-key",
        f"--from-file=id_ed25519={sshd.client_key}",
    )
    manifest = yaml.safe_load((ROOT / "examples" / "digitalocean-droplet.yaml").read_text())
    manifest["spec"]["inputs"].update(sshPort=sshd.port, sshUser=sshd.user)
    manifest["spec"]["steps"].insert(
        0, {"name": "go_live", "approval": {"message": "Create the droplet?"}}
    )
    for step in manifest["spec"]["steps"]:
        if "poll" in step:
            step["poll"]["interval"] = "1s"
        if "retry" in step:
            step["retry"]["backoff"]["delay"] = "1s"
    node.apply(manifest, NS)
    name = manifest["metadata"]["name"]
    wait_for_phase(node, NS, name, "WaitingForApproval", timeout=60)
    # Through the API server, which calls the webhook through the chart's Service.
    node.kubectl("-n", NS, "annotate", "workflow", name, "cerebelum.io/approve=go_live")
    done = wait_for_phase(node, NS, name, ("Succeeded", "Failed"), timeout=120)
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    assert done["status"]["steps"]["go_live"]["approval"]["decidedBy"] == "cerebelum-admin"
    assert do.droplet_count == 1
    configured = done["status"]["steps"]["configure_server"]["output"]
    assert configured["exitStatus"] == 0 and "configured=" in configured["stdout"]
    assert sshd.logins() == 2, "verify and configure logged in to the node's sshd from a pod"


def test_job_steps_run_real_containers(
    node: Cluster,
    release: list[str],
    images: tuple[Images, list[Path]],
    servers: tuple[FakeDigitalOcean, FakeHttpServer, SshServer],
) -> None:
    web = servers[1]
    image = images[0].util  # busybox only: sh, wget
    writes_output = 'echo \'{"from": "a real container", "answer": 42}\' > /dev/termination-log'
    # Fails (exit 1) while the endpoint answers 503, which it does once.
    flaky = (
        f"wget -q -O /dev/null {web.url}/flaky/node-job/1 && "
        'echo \'{"attempt": "second"}\' > /dev/termination-log'
    )
    node.apply(
        workflow(
            "jobs",
            [
                {
                    "name": "real",
                    "job": {"image": image, "command": ["sh", "-c", writes_output]},
                },
                {
                    "name": "flaky",
                    "job": {"image": image, "command": ["sh", "-c", flaky]},
                    "retry": {"limit": 3, "retryOn": ["JobFailed"], "backoff": {"delay": "1s"}},
                },
            ],
        ),
        NS,
    )
    done = wait_for_phase(node, NS, "jobs", ("Succeeded", "Failed"), timeout=180)
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    steps = done["status"]["steps"]
    assert steps["real"]["output"] == {"from": "a real container", "answer": 42}
    assert steps["flaky"]["output"] == {"attempt": "second"}
    assert steps["flaky"]["attempts"] == 2
    # The real Job controller ran them: each attempt's Job has its pod's outcome recorded.
    jobs = node.kubectl_json("-n", NS, "get", "jobs")["items"]
    outcomes = sorted(
        ("failed" if j["status"].get("failed") else "succeeded")
        for j in jobs
        if j["metadata"]["labels"].get("cerebelum.io/step") == "flaky"
    )
    assert outcomes == ["failed", "succeeded"], outcomes


def test_python_steps_run_in_the_charts_worker_pods(node: Cluster, release: list[str]) -> None:
    rendered = subprocess.run(
        [
            str(Path(sys.executable).with_name("cerebelum")),
            "render",
            str(ROOT / "examples" / "python" / "01_hello_world.py") + ":hello_world_workflow",
            "--input",
            "name=Node",
            "--name",
            "hello",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    node.apply(rendered, NS)
    done = wait_for_phase(node, NS, "hello", ("Succeeded", "Failed"), timeout=120)
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    assert done["status"]["steps"]["greet"]["output"] == "Hello, Node!"
    # Ran by the chart's worker pod (its log, read through the kubelet by `kubectl logs`).
    logs = node.kubectl(
        "-n", SYSTEM, "logs", "-l", "app.kubernetes.io/component=worker", "--tail=200"
    ).stdout
    assert re.search(rf"{NS}/hello\S* succeeded", logs), logs


def test_metrics_are_scraped_through_the_service(node: Cluster, release: list[str]) -> None:
    services = node.kubectl_json("-n", SYSTEM, "get", "services")["items"]
    [metrics] = [
        s for s in services if any(p.get("name") == "metrics" for p in s["spec"].get("ports", []))
    ]
    port = next(p["port"] for p in metrics["spec"]["ports"] if p["name"] == "metrics")
    url = f"http://{metrics['spec']['clusterIP']}:{port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    text = eventually(scrape, timeout=30)
    assert "cerebelum_reconcile_concurrency" in text


def test_the_ui_acts_with_the_users_token_and_its_own_may_do_nothing(
    node: Cluster, release: list[str]
) -> None:
    [ui] = node.kubectl_json(
        "-n", SYSTEM, "get", "services", "-l", "app.kubernetes.io/component=ui"
    )["items"]
    base = f"http://{ui['spec']['clusterIP']}:{ui['spec']['ports'][0]['port']}"
    eventually(
        lambda: urllib.request.urlopen(f"{base}/healthz", timeout=5).status == 200, timeout=90
    )
    # No token: the login page.
    with urllib.request.urlopen(f"{base}/", timeout=5) as answer:
        assert answer.url.endswith("/login") and "Sign in to Cerebelum" in answer.read().decode()
    # alice: a ServiceAccount allowed to read and annotate workflows in the namespace.
    node.kubectl("-n", NS, "create", "serviceaccount", "alice")
    node.kubectl(
        "-n",
        NS,
        "create",
        "role",
        "workflow-approver",
        "--verb=get,list,watch,patch",
        "--resource=workflows.cerebelum.io",
    )
    node.kubectl(
        "-n",
        NS,
        "create",
        "rolebinding",
        "alice-approves",
        "--role=workflow-approver",
        f"--serviceaccount={NS}:alice",
    )
    alice = node.kubectl("-n", NS, "create", "token", "alice").stdout.strip()
    who = f"system:serviceaccount:{NS}:alice"
    node.apply(
        workflow("ui-gate", [{"name": "gate", "approval": {"approvers": {"users": [who]}}}]), NS
    )
    wait_for_phase(node, NS, "ui-gate", "WaitingForApproval", timeout=60)

    def call(path: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            headers |= {
                "Content-Type": "application/json",
                "X-CSRF-Token": "t",
                "Cookie": "cerebelum_csrf=t",
            }
            data = json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode()

    status, page = call(f"/api/waiting?ns={NS}", alice)
    assert status == 200 and '"step": "gate"' in page, page
    status, answer = call(
        f"/api/workflows/{NS}/ui-gate/approve", alice, {"step": "gate", "reason": "from the UI"}
    )
    assert status == 200, answer
    done = wait_for_phase(node, NS, "ui-gate", "Succeeded", timeout=60)
    assert done["status"]["steps"]["gate"]["approval"]["decidedBy"] == who
    # The UI's own ServiceAccount: no token is mounted, and one made for it can read nothing.
    account = ui["metadata"]["name"]  # the Service and the ServiceAccount share the name
    own = node.kubectl("-n", SYSTEM, "create", "token", account).stdout.strip()
    as_ui = node.kubeconfig_with_token("ui-account", own)
    refused = node.kubectl("-n", NS, "get", "workflows", check=False, kubeconfig=as_ui)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()
    status, answer = call(f"/api/workflows?ns={NS}", own)
    assert status == 403, answer
    [pod] = _pods(node, "app.kubernetes.io/component=ui")
    assert pod["spec"].get("automountServiceAccountToken") is False


def test_deleting_the_leader_pod_mid_run_loses_nothing(
    node: Cluster,
    release: list[str],
    servers: tuple[FakeDigitalOcean, FakeHttpServer, SshServer],
) -> None:
    web = servers[1]
    before = set(web.effects)
    names = [f"survivor-{i}" for i in range(10)]
    for name in names:
        node.apply(
            workflow(
                name,
                [
                    {"name": "nap", "sleep": {"duration": "4s"}},
                    {"name": "effect", "http": {"method": "POST", "url": f"{web.url}/effect"}},
                    {"name": "after", "sleep": {"duration": "1s"}},
                ],
            ),
            NS,
        )
    leader = eventually(lambda: _leader(node), timeout=30)
    time.sleep(1)
    node.kubectl("-n", SYSTEM, "delete", "pod", leader, "--force", "--grace-period=0")
    at_deletion = set(web.effects)
    for name in names:
        done = wait_for_phase(node, NS, name, ("Succeeded", "Failed"), timeout=120)
        assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    effects = {key: n for key, n in web.effects.items() if key not in before}
    assert len(effects) == len(names), effects  # every workflow's POST applied...
    assert set(effects.values()) == {1}, effects  # ...exactly once
    assert set(effects) - at_deletion, "some POSTs were still to come when the leader died"
    eventually(lambda: _leader(node) != leader, timeout=60)


def test_upgrade_with_a_new_certificate_then_uninstall_leaves_nothing(
    node: Cluster, release: list[str]
) -> None:
    def ca_bundle() -> str:
        hooks = node.kubectl_json("get", "validatingwebhookconfigurations")["items"]
        return str(hooks[0]["webhooks"][0]["clientConfig"]["caBundle"])

    before = ca_bundle()
    node.helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        SYSTEM,
        "--wait",
        "--timeout",
        "3m",
        *release,
        timeout=240,
    )
    assert ca_bundle() != before, "the upgrade issues a new certificate"
    node.apply(workflow("after-upgrade", [{"name": "ok", "approval": {}}]), NS)
    wait_for_phase(node, NS, "after-upgrade", "WaitingForApproval", timeout=60)
    eventually(
        lambda: (
            node.kubectl(
                "-n", NS, "annotate", "workflow", "after-upgrade", "cerebelum.io/approve=ok"
            ).returncode
            == 0
        ),
        timeout=60,
    )
    wait_for_phase(node, NS, "after-upgrade", "Succeeded", timeout=60)

    node.helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", "--timeout", "2m", timeout=180)

    def nothing_left() -> bool:
        kinds = "deployments,replicasets,pods,services,secrets,serviceaccounts,roles,rolebindings"
        left = node.kubectl("-n", SYSTEM, "get", kinds, "-o", "name").stdout.split()
        left = [n for n in left if not n.endswith("/default") and "kube-root-ca" not in n]
        cluster_wide = node.kubectl(
            "get",
            "clusterroles,clusterrolebindings,validatingwebhookconfigurations,mutatingwebhookconfigurations",
            "-l",
            "app.kubernetes.io/instance=cerebelum",
            "-o",
            "name",
        ).stdout.split()
        assert not left and not cluster_wide, (left, cluster_wide)
        return True

    eventually(nothing_left, timeout=90)
