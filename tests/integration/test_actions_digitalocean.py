"""The digitalocean action through pydo, run by the real operator against the local fake API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cerebelum.actions.digitalocean import idempotency_tag
from cerebelum.api.durations import parse_time
from tests.fakes.digitalocean import FakeDigitalOcean
from tests.harness import Cluster
from tests.harness.operator import OperatorProcess
from tests.harness.sshd import SshServer, keygen, require_sshd
from tests.harness.workflows import get, wait_for_phase, workflow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/digitalocean-droplet.yaml"
TOKEN = "dop_v1_fake_token_0123456789abcdef_do_not_leak"
TOKEN_REF = {"name": "do-token", "key": "token"}
DROPLET = {
    "name": "web-${{ workflow.name }}",
    "region": "nyc3",
    "size": "s-1vcpu-1gb",
    "image": "ubuntu-24-04-x64",
}


@pytest.fixture
def fake_do() -> Iterator[FakeDigitalOcean]:
    with FakeDigitalOcean(TOKEN, active_after=1.0) as fake:
        yield fake


@pytest.fixture
def do_operator(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path, fake_do: FakeDigitalOcean
) -> Iterator[OperatorProcess]:
    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", "do-token", f"--from-literal=token={TOKEN}"
    )
    proc = OperatorProcess(
        cluster,
        namespace,
        tmp_path / "operator.log",
        env={"CEREBELUM_DIGITALOCEAN_ENDPOINT": fake_do.url},
    )
    proc.start()
    yield proc
    proc.stop()


def do_step(name: str, call: str, **extra: object) -> dict[str, object]:
    action: dict[str, object] = {"tokenSecretRef": TOKEN_REF, "call": call}
    for key in ("params", "body"):
        if key in extra:
            action[key] = extra.pop(key)
    return {"name": name, "digitalocean": action, **extra}


def test_droplet_lifecycle(
    cluster: Cluster, namespace: str, do_operator: OperatorProcess, fake_do: FakeDigitalOcean
) -> None:
    droplet_id = "${{ steps.create.output.droplet.id }}"
    cluster.apply(
        workflow(
            "life",
            [
                do_step("create", "droplets.create", body=DROPLET),
                do_step(
                    "ready",
                    "droplets.get",
                    params={"droplet_id": droplet_id},
                    poll={
                        "until": "output.droplet.status == 'active'",
                        "interval": "300ms",
                        "maxAttempts": 20,
                    },
                ),
                do_step(
                    "reboot",
                    "droplet_actions.post",
                    params={"droplet_id": droplet_id},
                    body={"type": "reboot"},
                ),
                do_step(
                    "action",
                    "actions.get",
                    params={"action_id": "${{ steps.reboot.output.action.id }}"},
                ),
                do_step(
                    "tagged",
                    "droplets.list",
                    params={"tag_name": "${{ steps.create.output.idempotencyTag }}"},
                ),
                do_step("delete", "droplets.delete", params={"droplet_id": droplet_id}),
            ],
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "life", ("Succeeded", "Failed"), timeout=30)
    steps = done["status"]["steps"]
    assert done["status"]["phase"] == "Succeeded", done["status"]["message"]
    assert steps["create"]["output"]["droplet"]["name"] == "web-life"
    assert steps["ready"]["attempts"] >= 2, "the droplet starts as new"
    assert steps["ready"]["output"]["droplet"]["networks"]["v4"][1]["ip_address"] == "127.0.0.1"
    assert steps["action"]["output"]["action"]["status"] == "completed"
    assert steps["tagged"]["output"]["meta"]["total"] == 1
    assert fake_do.droplet_count == 0


def test_rate_limit_is_retried_after_the_apis_retry_after(
    cluster: Cluster, namespace: str, do_operator: OperatorProcess, fake_do: FakeDigitalOcean
) -> None:
    fake_do.fail_next(429, count=2, retry_after=1)
    cluster.apply(
        workflow(
            "limited",
            [do_step("list", "droplets.list", retry={"limit": 3, "backoff": {"delay": "50ms"}})],
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "limited", ("Succeeded", "Failed"), timeout=30)
    step = done["status"]["steps"]["list"]
    assert done["status"]["phase"] == "Succeeded" and step["attempts"] == 3
    waited = (parse_time(step["lastAttemptAt"]) - parse_time(step["startedAt"])).total_seconds()
    assert waited >= 2.0, "two Retry-After: 1 waits, not the 50ms backoff"


def test_server_errors_are_retryable_and_can_exhaust(
    cluster: Cluster, namespace: str, do_operator: OperatorProcess, fake_do: FakeDigitalOcean
) -> None:
    fake_do.fail_next(500, count=10)
    cluster.apply(
        workflow(
            "down",
            [do_step("list", "droplets.list", retry={"limit": 2, "backoff": {"delay": "50ms"}})],
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "down", "Failed", timeout=30)
    step = done["status"]["steps"]["list"]
    assert step["attempts"] == 3 and step["error"]["errorClass"] == "ServerError"
    assert "injected fault 500" in step["error"]["message"]


def test_bad_token_is_fatal_and_not_retried(
    cluster: Cluster, namespace: str, do_operator: OperatorProcess, fake_do: FakeDigitalOcean
) -> None:
    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", "bad-token", "--from-literal=token=nope"
    )
    step = do_step("list", "droplets.list", retry={"limit": 3, "backoff": {"delay": "50ms"}})
    step["digitalocean"]["tokenSecretRef"] = {"name": "bad-token", "key": "token"}  # type: ignore[index]
    cluster.apply(workflow("denied", [step]), namespace)
    done = wait_for_phase(cluster, namespace, "denied", "Failed", timeout=30)
    result = done["status"]["steps"]["list"]
    assert result["attempts"] == 1 and result["error"]["errorClass"] == "Unauthorized"
    assert "Unable to authenticate you" in result["error"]["message"]


def test_slow_api_times_out_per_attempt(
    cluster: Cluster, namespace: str, do_operator: OperatorProcess, fake_do: FakeDigitalOcean
) -> None:
    fake_do.set_delay(3)
    cluster.apply(workflow("slow", [do_step("list", "droplets.list", timeout="500ms")]), namespace)
    done = wait_for_phase(cluster, namespace, "slow", "Failed", timeout=30)
    assert done["status"]["steps"]["list"]["error"]["errorClass"] == "Timeout"


def test_droplet_is_created_exactly_once_when_the_operator_dies_mid_create(
    cluster: Cluster, namespace: str, do_operator: OperatorProcess, fake_do: FakeDigitalOcean
) -> None:
    fake_do.stall_after_create(30)  # the droplet exists, but the reply never comes in time
    cluster.apply(workflow("once", [do_step("create", "droplets.create", body=DROPLET)]), namespace)
    deadline = time.monotonic() + 20
    while fake_do.droplet_count == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_do.droplet_count == 1
    assert get(cluster, namespace, "once")["status"]["steps"]["create"]["phase"] == "Running"
    do_operator.kill()  # after the API call, before the status write
    fake_do.stall_after_create(0)
    do_operator.start()
    done = wait_for_phase(cluster, namespace, "once", ("Succeeded", "Failed"), timeout=30)
    output = done["status"]["steps"]["create"]["output"]
    uid = done["metadata"]["uid"]
    tag = idempotency_tag(f"{uid}.create.1")
    assert done["status"]["phase"] == "Succeeded"
    assert output["adopted"] is True and output["idempotencyTag"] == tag
    assert fake_do.creates_by_tag[tag] == 1 and fake_do.droplet_count == 1


def test_the_token_appears_nowhere(
    cluster: Cluster, namespace: str, do_operator: OperatorProcess, fake_do: FakeDigitalOcean
) -> None:
    fake_do.fail_next(500, count=1)
    cluster.apply(
        workflow(
            "quiet",
            [
                do_step(
                    "create",
                    "droplets.create",
                    body=DROPLET,
                    retry={"limit": 1, "backoff": {"delay": "50ms"}},
                ),
                do_step("bad", "droplets.get", params={"droplet_id": 1}),
            ],
        ),
        namespace,
    )
    wait_for_phase(cluster, namespace, "quiet", "Failed", timeout=30)
    everything = "\n".join(
        [
            cluster.kubectl("-n", namespace, "get", "workflow", "quiet", "-o", "yaml").stdout,
            cluster.kubectl("-n", namespace, "get", "events", "-o", "yaml").stdout,
            cluster.kubectl("-n", namespace, "describe", "workflow", "quiet").stdout,
            do_operator.logs(),
        ]
    )
    assert "NotFound" in everything and "returned 404" in everything
    assert TOKEN not in everything


def _droplet_example(sshd: SshServer) -> dict[str, Any]:
    """The example as written, pointed at the local sshd (the fake API gives the droplet
    127.0.0.1 as its public IP) and with waits short enough for a test."""
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    manifest["spec"]["inputs"].update(sshPort=sshd.port, sshUser=sshd.user)
    for step in [*manifest["spec"]["steps"], *manifest["spec"]["finally"]]:
        if "poll" in step:
            step["poll"]["interval"] = "500ms"
        if "retry" in step:
            step["retry"]["backoff"]["delay"] = "300ms"
    return manifest


@pytest.fixture
def ssh_key(tmp_path: Path, cluster: Cluster, namespace: str) -> str:
    """The user's key pair, its private half in the Secret the example names; the public."""
    key = tmp_path / "id_ed25519"
    public = keygen(key)
    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", "ssh-key", f"--from-file=id_ed25519={key}"
    )
    return public


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    require_sshd()
    with SshServer(tmp_path / "sshd") as server:
        yield server


