"""Python steps end to end: the SDK renders, the operator creates StepRuns, real worker
processes claim and run them, against the real API server and the local fake DigitalOcean."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cerebelum.api.durations import parse_time
from cerebelum.devcluster.pki import CertificateAuthority
from cerebelum.sdk.loader import load_object
from tests.fakes import python_steps
from tests.fakes.digitalocean import FakeDigitalOcean
from tests.fakes.http_server import FakeHttpServer
from tests.harness import Cluster
from tests.harness.cli import cerebelum, cerebelum_background
from tests.harness.cluster import eventually
from tests.harness.operator import OperatorProcess
from tests.harness.sshd import SshServer, keygen, require_sshd
from tests.harness.worker import WorkerProcess
from tests.harness.workflows import get, wait_for_phase, workflow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "python"
TOKEN = "dop_v1_fake_sdk_token_0123456789_do_not_leak"


@pytest.fixture
def ssh_port() -> Iterator[int]:
    """Something listening where the droplet's SSH would be."""
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


@contextlib.contextmanager
def fake_digitalocean_https(tmp_path: Path) -> Iterator[tuple[FakeDigitalOcean, dict[str, str]]]:
    """The fake API over HTTPS (pydo sends its token over TLS only), and the environment a
    worker needs to reach it: the token, the endpoint and the CA that signed the fake."""
    ca = CertificateAuthority(tmp_path)
    pair = ca.issue("digitalocean", "127.0.0.1", server_ips=("127.0.0.1",))
    with FakeDigitalOcean(TOKEN, active_after=1.0, tls=(pair.cert, pair.key)) as fake:
        yield (
            fake,
            {
                "DIGITALOCEAN_TOKEN": TOKEN,
                "DIGITALOCEAN_ENDPOINT": fake.url,
                "REQUESTS_CA_BUNDLE": str(ca.cert_path),
            },
        )


