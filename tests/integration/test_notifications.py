"""Notices to a local Slack-shaped webhook: one per gate visit, retried while the receiver
is down without delaying the workflow, and resent with the same dedupe key after a crash."""

from __future__ import annotations

import base64
import time
from typing import Any

from tests.fakes.notify_receiver import NotifyReceiver
from tests.harness import Cluster
from tests.harness.cluster import eventually
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase, workflow


def _secret(cluster: Cluster, namespace: str, url: str) -> None:
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "chat-hook"},
            "data": {"url": base64.b64encode(url.encode()).decode()},
        },
        namespace,
    )


def _gate(name: str, *, on: list[str] | None = None) -> dict[str, Any]:
    target: dict[str, Any] = {
        "name": "chat",
        "urlSecretRef": {"name": "chat-hook", "key": "url"},
        "format": "Slack",
    }
    if on:
        target["on"] = on
    manifest = workflow(
        name, [{"name": "go_live", "approval": {"timeout": "10m", "message": "ship it?"}}]
    )
    manifest["spec"]["notify"] = [target]
    return manifest


def _approve(cluster: Cluster, namespace: str, name: str) -> None:
    cluster.kubectl("-n", namespace, "annotate", "workflow", name, "cerebelum.io/approve=go_live")


def _notifications(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    obj = cluster.kubectl_json("-n", namespace, "get", "workflow", name)
    return list((obj.get("status") or {}).get("notifications") or [])


def test_one_notice_per_gate_visit_and_one_at_the_end(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with NotifyReceiver() as chat:
        _secret(cluster, namespace, chat.url + "/hooks/T000/B000/secret-part")
        cluster.apply(_gate("notified"), namespace)
        wait_for_phase(cluster, namespace, "notified", "WaitingForApproval")
        eventually(lambda: len(chat.received) == 1 or None, timeout=15)
        first = chat.received[0]
        assert "step go_live waits for approval: ship it?" in first["text"]
        assert "cerebelum.io/approve=go_live" in first["blocks"][1]["text"]["text"]
        _approve(cluster, namespace, "notified")
        wait_for_phase(cluster, namespace, "notified", "Succeeded")
        eventually(lambda: len(chat.received) == 2 or None, timeout=15)
        time.sleep(2)
        assert len(chat.requests) == 2, "exactly one notice per gate visit, one at the end"
        keys = [headers.get("Idempotency-Key") for _, headers in chat.requests]
        assert keys == [
            f"{_uid(cluster, namespace, 'notified')}.go_live.1.approval",
            f"{_uid(cluster, namespace, 'notified')}.end",
        ]
        notes = _notifications(cluster, namespace, "notified")
        assert all(n.get("sentAt") and not n.get("lastError") for n in notes)
    assert "secret-part" not in operator.logs()


def _uid(cluster: Cluster, namespace: str, name: str) -> str:
    return str(cluster.kubectl_json("-n", namespace, "get", "workflow", name)["metadata"]["uid"])


def test_a_receiver_down_for_10s_gets_the_notice_later_and_the_workflow_is_not_delayed(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with NotifyReceiver() as chat:
        _secret(cluster, namespace, chat.url + "/hooks/x")
        chat.down_for(10)
        cluster.apply(_gate("patient"), namespace)
        wait_for_phase(cluster, namespace, "patient", "WaitingForApproval")
        eventually(lambda: len(chat.requests) >= 2 or None, timeout=15)
        [note] = _notifications(cluster, namespace, "patient")
        assert not note.get("sentAt") and "503" in (note.get("lastError") or "")
        _approve(cluster, namespace, "patient")  # the gate does not wait for the notice
        wait_for_phase(cluster, namespace, "patient", "Succeeded", timeout=10)
        eventually(lambda: len(chat.received) >= 2 or None, timeout=40)
        keys = {headers["Idempotency-Key"] for _, headers in chat.requests}
        assert len(keys) == 2, "retries carry the notice's own key"
        events = cluster.kubectl_json("-n", namespace, "get", "events")["items"]
        assert any(e["reason"] == "NotificationFailed" for e in events)


def test_a_notice_sent_when_the_operator_died_is_resent_with_the_same_key(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with NotifyReceiver() as chat:
        _secret(cluster, namespace, chat.url + "/hooks/x")
        chat.hold_next = 5.0  # the first send arrives, then the operator dies before the answer
        cluster.apply(_gate("crash", on=["Approval"]), namespace)
        eventually(lambda: len(chat.requests) == 1 or None, timeout=15)
        operator.kill()
        operator.start()
        eventually(
            lambda: (len(chat.received) >= 1 and len(chat.requests) >= 2) or None, timeout=30
        )
        keys = [headers["Idempotency-Key"] for _, headers in chat.requests]
        assert len(set(keys)) == 1, keys
        eventually(
            lambda: _notifications(cluster, namespace, "crash")[0].get("sentAt") or None, timeout=15
        )
