"""The http and tcp actions, run by the real operator against real local servers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.fakes.http_server import FakeHttpServer
from tests.harness import Cluster
from tests.harness.cluster import free_port
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase, workflow

TOKEN = "s3cr3t-t0ken-value-that-must-never-leak"
FAST_RETRY = {"limit": 3, "backoff": {"delay": "100ms", "factor": 2}}


@pytest.fixture
def web() -> Iterator[FakeHttpServer]:
    with FakeHttpServer() as server:
        yield server


# -- http --------------------------------------------------------------------------------


def test_http_success_returns_status_headers_and_json(
    cluster: Cluster, namespace: str, operator: OperatorProcess, web: FakeHttpServer
) -> None:
    cluster.apply(workflow("get", [{"name": "check", "http": {"url": f"{web.url}/ok"}}]), namespace)
    done = wait_for_phase(cluster, namespace, "get", ("Succeeded", "Failed"))
    output = done["status"]["steps"]["check"]["output"]
    assert done["status"]["phase"] == "Succeeded", done["status"]["message"]
    assert output["status"] == 200 and output["body"] == {"healthy": True, "version": "1.4.2"}
    assert output["headers"]["Content-Type"] == "application/json"


def test_http_retryable_failure_then_success(
    cluster: Cluster, namespace: str, operator: OperatorProcess, web: FakeHttpServer
) -> None:
    cluster.apply(
        workflow(
            "flaky",
            [{"name": "call", "http": {"url": f"{web.url}/flaky/a/2"}, "retry": FAST_RETRY}],
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "flaky", ("Succeeded", "Failed"))
    step = done["status"]["steps"]["call"]
    assert done["status"]["phase"] == "Succeeded" and step["attempts"] == 3
    assert step["output"]["body"] == {"calls": 3}
    assert web.count("a") == 3


def test_http_client_error_is_fatal_even_with_retry(
    cluster: Cluster, namespace: str, operator: OperatorProcess, web: FakeHttpServer
) -> None:
    cluster.apply(
        workflow(
            "missing",
            [{"name": "call", "http": {"url": f"{web.url}/status/404"}, "retry": FAST_RETRY}],
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "missing", "Failed")
    error = done["status"]["steps"]["call"]["error"]
    assert done["status"]["steps"]["call"]["attempts"] == 1
    assert error["errorClass"] == "ClientError" and "returned 404" in error["message"]


def test_http_timeout_is_per_attempt_and_retryable(
    cluster: Cluster, namespace: str, operator: OperatorProcess, web: FakeHttpServer
) -> None:
    cluster.apply(
        workflow(
            "slow",
            [
                {
                    "name": "call",
                    "http": {"url": f"{web.url}/slow/3"},
                    "timeout": "300ms",
                    "retry": {"limit": 1, "backoff": {"delay": "100ms"}},
                }
            ],
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "slow", "Failed", timeout=20)
    step = done["status"]["steps"]["call"]
    assert step["attempts"] == 2 and step["error"]["errorClass"] == "Timeout"


def test_http_unreachable_endpoint_fails_clearly(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    port = free_port()
    cluster.apply(
        workflow("down", [{"name": "call", "http": {"url": f"http://127.0.0.1:{port}/"}}]),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "down", "Failed")
    error = done["status"]["steps"]["call"]["error"]
    assert error["errorClass"] == "ConnectionFailed" and error["retryable"] is True


def test_http_post_with_a_secret_header_never_leaks_the_secret(
    cluster: Cluster, namespace: str, operator: OperatorProcess, web: FakeHttpServer
) -> None:
    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", "api-token", f"--from-literal=token={TOKEN}"
    )
    cluster.apply(
        workflow(
            "post",
            [
                {
                    "name": "notify",
                    "http": {
                        "method": "POST",
                        "url": f"{web.url}/echo",
                        "headersFrom": [
                            {
                                "name": "Authorization",
                                "prefix": "Bearer ",
                                "secretKeyRef": {"name": "api-token", "key": "token"},
                            }
                        ],
                        "body": {"text": "deployed ${{ workflow.name }}"},
                    },
                },
                {
                    "name": "broken",
                    "http": {
                        "url": f"{web.url}/status/500?t=x",
                        "headersFrom": [
                            {
                                "name": "X-Token",
                                "secretKeyRef": {"name": "api-token", "key": "token"},
                            }
                        ],
                    },
                },
            ],
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "post", "Failed")
    sent = web.requests[0]
    assert sent["headers"]["Authorization"] == f"Bearer {TOKEN}", "the server got the real token"
    assert sent["headers"]["Idempotency-Key"].endswith(".notify.1")
    output = done["status"]["steps"]["notify"]["output"]
    assert output["body"]["headers"]["Authorization"] == "Bearer ***", "echoed secret is scrubbed"
    assert output["body"]["body"] == '{"text": "deployed post"}'
    everything = (
        cluster.kubectl("-n", namespace, "get", "workflow", "post", "-o", "yaml").stdout
        + cluster.kubectl("-n", namespace, "get", "events", "-o", "yaml").stdout
        + operator.logs()
    )
    assert TOKEN not in everything


def test_missing_secret_fails_the_step_with_a_clear_message(
    cluster: Cluster, namespace: str, operator: OperatorProcess, web: FakeHttpServer
) -> None:
    cluster.apply(
        workflow(
            "nosecret",
            [
                {
                    "name": "call",
                    "http": {
                        "url": f"{web.url}/ok",
                        "headersFrom": [
                            {"name": "X-Token", "secretKeyRef": {"name": "absent", "key": "token"}}
                        ],
                    },
                }
            ],
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "nosecret", "Failed")
    error = done["status"]["steps"]["call"]["error"]
    assert error["errorClass"] == "SecretNotFound"
    assert "secret 'absent' (key 'token')" in error["message"] and namespace in error["message"]
    assert web.requests == []


# -- tcp ---------------------------------------------------------------------------------


def test_tcp_reachable_port(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        cluster.apply(
            workflow("ssh", [{"name": "verify_ssh", "tcp": {"host": "127.0.0.1", "port": port}}]),
            namespace,
        )
        done = wait_for_phase(cluster, namespace, "ssh", ("Succeeded", "Failed"))
    output = done["status"]["steps"]["verify_ssh"]["output"]
    assert done["status"]["phase"] == "Succeeded"
    assert output["reachable"] is True and output["port"] == port and output["latencyMs"] >= 0


def test_tcp_refused_then_reachable_with_retry(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    port = free_port()
    cluster.apply(
        workflow(
            "late",
            [
                {
                    "name": "verify_ssh",
                    "tcp": {"host": "127.0.0.1", "port": str(port)},
                    "retry": {"limit": 20, "backoff": {"delay": "200ms", "factor": 1}},
                }
            ],
        ),
        namespace,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = cluster.kubectl_json("-n", namespace, "get", "workflow", "late").get("status", {})
        if status.get("steps", {}).get("verify_ssh", {}).get("attempts", 0) >= 2:
            break
        time.sleep(0.1)
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(8)
        done = wait_for_phase(cluster, namespace, "late", ("Succeeded", "Failed"))
    step = done["status"]["steps"]["verify_ssh"]
    assert done["status"]["phase"] == "Succeeded" and step["attempts"] >= 2
    history = [h for h in done["status"]["history"] if h.get("step") == "verify_ssh"]
    assert any("ConnectionRefused" in (h.get("message") or "") for h in history)


def test_tcp_bad_port_is_fatal(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(
        workflow(
            "bad",
            [{"name": "probe", "tcp": {"host": "127.0.0.1", "port": "ssh"}, "retry": FAST_RETRY}],
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "bad", "Failed")
    step = done["status"]["steps"]["probe"]
    assert step["attempts"] == 1 and step["error"]["errorClass"] == "InvalidAction"


def test_tcp_connect_timeout(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    """A listener whose accept queue is full drops new SYNs, so connecting times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        fillers.append(client)
    try:
        cluster.apply(
            workflow(
                "hang",
                [
                    {
                        "name": "probe",
                        "tcp": {"host": "127.0.0.1", "port": port, "connectTimeout": "500ms"},
                    }
                ],
            ),
            namespace,
        )
        done = wait_for_phase(cluster, namespace, "hang", ("Succeeded", "Failed"), timeout=20)
    finally:
        for client in fillers:
            client.close()
        server.close()
    error = done["status"]["steps"]["probe"].get("error") or {}
    assert done["status"]["phase"] == "Failed" and error.get("errorClass") == "Timeout", done[
        "status"
    ]


# -- the reference document's other cases ----------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POLL_EXAMPLES = {
    "ci-build-poll.yaml": ("ciUrl", "poll_build_status", 3),
    "database-ready-poll.yaml": ("dbApi", "poll_db_ready", 2),
    "certificate-poll.yaml": ("caApi", "poll_cert_issued", 2),
    "health-check.yaml": ("serviceUrl", "poll_health", 1),
}


@pytest.mark.parametrize("example", sorted(POLL_EXAMPLES))
def test_poll_example_runs_against_a_local_server(
    cluster: Cluster, namespace: str, operator: OperatorProcess, web: FakeHttpServer, example: str
) -> None:
    url_input, poll_step, attempts = POLL_EXAMPLES[example]
    manifest = yaml.safe_load((EXAMPLES / example).read_text())
    manifest["spec"]["inputs"][url_input] = web.url
    cluster.apply(manifest, namespace)
    name = manifest["metadata"]["name"]
    done = wait_for_phase(cluster, namespace, name, ("Succeeded", "Failed"), timeout=60)
    assert done["status"]["phase"] == "Succeeded", done["status"]["message"]
    assert done["status"]["steps"][poll_step]["attempts"] == attempts
