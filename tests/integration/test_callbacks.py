"""Callback waits on the real API server: a local CI service that calls the operator back
over HTTPS, and every way a callback can be wrong, replayed, late or lost."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cerebelum.devcluster.pki import CertificateAuthority
from tests.fakes.ci_server import FakeCiServer, Plan
from tests.fakes.http_server import FakeHttpServer
from tests.harness import Cluster
from tests.harness.cluster import eventually, free_port
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import get, wait_for_phase, workflow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ci-build-callback.yaml"


@dataclass
class Callbacks:
    operator: OperatorProcess
    ca: Path
    url: str
    key: str


@pytest.fixture
def callbacks(cluster: Cluster, crds: None, namespace: str, tmp_path: Path) -> Iterator[Callbacks]:
    (tmp_path / "pki").mkdir()
    ca = CertificateAuthority(tmp_path / "pki")
    serving = ca.issue("callbacks", "cerebelum-callbacks", server_ips=("127.0.0.1",))
    port = free_port()
    key = secrets.token_hex(32)
    url = f"https://127.0.0.1:{port}"
    operator = OperatorProcess(
        cluster,
        namespace,
        tmp_path / "operator.log",
        env={
            "CEREBELUM_CALLBACK_KEY": key,
            "CEREBELUM_CALLBACK_URL": url,
            "CEREBELUM_CALLBACK_PORT": str(port),
            "CEREBELUM_CALLBACK_ADDR": "127.0.0.1",
            "CEREBELUM_CALLBACK_CERT": str(serving.cert),
            "CEREBELUM_CALLBACK_CERT_KEY": str(serving.key),
        },
    )
    operator.start()
    try:
        yield Callbacks(operator, ca.cert_path, url, key)
    finally:
        operator.stop()


def _build_step(ci: str, **callback: Any) -> dict[str, Any]:
    return {
        "name": "build",
        "http": {
            "method": "POST",
            "url": f"{ci}/builds",
            "body": {"callback": "${{ callback.url }}"},
            "expectStatus": [201],
        },
        "callback": {"timeout": "5m", **callback},
    }


def _no_token_anywhere(cluster: Cluster, namespace: str, tokens: list[str], logs: str) -> None:
    assert tokens
    dumped = json.dumps(cluster.kubectl_json("-n", namespace, "get", "workflows")) + json.dumps(
        cluster.kubectl_json("-n", namespace, "get", "events")
    )
    for token in tokens:
        mac = token.rsplit(".", 1)[1]
        assert mac not in dumped, "a callback token reached status, annotations or Events"
        assert mac not in logs, "a callback token reached the operator's log"


def test_the_ci_build_example_waits_for_the_ci_to_call_back(
    cluster: Cluster, namespace: str, callbacks: Callbacks
) -> None:
    with FakeCiServer(callbacks.ca, [Plan(delay=2.0)]) as ci:
        manifest = yaml.safe_load(EXAMPLE.read_text())
        manifest["spec"]["inputs"]["ciUrl"] = ci.url
        cluster.apply(manifest, namespace)
        waiting = wait_for_phase(cluster, namespace, "ci-build-callback", "WaitingForCallback")
        cb = waiting["status"]["steps"]["trigger_build"]["callback"]
        assert cb["tokenHash"] and cb["expiresAt"] and "token" not in cb
        done = wait_for_phase(cluster, namespace, "ci-build-callback", ("Succeeded", "Failed"))
        assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
        steps = done["status"]["steps"]
        assert steps["trigger_build"]["output"] == {
            "artifact": "app-1.0.tgz",
            "tests": "passed",
            "build": 1,
        }
        assert steps["trigger_build"]["callback"]["receivedBy"] == "http"
        assert steps["deploy"]["output"] == {"deployed": "app-1.0.tgz"}
        assert ci.calls == [(1, "callback", 202)]
        assert ci.builds[0]["callback"].startswith(callbacks.url + "/callbacks/v1.")
        annotations = cluster.kubectl_json("-n", namespace, "get", "workflow", "ci-build-callback")[
            "metadata"
        ].get("annotations", {})
        assert not [k for k in annotations if k.startswith("callback.cerebelum.io/")]
        token = ci.builds[0]["callback"].rsplit("/", 1)[1]
        _no_token_anywhere(cluster, namespace, [token], callbacks.operator.logs())


def test_a_wrong_replayed_or_expired_token_gets_the_same_404_and_changes_nothing(
    cluster: Cluster, namespace: str, callbacks: Callbacks
) -> None:
    with FakeCiServer(callbacks.ca, [Plan(delay=None)]) as ci:
        cluster.apply(workflow("once", [_build_step(ci.url)]), namespace)
        wait_for_phase(cluster, namespace, "once", "WaitingForCallback")
        url = ci.builds[0]["callback"]
        version, payload, mac = url.rsplit("/", 1)[1].split(".")
        forged = url.rsplit("/", 1)[0] + f"/{version}.{payload}.{'A' * len(mac)}"
        answers = {
            "forged": ci.post(forged, {"x": 1}),
            "garbage": ci.post(callbacks.url + "/callbacks/nonsense", {"x": 1}),
        }
        assert ci.post(url, {"result": "first"}) == (202, {"accepted": True})
        answers["replay"] = ci.post(url, {"result": "second"})
        answers["replayed heartbeat"] = ci.post(url + "/heartbeat")
        assert {json.dumps(a) for a in answers.values()} == {
            json.dumps((404, {"error": "no such callback"}))
        }, answers
        done = wait_for_phase(cluster, namespace, "once", ("Succeeded", "Failed"))
        assert done["status"]["steps"]["build"]["output"] == {"result": "first"}

        cluster.apply(workflow("late", [_build_step(ci.url, timeout="2s")]), namespace)
        failed = wait_for_phase(cluster, namespace, "late", ("Succeeded", "Failed"))
        assert failed["status"]["steps"]["build"]["error"]["errorClass"] == "CallbackTimeout"
        before = failed["metadata"]["resourceVersion"]
        assert ci.post(ci.builds[1]["callback"], {"x": 1}) == (404, {"error": "no such callback"})
        after = cluster.kubectl_json("-n", namespace, "get", "workflow", "late")
        assert after["metadata"]["resourceVersion"] == before, "a refused callback wrote nothing"


def test_a_bad_payload_gets_400_saying_why_and_the_step_keeps_waiting(
    cluster: Cluster, namespace: str, callbacks: Callbacks
) -> None:
    schema = {
        "type": "object",
        "required": ["artifact"],
        "properties": {"artifact": {"type": "string"}},
    }
    with FakeCiServer(callbacks.ca, [Plan(delay=None)]) as ci:
        cluster.apply(workflow("strict", [_build_step(ci.url, schema=schema)]), namespace)
        wait_for_phase(cluster, namespace, "strict", "WaitingForCallback")
        url = ci.builds[0]["callback"]
        status, body = ci.post(url, {"artifact": "x" * 40_000})
        assert status == 400 and "over the 32768-byte limit" in body["error"]
        status, body = ci.post(url, {"artifact": 7})
        assert status == 400 and "does not match the schema at artifact" in body["error"]
        status, body = ci.post(url, {"other": True})
        assert status == 400 and "'artifact' is a required property" in body["error"]
        time.sleep(1)
        obj = cluster.kubectl_json("-n", namespace, "get", "workflow", "strict")
        assert obj["status"]["steps"]["build"]["phase"] == "WaitingForCallback"
        assert ci.post(url, {"artifact": "ok.tgz"})[0] == 202
        done = wait_for_phase(cluster, namespace, "strict", ("Succeeded", "Failed"))
        assert done["status"]["steps"]["build"]["output"] == {"artifact": "ok.tgz"}


def test_a_missed_heartbeat_fails_the_attempt_and_retry_triggers_a_new_build(
    cluster: Cluster, namespace: str, callbacks: Callbacks
) -> None:
    plans = [Plan(delay=None), Plan(delay=1.0, heartbeats=3, heartbeat_every=0.6)]
    with FakeCiServer(callbacks.ca, plans) as ci:
        step = _build_step(ci.url, heartbeatTimeout="2s")
        step["retry"] = {"limit": 1, "retryOn": ["HeartbeatTimeout"], "backoff": {"delay": "1s"}}
        cluster.apply(workflow("beats", [step]), namespace)
        done = wait_for_phase(cluster, namespace, "beats", ("Succeeded", "Failed"), timeout=60)
        assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
        build = done["status"]["steps"]["build"]
        assert build["attempts"] == 2 and build["output"]["build"] == 2
        assert build["callback"]["lastHeartbeatAt"]
        assert ci.builds[0]["callback"] != ci.builds[1]["callback"], "a new attempt, a new token"
        assert [c[2] for c in ci.calls] == [202, 202, 202, 202]
        history = [h["reason"] for h in done["status"]["history"] if h.get("step") == "build"]
        assert "HeartbeatTimeout" in history or "Retrying" in history
        events = cluster.kubectl_json("-n", namespace, "get", "events")["items"]
        assert any(e["reason"] == "HeartbeatTimeout" for e in events)


def test_a_callback_given_while_the_operator_is_down_is_applied_once(
    cluster: Cluster, namespace: str, callbacks: Callbacks
) -> None:
    with FakeCiServer(callbacks.ca, [Plan(delay=None)]) as ci:
        cluster.apply(workflow("down", [_build_step(ci.url)]), namespace)
        wait_for_phase(cluster, namespace, "down", "WaitingForCallback")
        callbacks.operator.kill()
        cluster.kubectl(
            "-n",
            namespace,
            "annotate",
            "workflow",
            "down",
            "cerebelum.io/callback=build",
            'cerebelum.io/callback-data={"artifact": "by-hand.tgz"}',
        )
        callbacks.operator.start()
        done = wait_for_phase(cluster, namespace, "down", ("Succeeded", "Failed"))
        build = done["status"]["steps"]["build"]
        assert build["output"] == {"artifact": "by-hand.tgz"}
        assert build["callback"]["receivedBy"] == "kubectl"
        # The annotation goes right after the status write that used it (not in the same
        # write): look until it has gone.
        eventually(
            lambda: (
                "cerebelum.io/callback"
                not in (get(cluster, namespace, "down")["metadata"].get("annotations") or {})
            ),
            timeout=10,
        )
        succeeded = [
            h
            for h in done["status"]["history"]
            if h.get("step") == "build" and h["phase"] == "Succeeded"
        ]
        assert len(succeeded) == 1 and build["visits"] == 1 and build["attempts"] == 1
        # The HTTP token of that attempt is spent too.
        assert ci.post(ci.builds[0]["callback"], {"x": 1})[0] == 404


def test_an_echoed_token_is_scrubbed_from_the_output(
    cluster: Cluster, namespace: str, callbacks: Callbacks
) -> None:
    with FakeHttpServer() as web:
        step = {
            "name": "echo",
            "http": {
                "method": "POST",
                "url": f"{web.url}/echo",
                "body": {"cb": "${{ callback.url }}"},
            },
            "callback": {"timeout": "2s"},
        }
        cluster.apply(workflow("echoed", [step]), namespace)
        wait_for_phase(cluster, namespace, "echoed", ("Succeeded", "Failed"))
        sent = json.loads(web.requests[0]["body"])["cb"]
        token = sent.rsplit("/", 1)[1]
        _no_token_anywhere(cluster, namespace, [token], callbacks.operator.logs())


def test_a_callback_received_by_a_standby_during_a_leader_change_is_applied_once(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    cp = cluster.control_plane
    if cp is None:
        pytest.skip(
            "tells the replicas apart by client-certificate users of the local control plane"
        )
    (tmp_path / "pki").mkdir()
    ca = CertificateAuthority(tmp_path / "pki")
    serving = ca.issue("callbacks", "cerebelum-callbacks", server_ips=("127.0.0.1",))
    key = secrets.token_hex(32)
    ports = {name: free_port() for name in ("operator-a", "operator-b")}
    replicas = {
        name: OperatorProcess(
            cluster,
            namespace,
            tmp_path / f"{name}.log",
            env={
                "KUBECONFIG": str(cp.kubeconfig_for_user(name, ("system:masters",))),
                "CEREBELUM_LEADER_ELECTION": "true",
                "CEREBELUM_LEASE_NAMESPACE": namespace,
                "CEREBELUM_POD_NAME": name,
                "CEREBELUM_LEASE_SECONDS": "3",
                "CEREBELUM_LEASE_RENEW_SECONDS": "1",
                "CEREBELUM_CALLBACK_KEY": key,
                # One URL for both, as behind a Service; the test picks the replica.
                "CEREBELUM_CALLBACK_URL": "https://127.0.0.1:1",
                "CEREBELUM_CALLBACK_PORT": str(port),
                "CEREBELUM_CALLBACK_ADDR": "127.0.0.1",
                "CEREBELUM_CALLBACK_CERT": str(serving.cert),
                "CEREBELUM_CALLBACK_CERT_KEY": str(serving.key),
            },
        )
        for name, port in ports.items()
    }
    for replica in replicas.values():
        replica.start()
    try:
        with FakeCiServer(ca.cert_path, [Plan(delay=None)]) as ci:
            cluster.apply(workflow("handover", [_build_step(ci.url)]), namespace)
            wait_for_phase(cluster, namespace, "handover", "WaitingForCallback", timeout=60)
            lease = cluster.kubectl_json("-n", namespace, "get", "lease", "cerebelum-operator")
            leader = lease["spec"]["holderIdentity"]
            standby = next(n for n in replicas if n != leader)
            replicas[leader].kill()
            # At once, before the standby has the Lease: it records the callback anyway.
            path = ci.builds[0]["callback"].split("/callbacks/", 1)[1]
            url = f"https://127.0.0.1:{ports[standby]}/callbacks/{path}"
            assert ci.post(url, {"artifact": "handed-over.tgz"}) == (202, {"accepted": True})
            assert ci.post(url, {"artifact": "again.tgz"})[0] == 404
            done = wait_for_phase(
                cluster, namespace, "handover", ("Succeeded", "Failed"), timeout=60
            )
            build = done["status"]["steps"]["build"]
            assert build["output"] == {"artifact": "handed-over.tgz"} and build["attempts"] == 1
            assert _holder_of(cluster, namespace) == standby
    finally:
        for replica in replicas.values():
            replica.stop()


def _holder_of(cluster: Cluster, namespace: str) -> str:
    lease = cluster.kubectl_json("-n", namespace, "get", "lease", "cerebelum-operator")
    return str(lease["spec"].get("holderIdentity") or "")


def test_kubectl_explain_describes_the_new_fields(cluster: Cluster, crds: None) -> None:
    for path, words in {
        "workflow.spec.steps.callback": "outside system to call back",
        "workflow.spec.steps.callback.heartbeatTimeout": "HeartbeatTimeout",
        "workflow.spec.notify": "Send notices",
        "workflow.spec.notify.urlSecretRef": "webhook URL",
        "workflow.spec.steps.approval.required": "Distinct approvers",
        "workflow.spec.steps.approval.options": "cerebelum.io/choice",
        # Below its top level the status is one opaque value per field, whose text lists
        # the fields it holds (the API server then skips it on every status write).
        "workflow.status.steps": "callback.tokenHash (string): SHA-256",
        "workflow.status.notifications": "key (string): Dedupe key",
    }.items():
        # The API server publishes a new CRD's schema a moment after it is established.
        def explain(p: str = path) -> str:
            return str(cluster.kubectl("explain", p).stdout)

        out = eventually(explain, timeout=60)
        assert words in " ".join(out.split()), (path, out)
