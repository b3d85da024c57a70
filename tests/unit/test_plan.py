"""The shell's plan of a reconciliation, and the one place it is applied.

The rule the operator exists for, "I/O starts only after the write that records it", and the
undo of a failed write are checked here on the pure plan, then on ``Runtime.apply`` with a
status write that fails.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from cerebelum.actions import CATALOG
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import StepPhase
from cerebelum.engine import ActionCall, ActionResult, settle
from cerebelum.kube.plan import Plan, plan, prepare
from cerebelum.kube.runtime import Runtime
from cerebelum.kube.settings import OperatorSettings
from cerebelum.kube.tasks import ActionTasks

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SPEC = {"steps": [{"name": "get", "http": {"url": "http://127.0.0.1:9/x"}}]}


def body(status: dict[str, Any] | None = None, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "cerebelum.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": "wf",
            "namespace": "ns",
            "uid": "uid-1",
            "generation": 1,
            "resourceVersion": "5",
            "annotations": annotations,
        },
        "spec": SPEC,
        "status": status or {},
    }


async def plan_for(
    obj: dict[str, Any],
    results: tuple[ActionResult, ...] = (),
    running: frozenset[str] = frozenset(),
) -> Plan:
    spec = WorkflowSpec.model_validate(obj["spec"])
    start = prepare(spec, obj, NOW, results)

    async def never(calls: Any, status: Any) -> list[ActionResult]:
        raise AssertionError("nothing here runs inline")

    settled = await settle(
        spec,
        start.status,
        start.meta,
        clock=lambda: NOW,
        run=never,
        inline=lambda call: call.local,
        actions=CATALOG,
        inputs=start.inputs,
        in_flight=running,
    )
    return plan(spec, obj, start, settled)


async def test_a_new_attempt_starts_only_after_the_write_that_records_it() -> None:
    p = await plan_for(body())
    assert p.write is not None and p.write["steps"]["get"]["phase"] == StepPhase.RUNNING
    assert p.write["steps"]["get"]["attempts"] == 1
    assert [c.step for c in p.start] == ["get"]
    assert p.on_failed_write.start == (), "an unrecorded attempt never starts"


async def test_an_attempt_recorded_earlier_is_resumed_even_if_the_write_fails() -> None:
    recorded = await plan_for(body())
    assert recorded.write is not None
    p = await plan_for(body(recorded.write))  # the operator restarted: nothing in flight
    assert [(c.step, c.resumed) for c in p.start] == [("get", True)]
    assert p.on_failed_write.start == p.start
    assert p.write is None or p.write["steps"]["get"]["attempts"] == 1


async def test_results_fed_to_a_pass_are_given_back_if_its_write_fails() -> None:
    recorded = await plan_for(body())
    assert recorded.write is not None
    done = ActionResult(step="get", visit=1, attempt=1, ok=True, output={"status": 200})
    p = await plan_for(body(recorded.write), (done,), running=frozenset({"get"}))
    assert p.write is not None and p.write["phase"] == "Succeeded"
    assert p.on_failed_write.restore == (done,)
    assert p.phase_changed == "Succeeded" and not p.delete_stepruns


async def test_a_decision_is_removed_after_it_is_read_and_the_event_says_how_to_answer() -> None:
    gate = {"steps": [{"name": "go", "approval": {}}]}
    asked = body()
    asked["spec"] = gate
    p = await plan_for(asked)
    assert p.event is not None and p.event.reason == "ApprovalRequested"
    assert p.event.message.endswith("kubectl annotate workflow wf cerebelum.io/approve=go")
    assert p.write is not None
    answered = body(p.write, **{"cerebelum.io/approve": "go", "cerebelum.io/reason": "ok"})
    answered["spec"] = gate
    p = await plan_for(answered)
    assert set(p.remove_annotations) == {"cerebelum.io/approve", "cerebelum.io/reason"}
    assert p.write is not None and p.write["phase"] == "Succeeded"


class _RefusingKube:
    """A KubeClient whose status writes fail (the API server is away)."""

    api = core = None

    def __init__(self) -> None:
        self.writes = 0
        self.removed: list[str] = []

    async def replace_status(self, body: dict[str, Any], status: dict[str, Any]) -> Any:
        self.writes += 1
        raise ConnectionRefusedError("the API server is away")

    async def post_event(self, *args: Any) -> None:
        return None

    async def remove_annotations(self, namespace: str, name: str, keys: list[str]) -> None:
        self.removed += keys


async def test_when_the_write_fails_apply_starts_nothing_unrecorded_and_keeps_the_results() -> None:
    kube = _RefusingKube()
    runtime = Runtime(kube, OperatorSettings())  # type: ignore[arg-type]
    started: list[ActionCall] = []

    async def execute(obj: dict[str, Any], call: ActionCall) -> ActionResult:
        started.append(call)
        return ActionResult(step=call.step, visit=call.visit, attempt=call.attempt, ok=True)

    runtime.tasks = ActionTasks(execute, lambda key: None)
    obj = body(None, **{"cerebelum.io/approve": "get"})
    p = await plan_for(obj)
    kept = ActionResult(step="other", visit=1, attempt=1, ok=True)
    p = Plan(**{**p.__dict__, "on_failed_write": type(p.on_failed_write)(restore=(kept,))})
    with pytest.raises(ConnectionRefusedError):
        await runtime.apply(("ns", "wf"), obj, p)
    await asyncio.sleep(0)
    assert kube.writes == 1 and started == [], "no I/O before the write that records it"
    assert kube.removed == [], "nothing after the write happens when it fails"
    assert runtime.tasks.take_results(("ns", "wf")) == (kept,)


class _SizeLimitedKube(_RefusingKube):
    """A KubeClient whose API server refuses a status over a size limit, as etcd does."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.written: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []

    async def replace_status(self, body: dict[str, Any], status: dict[str, Any]) -> Any:
        import json

        from kubernetes_asyncio.client.exceptions import ApiException

        self.writes += 1
        if len(json.dumps(status)) > self.limit:
            exc = ApiException(status=500, reason="Internal Server Error")
            exc.body = b'{"message": "etcdserver: request is too large", "code": 500}'
            raise exc
        self.written.append(status)
        return {**body, "status": status}

    async def post_event(self, body: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((reason, message))


async def test_a_status_too_large_to_write_fails_the_workflow_instead_of_retrying_forever() -> None:
    kube = _SizeLimitedKube(limit=4096)
    runtime = Runtime(kube, OperatorSettings())  # type: ignore[arg-type]
    big = {"phase": "Running", "steps": {"get": {"phase": "Succeeded", "output": "x" * 8000}}}
    p = Plan(write=big)
    await runtime.apply(("ns", "wf"), body(), p)  # no exception: nothing to back off from
    [written] = kube.written
    assert written["phase"] == "Failed" and "object size limit" in written["message"]
    assert "output" not in written["steps"]["get"]
    assert [reason for reason, _ in kube.events] == ["StatusTooLarge"]


def _listed(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "cerebelum.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"namespace": namespace, "name": name, "uid": name, "resourceVersion": "1"},
        "spec": {"steps": [{"name": "a", "approval": {}}]},
    }


async def test_a_relist_forgets_what_was_deleted_unseen_in_its_namespace_only() -> None:
    runtime = Runtime(_RefusingKube(), OperatorSettings())  # type: ignore[arg-type]
    for namespace, name in [("a", "kept"), ("a", "gone"), ("b", "other")]:
        runtime.observe(None, _listed(namespace, name))
    runtime.relisted("a", {("a", "kept")})
    assert set(runtime.bodies) == {("a", "kept"), ("b", "other")}
    runtime.relisted(None, {("a", "kept")})  # a cluster-wide list
    assert set(runtime.bodies) == {("a", "kept")}