def test_the_droplet_example_runs_to_succeeded_over_real_ssh(
    cluster: Cluster,
    namespace: str,
    do_operator: OperatorProcess,
    fake_do: FakeDigitalOcean,
    sshd: SshServer,
    ssh_key: str,
) -> None:
    sshd.authorize(ssh_key)
    cluster.apply(_droplet_example(sshd), namespace)
    done = wait_for_phase(cluster, namespace, "deploy-web", ("Succeeded", "Failed"), timeout=60)
    steps = done["status"]["steps"]
    assert done["status"]["phase"] == "Succeeded", done["status"]["message"]
    assert steps["wait_for_droplet_ready"]["attempts"] >= 2, "the poll waited for the droplet"
    assert steps["wait_for_droplet_ready"]["output"]["droplet"]["status"] == "active"
    assert steps["verify_ssh"]["output"]["exitStatus"] is None, "verify only logs in"
    droplet_id = steps["create_droplet"]["output"]["droplet"]["id"]
    configured = steps["configure_server"]["output"]
    assert configured["exitStatus"] == 0
    assert f"droplet={droplet_id} configured=" in configured["stdout"]
    assert configured["hostKeyFingerprint"] == steps["verify_ssh"]["output"]["hostKeyFingerprint"]
    assert steps["delete_droplet"]["phase"] == "Skipped"
    assert fake_do.droplet_count == 1 and sshd.logins() == 2


def test_the_droplet_example_deletes_the_droplet_when_ssh_never_lets_it_in(
    cluster: Cluster,
    namespace: str,
    do_operator: OperatorProcess,
    fake_do: FakeDigitalOcean,
    sshd: SshServer,
    ssh_key: str,
) -> None:
    cluster.apply(_droplet_example(sshd), namespace)  # the key is never authorized
    done = wait_for_phase(cluster, namespace, "deploy-web", ("Succeeded", "Failed"), timeout=60)
    steps = done["status"]["steps"]
    assert done["status"]["phase"] == "Failed"
    assert steps["verify_ssh"]["attempts"] == 10, "10 tries, as the reference document does"
    assert steps["verify_ssh"]["error"]["errorClass"] == "AuthFailed"
    assert steps["configure_server"]["phase"] == "Cancelled"
    assert steps["delete_droplet"]["phase"] == "Succeeded", "the finally step deleted it"
    assert done["status"]["main"]["reason"] == "StepFailed"
    assert "step verify_ssh failed: AuthFailed" in done["status"]["message"]
    assert fake_do.droplet_count == 0 and sshd.logins() == 0
