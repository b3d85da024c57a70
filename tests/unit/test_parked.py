"""A restarted operator sets a waiting workflow's timer from its status, without reconciling
it, only when a reconciliation could do nothing else (engine.parked). The statuses here are
the ones the engine itself writes, with fake time."""

from __future__ import annotations

import datetime
from typing import Any

from cerebelum.api.durations import parse_time
from cerebelum.engine.parked import parked_until
from tests.unit.engine_driver import T0, Driver


def body(d: Driver, **meta: Any) -> dict[str, Any]:
    assert d.status is not None
    return {
        "apiVersion": "cerebelum.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf", "namespace": "ns", "generation": 1, **meta},
        "status": d.status.to_wire(),
    }


def sleeping() -> Driver:
    d = Driver({"steps": [{"name": "nap", "sleep": {"duration": "1h"}}, {"name": "b", "noop": {}}]})
    d.tick()
    return d


def test_a_sleeping_workflow_is_parked_until_its_wake_up() -> None:
    d = sleeping()
    assert parked_until(body(d)) == T0 + datetime.timedelta(hours=1)
    wire = body(d)
    assert parked_until(wire) == parse_time(wire["status"]["nextWakeAt"])


def test_an_approval_gate_is_parked_until_its_deadline() -> None:
    d = Driver({"steps": [{"name": "gate", "approval": {"timeout": "10m"}}]})
    d.tick()
    assert parked_until(body(d)) == T0 + datetime.timedelta(minutes=10)


def test_input_in_annotations_needs_a_reconciliation() -> None:
    d = Driver({"steps": [{"name": "gate", "approval": {"timeout": "10m"}}]})
    d.tick()
    for annotation in ("cerebelum.io/approve", "cerebelum.io/cancel", "callback.cerebelum.io/x"):
        assert parked_until(body(d, annotations={annotation: "gate"})) is None
    # Records are not input.
    created = {"cerebelum.io/created-by": "alice", "cerebelum.io/scheduled-time": "x"}
    assert parked_until(body(d, annotations=created)) is not None


def test_a_running_action_a_spec_edit_or_a_deletion_needs_a_reconciliation() -> None:
    running = Driver({"steps": [{"name": "call", "noop": {}}]}, defer=True)
    running.tick()
    assert running.status is not None and running.status.steps["call"].phase == "Running"
    assert parked_until(body(running)) is None
    d = sleeping()
    assert parked_until(body(d, generation=2)) is None
    assert parked_until(body(d, deletionTimestamp="2026-01-01T12:00:00Z")) is None


def test_finished_suspended_or_unreadable_workflows_are_not_parked() -> None:
    done = Driver({"steps": [{"name": "a", "noop": {}}]})
    done.tick()
    assert done.phase == "Succeeded"
    assert parked_until(body(done)) is None
    d = sleeping()
    wire = body(d)
    wire["status"]["phase"] = "Suspended"
    assert parked_until(wire) is None
    broken: dict[str, Any]
    for broken in ({"nextWakeAt": "soon"}, {"nextWakeAt": None}, {"steps": {"nap": {}}}):
        wire = body(d)
        wire["status"].update(broken)
        assert parked_until(wire) is None
    assert parked_until({"metadata": {}}) is None


def test_a_notice_being_sent_or_still_to_send_needs_a_reconciliation() -> None:
    d = Driver({"steps": [{"name": "gate", "approval": {"timeout": "10m"}}]})
    d.tick()
    notice = {"key": "uid-1.gate.1.ApprovalRequested", "target": "chat", "event": "x"}
    for pending in (
        {"attempts": 1, "sending": True},
        {"attempts": 0},
        {"attempts": 2, "nextAttemptAt": "2026-01-01T12:00:05Z"},
    ):
        wire = body(d)
        wire["status"]["notifications"] = [{**notice, **pending}]
        assert parked_until(wire) is None, pending
    wire = body(d)
    wire["status"]["notifications"] = [{**notice, "attempts": 1, "sentAt": "2026-01-01T12:00:01Z"}]
    assert parked_until(wire) == T0 + datetime.timedelta(minutes=10)