def stepruns(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = cluster.kubectl_json("-n", namespace, "get", "stepruns")["items"]
    return result


def test_sdk_droplet_example_with_two_workers_and_a_worker_killed_mid_step(
    cluster: Cluster,
    crds: None,
    namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
    ssh_port: int,
) -> None:
    with fake_digitalocean_https(tmp_path) as (fake, env):
        workers = [
            WorkerProcess(
                cluster,
                namespace,
                tmp_path / f"worker-{i}.log",
                [str(EXAMPLES / "droplet.py")],
                queue="droplets",
                identity=f"worker-{i}",
                env=env,
            )
            for i in range(2)
        ]
        # The create answers only after a stall: the first worker to claim it is killed
        # while the droplet exists but before the step's result is written.
        fake.stall_after_create(30)
        for w in workers:
            w.start()
        try:
            applied = cerebelum(
                cluster,
                namespace,
                "apply",
                "examples/python/droplet.py:deploy_workflow",
                "--input",
                f"ssh_port={ssh_port}",
            )
            assert applied.returncode == 0, applied.stderr
            watcher = cerebelum_background(
                cluster, namespace, "watch", "deploy-workflow", "--timeout", "120"
            )

            def claimed_create() -> dict[str, Any]:
                runs = [
                    r for r in stepruns(cluster, namespace) if r["spec"]["step"] == "create_droplet"
                ]
                assert len(runs) == 1
                assert runs[0].get("status", {}).get("claimedBy") and fake.droplet_count == 1
                return runs[0]

            first = eventually(claimed_create, timeout=30)
            holder = first["status"]["claimedBy"]
            victim = next(w for w in workers if w.identity == holder)
            survivor = next(w for w in workers if w.identity != holder)
            victim.kill()
            fake.stall_after_create(0)

            wait_for_phase(cluster, namespace, "deploy-workflow", "WaitingForApproval", timeout=60)
            approved = cerebelum(
                cluster,
                namespace,
                "approve",
                "deploy-workflow",
                "go_live",
                "--reason",
                "looks good",
            )
            assert approved.returncode == 0, approved.stderr
            done = wait_for_phase(
                cluster, namespace, "deploy-workflow", ("Succeeded", "Failed"), timeout=60
            )
            try:
                out, err = watcher.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                watcher.kill()
                out, err = watcher.communicate()
                raise AssertionError(f"cerebelum watch did not exit:\n{out}\n{err}") from None
        finally:
            for w in workers:
                w.stop()
    status = done["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    assert watcher.returncode == 0, err
    assert "Succeeded" in out and "WaitingForApproval" in out
    # The droplet was created once, although two workers ran the create step.
    assert sum(fake.creates_by_tag.values()) == 1 and fake.droplet_count == 1
    assert status["steps"]["create_droplet"]["attempts"] == 1
    assert "claimed" in survivor.logs() and "(taken over)" in survivor.logs()
    ready = status["steps"]["wait_for_droplet_ready"]
    assert ready["output"]["ip"] == "127.0.0.1" and ready["attempts"] >= 1
    assert ready["checks"] == {"poll": True}
    assert status["steps"]["go_live"]["approval"]["decision"] == "Approved"
    assert status["steps"]["configure_server"]["output"] == {"configured": True, "ip": "127.0.0.1"}
    # A finished workflow's StepRuns are cleaned up.
    eventually(lambda: stepruns(cluster, namespace) == [] or None, timeout=10)
    for w in workers:
        assert TOKEN not in w.logs()
    assert TOKEN not in operator.logs()


def workflow_stepruns(cluster: Cluster, namespace: str, workflow: str) -> list[dict[str, Any]]:
    return [r for r in stepruns(cluster, namespace) if r["spec"]["workflow"] == workflow]


def test_the_reference_documents_example_runs_as_written_and_its_anti_pattern_too(
    cluster: Cluster,
    crds: None,
    namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    require_sshd()
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    ssh = SshServer(tmp_path / "sshd")
    # ~/.ssh/id_ed25519, where paramiko looks by default; OpenSSH's sshd lets it in.
    ssh.authorize(keygen(home / ".ssh" / "id_ed25519"))
    with fake_digitalocean_https(tmp_path) as (fake, env), ssh:
        fake.state.active_after = 6.0  # the blocking loop then sleeps twice: 10 s held
        env = {
            **env,
            "HOME": str(home),
            "SSH_PORT": str(ssh.port),
            "SSH_USER": ssh.user,
            "SSH_AUTH_SOCK": "",
        }
        as_written = WorkerProcess(
            cluster,
            namespace,
            tmp_path / "worker-default.log",
            [str(EXAMPLES / "reference.py")],
            identity="reference-worker",
            concurrency=2,
            env=env,
        )
        decorated = WorkerProcess(
            cluster,
            namespace,
            tmp_path / "worker-droplets.log",
            [str(EXAMPLES / "droplet.py")],
            queue="droplets",
            identity="decorator-worker",
            env=env,
        )
        as_written.start()
        decorated.start()
        try:
            applied = cerebelum(
                cluster, namespace, "apply", "examples/python/reference.py:deploy_workflow"
            )
            assert applied.returncode == 0, applied.stderr
            reference = wait_for_phase(
                cluster, namespace, "deploy-workflow", ("Succeeded", "Failed"), timeout=90
            )["status"]
            assert reference["phase"] == "Succeeded", reference.get("message")
            ready = reference["steps"]["wait_for_droplet_ready"]["output"]
            assert ready["ready"] is True and ready["ip"] == "127.0.0.1" and ready["attempts"] >= 2
            assert reference["steps"]["verify_ssh_access"]["output"] == {
                "ip": "127.0.0.1",
                "ssh_ready": True,
            }
            assert ssh.logins() >= 1  # a real SSH login with the key from ~/.ssh
            assert reference["steps"]["configure_server"]["output"] == {"configured": True}

            # The anti-pattern and the decorator version, side by side.
            for target, name in (
                ("examples/python/reference.py:blocking_workflow", "blocking"),
                ("examples/python/droplet.py:deploy_workflow", "decorated"),
            ):
                started = cerebelum(
                    cluster,
                    namespace,
                    "apply",
                    target,
                    "--name",
                    name,
                    "--input",
                    f"ssh_port={ssh.port}",
                )
                assert started.returncode == 0, started.stderr

            def polling_with_nothing_held() -> bool:
                before = get(cluster, namespace, "decorated")
                held = [
                    r
                    for r in workflow_stepruns(cluster, namespace, "decorated")
                    if (r.get("status") or {}).get("phase") == "Running"
                ]
                after = get(cluster, namespace, "decorated")
                same = before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
                return bool(same and after["status"]["phase"] == "Polling" and not held)

            # Between poll attempts the decorator version is a deadline in status: no StepRun
            # is running for it, no worker thread is held ...
            eventually(polling_with_nothing_held, timeout=30, interval=0.2)
            # ... while the blocking step keeps its claim (and a thread) for the whole wait.
            [blocked] = [
                r
                for r in workflow_stepruns(cluster, namespace, "blocking")
                if r["spec"]["step"] == "create_and_wait"
            ]
            assert blocked["status"]["phase"] == "Running"
            assert blocked["status"]["claimedBy"] == "reference-worker"

            wait_for_phase(cluster, namespace, "decorated", "WaitingForApproval", timeout=60)
            cluster.kubectl(
                "-n", namespace, "annotate", "workflow", "decorated", "cerebelum.io/approve=go_live"
            )
            for name in ("blocking", "decorated"):
                done = wait_for_phase(cluster, namespace, name, ("Succeeded", "Failed"), timeout=60)
                assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
        finally:
            as_written.stop()
            decorated.stop()
    assert get(cluster, namespace, "blocking")["status"]["steps"]["report"]["output"] == {
        "ip": "127.0.0.1"
    }
    assert "[1/30] Checking droplet" in as_written.logs()  # its print() output, as written
    assert TOKEN not in as_written.logs() + decorated.logs() + operator.logs()


FEATURES = (
    "sleep",
    "poll",
    "approval",
    "retry",
    "diverge",
    "branch",
    "parallel",
    "declarative",
    "helpers",
    "01_hello_world",
)


def _workflow_name(feature: str) -> str:
    """Examples define `<feature>_workflow`; the tutorial's module name starts with a digit."""
    return "hello_world_workflow" if feature == "01_hello_world" else f"{feature}_workflow"


def _comparable(output: Any) -> Any:
    """An output without what differs between two runs of the same step (HTTP response
    headers such as Date, a measured latency)."""
    if isinstance(output, dict):
        return {k: _comparable(v) for k, v in output.items() if k not in ("headers", "latencyMs")}
    return output


def _order(status: dict[str, Any], names: list[str]) -> list[str]:
    """Steps that ran, by the start of their last visit (steps started together: list order)."""
    steps = status.get("steps") or {}
    started = [n for n in names if (steps.get(n) or {}).get("startedAt")]
    return sorted(started, key=lambda n: (steps[n]["startedAt"], names.index(n)))


def test_every_dsl_feature_example_runs_to_its_end(
    cluster: Cluster, crds: None, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    modules = [str(EXAMPLES / f"{name}.py") for name in FEATURES if name != "declarative"]
    worker = WorkerProcess(cluster, namespace, tmp_path / "worker.log", modules, concurrency=4)
    worker.start()
    ssh = socket.create_server(("127.0.0.1", 0))
    try:
        with FakeHttpServer() as web:
            inputs = {
                "branch": ["--input", "environment=staging"],
                "declarative": [
                    "--input",
                    f"url={web.url}/ok",
                    "--input",
                    f"port={ssh.getsockname()[1]}",
                ],
            }
            for name in FEATURES:
                target = f"examples/python/{name}.py:{_workflow_name(name)}"
                applied = cerebelum(cluster, namespace, "apply", target, *inputs.get(name, []))
                assert applied.returncode == 0, applied.stderr
            again = cerebelum(
                cluster, namespace, "apply", "examples/python/sleep.py:sleep_workflow"
            )
            assert again.returncode == 1 and "sleep-workflow already exists" in again.stderr
            fresh = cerebelum(
                cluster,
                namespace,
                "apply",
                "examples/python/sleep.py:sleep_workflow",
                "--generate-name",
            )
            assert fresh.returncode == 0 and "sleep-workflow-" in fresh.stdout, fresh.stderr
            wait_for_phase(cluster, namespace, "approval-workflow", "WaitingForApproval")
            approved = cerebelum(
                cluster,
                namespace,
                "approve",
                "approval-workflow",
                "publish",
                "--reason",
                "release day",
                "--data",
                '{"channel": "stable"}',
            )
            assert approved.returncode == 0, approved.stderr
            # An approval the step's own code asked for (await wait_for_approval).
            asked = wait_for_phase(
                cluster, namespace, "helpers-workflow", "WaitingForApproval", timeout=30
            )
            assert asked["status"]["steps"]["review"]["paused"] == "Approval"
            assert asked["status"]["steps"]["review"]["output"] == {"document": "spec-v1"}
            approved = cerebelum(cluster, namespace, "approve", "helpers-workflow", "review")
            assert approved.returncode == 0, approved.stderr
            done = {}
            for name in FEATURES:
                wf = _workflow_name(name).replace("_", "-")
                done[name] = wait_for_phase(
                    cluster, namespace, wf, ("Succeeded", "Failed"), timeout=60
                )["status"]
                assert done[name]["phase"] == "Succeeded", (name, done[name].get("message"))
            # The same examples run here (wf.execute), with the same inputs and decisions,
            # against the same local servers.
            local_inputs: dict[str, dict[str, Any]] = {
                "branch": {"environment": "staging"},
                "declarative": {"url": f"{web.url}/ok", "port": ssh.getsockname()[1]},
            }
            approvals: dict[str, dict[str, Any]] = {
                "approval": {
                    "publish": {
                        "approve": True,
                        "reason": "release day",
                        "data": {"channel": "stable"},
                    }
                },
                "helpers": {"review": True},
            }
            ran_here = {
                name: load_object(f"{EXAMPLES / name}.py:{_workflow_name(name)}").execute_sync(
                    local_inputs.get(name, {}),
                    approvals=approvals.get(name, {}),
                    raise_on_failure=False,
                )
                for name in FEATURES
            }
    finally:
        ssh.close()
        worker.stop()

    def output(name: str, step: str) -> Any:
        return done[name]["steps"][step].get("output")

    later = done["sleep"]["steps"]["later"]
    assert later["sleepUntil"] and output("sleep", "later") == {
        "message": "hello",
        "after_sleep": True,
    }
    assert output("poll", "wait_until_ready") == {"ready": True, "looks": 3}
    assert done["poll"]["steps"]["wait_until_ready"]["attempts"] == 3
    assert output("poll", "wait_with_cel") == {"count": 2}
    assert output("approval", "publish") == {
        "version": "1.2.3",
        "channel": "stable",
        "reason": "release day",
    }
    assert output("retry", "call_flaky_service") == {"answered_on_attempt": 3}
    assert output("diverge", "finish") == {"rounds": 3}
    assert done["diverge"]["steps"]["optional_cleanup"]["phase"] == "Skipped"
    assert done["branch"]["steps"]["canary"]["phase"] == "Skipped"
    assert output("branch", "full_rollout") == {"rolled_out_to": "staging"}
    assert output("parallel", "ship") == {"shipped": True}
    assert output("declarative", "summary") == {"status": 200}
    assert not [
        r for r in stepruns(cluster, namespace) if r["spec"]["workflow"] == "declarative-workflow"
    ]
    helped = done["helpers"]["steps"]
    assert helped["request_review"]["output"] == {"document": "spec-v1"}
    assert parse_time(helped["review"]["startedAt"]) - parse_time(
        helped["request_review"]["startedAt"]
    ) >= datetime.timedelta(milliseconds=1500)  # the in-step sleep held the next step back
    assert output("helpers", "publish") == {
        "url": "https://docs.example/spec-v1",
        "looks": 3,
        "upload": "uploaded",
        "tries": 3,
    }
    assert output("01_hello_world", "greet") == "Hello, World!"

    # Differential: the local runner (wf.execute) and the operator agree on every example.
    for name in FEATURES:
        defined = load_object(f"{EXAMPLES / name}.py:{_workflow_name(name)}")
        local = ran_here[name]
        remote = done[name]
        names = [s["name"] for s in defined.render()["spec"]["steps"]]
        here = local.workflow_status.to_wire()
        assert local.status == "completed", (name, local.error, here["steps"])
        assert {n: s["phase"] for n, s in here["steps"].items()} == {
            n: s["phase"] for n, s in remote["steps"].items()
        }, name
        assert {n: _comparable(s.get("output")) for n, s in here["steps"].items()} == {
            n: _comparable(s.get("output")) for n, s in remote["steps"].items()
        }, name
        assert _order(here, names) == _order(remote, names), name


def test_a_step_no_worker_claims_warns_and_its_timeout_ends_it(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    operator = OperatorProcess(
        cluster,
        namespace,
        tmp_path / "operator.log",
        env={"CEREBELUM_UNCLAIMED_WARNING_SECONDS": "1"},
    )
    operator.start()
    try:
        cluster.apply(
            workflow(
                "orphan",
                [
                    {
                        "name": "compute",
                        "python": {"function": "jobs:compute", "queue": "nobody"},
                        "timeout": "4s",
                    }
                ],
            ),
            namespace,
        )

        def warning() -> str:
            events = cluster.kubectl_json("-n", namespace, "get", "events")["items"]
            return next((e["message"] for e in events if e["reason"] == "NoWorker"), "")

        message = eventually(warning, timeout=20)
        assert "no worker of queue nobody has claimed steprun orphan-compute-" in message
        assert "cerebelum worker --queue nobody" in message
        done = wait_for_phase(cluster, namespace, "orphan", "Failed", timeout=20)["status"]
        assert done["steps"]["compute"]["error"]["errorClass"] == "Timeout"
        # The timed-out attempt's StepRun is deleted: no worker arriving later runs it.
        eventually(lambda: stepruns(cluster, namespace) == [] or None, timeout=10)
    finally:
        operator.stop()


def test_an_operator_restarted_mid_step_picks_up_the_same_steprun(
    cluster: Cluster, crds: None, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    worker = WorkerProcess(cluster, namespace, tmp_path / "worker.log", [str(python_steps.PATH)])
    worker.start()
    try:
        cluster.apply(
            workflow(
                "restart",
                [
                    {
                        "name": "hold",
                        "python": {
                            "function": "python_steps:blocking",
                            "arguments": {"inputs": "${{ inputs }}"},
                        },
                    }
                ],
                inputs={"seconds": 3},
            ),
            namespace,
        )

        def claimed() -> bool:
            runs = stepruns(cluster, namespace)
            return bool(runs and (runs[0].get("status") or {}).get("phase") == "Running")

        eventually(claimed, timeout=20)
        operator.kill()  # the attempt is recorded; its result will come to a new process
        operator.start()
        done = wait_for_phase(cluster, namespace, "restart", ("Succeeded", "Failed"), timeout=30)
    finally:
        worker.stop()
    hold = done["status"]["steps"]["hold"]
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    assert hold["output"] == {"blocked": True} and hold["attempts"] == 1
    assert worker.logs().count("claimed ") == 1  # one run of the function, not two


def test_a_worker_frozen_past_its_lease_cannot_write_its_result_or_repeat_the_effect(
    cluster: Cluster, crds: None, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """SIGSTOP a worker mid-step until another took the step over and finished it, then
    SIGCONT: its result is refused (fencing) and its late side effect is refused by the
    fenced endpoint, so the effect happens once."""
    with FakeHttpServer() as web:
        frozen = WorkerProcess(
            cluster, namespace, tmp_path / "a.log", [str(python_steps.PATH)], identity="worker-a"
        )
        frozen.start()
        thawed = False
        try:
            cluster.apply(
                workflow(
                    "fenced",
                    [
                        {
                            "name": "effect",
                            "python": {
                                "function": "python_steps:fenced_effect",
                                "arguments": {"inputs": "${{ inputs }}"},
                            },
                        }
                    ],
                    inputs={"seconds": 1.5, "url": web.url},
                ),
                namespace,
            )

            def claimed_by_a() -> bool:
                runs = stepruns(cluster, namespace)
                return bool(runs) and (runs[0].get("status") or {}).get("claimedBy") == "worker-a"

            eventually(claimed_by_a, timeout=20, interval=0.05)
            assert frozen.proc is not None
            os.kill(frozen.proc.pid, signal.SIGSTOP)
            other = WorkerProcess(
                cluster,
                namespace,
                tmp_path / "b.log",
                [str(python_steps.PATH)],
                identity="worker-b",
            )
            other.start()
            try:
                done = wait_for_phase(
                    cluster, namespace, "fenced", ("Succeeded", "Failed"), timeout=40
                )
                runs = stepruns(cluster, namespace)
            finally:
                other.stop()
            os.kill(frozen.proc.pid, signal.SIGCONT)
            thawed = True
            assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
            output = done["status"]["steps"]["effect"]["output"]
            assert output["applied"] is True and output["token"] == 2, "worker-b's claim"
            assert "taken over" in other.logs()
            # worker-a wakes: its step applies its effect with token 1, which the endpoint
            # refuses; its result is dropped instead of written.
            key = output["key"]
            eventually(lambda: web.refused == [(key, 1)], timeout=20)
            eventually(
                lambda: (
                    "dropping the result" in frozen.logs()
                    or "was deleted before its result was written" in frozen.logs()
                ),
                timeout=20,
            )
            assert web.effects == {key: 1}
            assert runs == [] or all(
                (r["status"].get("resultClaim"), r["status"]["claims"]) == (2, 2) for r in runs
            )
        finally:
            if not thawed and frozen.proc is not None:
                os.kill(frozen.proc.pid, signal.SIGCONT)
            frozen.stop()
