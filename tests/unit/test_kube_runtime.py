"""The shell's pure parts: annotations to decisions, event merging, the queue and the timer heap."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from cerebelum.engine import ApprovalDecision, EventRecord
from cerebelum.kube.cache import BodyCache, SpecCache
from cerebelum.kube.concurrency import AdaptiveLimit
from cerebelum.kube.events import EventLimiter, one_event
from cerebelum.kube.failures import congestion
from cerebelum.kube.inputs import read_decisions
from cerebelum.kube.workqueue import WakeScheduler, WorkQueue


def test_annotations_become_decisions_with_reason_and_payload() -> None:
    decisions, notes = read_decisions(
        {
            "cerebelum.io/approve": "go_live",
            "cerebelum.io/reason": "change 42",
            "cerebelum.io/approval-data": '{"ticket": 42}',
            "unrelated": "x",
        }
    )
    assert decisions == (
        ApprovalDecision(step="go_live", approve=True, reason="change 42", data={"ticket": 42}),
    )
    assert notes == []
    assert read_decisions({"cerebelum.io/reject": " deploy "})[0] == (
        ApprovalDecision(step="deploy", approve=False),
    )
    assert read_decisions({"cerebelum.io/approval-data": "{}"}) == ((), [])


def test_approval_data_that_is_not_json_is_not_applied_and_says_why() -> None:
    decisions, notes = read_decisions(
        {"cerebelum.io/approve": "a", "cerebelum.io/approval-data": "yes"}
    )
    assert decisions == ()
    assert [(n.type, n.reason) for n in notes] == [("Warning", "InvalidApprovalData")]
    assert "approval of step a not applied" in notes[0].message
    assert "not JSON" in notes[0].message


def test_approve_and_reject_of_one_step_at_once_rejects_and_says_which_won() -> None:
    decisions, notes = read_decisions({"cerebelum.io/approve": "go", "cerebelum.io/reject": "go"})
    assert decisions == (ApprovalDecision(step="go", approve=False),)
    assert [n.reason for n in notes] == ["ConflictingDecision"]
    assert "the rejection wins" in notes[0].message
    # Different steps are two independent decisions.
    decisions, notes = read_decisions({"cerebelum.io/approve": "a", "cerebelum.io/reject": "b"})
    assert {(d.step, d.approve) for d in decisions} == {("a", True), ("b", False)}
    assert notes == []


def test_one_reconciliation_posts_one_event_and_none_for_routine_steps() -> None:
    routine = [
        EventRecord("Normal", "Woke", "step a finished sleeping"),
        EventRecord("Normal", "StepSucceeded", "step a succeeded"),
        EventRecord("Normal", "Sleeping", "step b sleeps until ..."),
    ]
    assert one_event(routine) is None
    # A success is routine too (status says it), but not a failure or a cancel.
    assert one_event([*routine, EventRecord("Normal", "WorkflowSucceeded", "done")]) is None
    failed = one_event(
        [
            *routine,
            EventRecord("Warning", "StepFailed", "step c failed: Boom: it broke"),
            EventRecord("Warning", "WorkflowFailed", "step c failed: Boom: it broke"),
        ]
    )
    assert failed == EventRecord(
        "Warning",
        "WorkflowFailed",
        "step c failed: Boom: it broke (also: StepFailed: step c failed: Boom: it broke)",
    )
    asked = one_event([*routine, EventRecord("Normal", "ApprovalRequested", "step d waits")])
    assert asked == EventRecord("Normal", "ApprovalRequested", "step d waits")
    bad = one_event(
        [
            EventRecord("Normal", "WorkflowSucceeded", "done"),
            EventRecord("Warning", "StatusRepaired", "sleepUntil recomputed"),
        ]
    )
    assert bad is not None and (bad.type, bad.reason) == ("Warning", "StatusRepaired")
    long = one_event([EventRecord("Warning", "StepFailed", "x" * 5000)])
    assert long is not None and len(long.message) == 1024


def test_events_are_rate_limited_per_workflow_with_a_count_of_the_suppressed() -> None:
    now = [0.0]
    limiter = EventLimiter(burst=2, every=10, clock=lambda: now[0])
    failing = EventRecord("Warning", "StepFailed", "attempt failed")
    assert limiter.admit("a", failing) == failing
    assert limiter.admit("a", failing) == failing
    assert limiter.admit("a", failing) is None
    assert limiter.admit("a", failing) is None
    assert limiter.admit("b", failing) == failing  # another workflow has its own bucket
    ended = limiter.admit("a", EventRecord("Warning", "WorkflowFailed", "it ended"))
    assert ended == EventRecord(
        "Warning",
        "WorkflowFailed",
        "it ended (2 earlier Events suppressed; status.history has them)",
    )
    assert limiter.admit("a", failing) is None
    now[0] = 10.0
    assert limiter.admit("a", failing) == EventRecord(
        "Warning",
        "StepFailed",
        "attempt failed (1 earlier Events suppressed; status.history has them)",
    )


async def test_work_queue_runs_a_key_once_and_never_concurrently_with_itself() -> None:
    queue = WorkQueue()
    queue.add(("ns", "a"))
    queue.add(("ns", "a"))
    queue.add(("ns", "b"))
    first = await queue.get()
    assert first == ("ns", "a")
    queue.add(("ns", "a"))  # changed while being processed
    assert await queue.get() == ("ns", "b")
    queue.done(("ns", "b"))
    with pytest.raises(TimeoutError):  # a must wait until its current run is done
        await asyncio.wait_for(queue.get(), 0.05)
    queue.done(first)
    assert await asyncio.wait_for(queue.get(), 1) == ("ns", "a")


async def test_due_timers_and_results_go_before_watch_events() -> None:
    queue = WorkQueue()
    for i in range(100):
        queue.add(("ns", f"created-{i}"))
    queue.add(("ns", "created-50"), urgent=True)  # its deadline arrived
    queue.add(("ns", "woken"), urgent=True)
    assert [await queue.get() for _ in range(3)] == [
        ("ns", "created-50"),
        ("ns", "woken"),
        ("ns", "created-0"),
    ]
    assert len(queue) == 98


async def test_urgent_done_waits_for_the_urgent_work_to_finish_not_just_start() -> None:
    queue = WorkQueue()
    queue.add(("ns", "due"), urgent=True)
    waiter = asyncio.create_task(queue.urgent_done(timeout=5))
    key = await queue.get()
    await asyncio.sleep(0.05)
    assert not waiter.done()  # taken, but its reconciliation has not finished
    queue.done(key)
    await asyncio.wait_for(waiter, 1)
    queue.add(("ns", "stuck"), urgent=True)
    started = asyncio.get_running_loop().time()
    await queue.urgent_done(timeout=0.1)  # nobody takes it: it gives up at the timeout
    assert asyncio.get_running_loop().time() - started >= 0.1


async def test_wake_scheduler_wakes_each_key_at_its_latest_deadline() -> None:
    queue = WorkQueue()
    scheduler = WakeScheduler(queue)
    task = asyncio.create_task(scheduler.run())
    try:
        now = datetime.datetime.now(datetime.UTC)
        scheduler.schedule(("ns", "late"), now + datetime.timedelta(seconds=0.3))
        scheduler.schedule(("ns", "moved"), now + datetime.timedelta(seconds=0.1))
        scheduler.schedule(("ns", "moved"), now + datetime.timedelta(seconds=0.2))  # supersedes
        scheduler.schedule(("ns", "dropped"), now + datetime.timedelta(seconds=0.1))
        scheduler.schedule(("ns", "dropped"), None)
        assert scheduler.waiting == 2
        order = [await asyncio.wait_for(queue.get(), 2) for _ in range(2)]
        assert order == [("ns", "moved"), ("ns", "late")]
        assert datetime.datetime.now(datetime.UTC) >= now + datetime.timedelta(seconds=0.3)
        assert len(queue) == 0 and scheduler.waiting == 0
    finally:
        task.cancel()


async def test_concurrency_grows_while_writes_are_fast_and_halves_when_pushed_back() -> None:
    now = [0.0]
    limit = AdaptiveLimit(start=4, floor=2, ceiling=10, target=0.5, clock=lambda: now[0])
    for _ in range(4):
        limit.record(latency=0.01)
    assert limit.slots == 8  # slow start: a slot per fast write, double per round
    for _ in range(10):
        limit.record(latency=0.01)
    assert limit.slots == 10  # never above the ceiling
    limit.record(congested=True)  # a 429
    assert limit.slots == 5
    for _ in range(6):
        limit.record(latency=0.01)
    assert limit.slots == 6  # after congestion: +1 per round of `limit` (5, then 6) writes
    limit.record(latency=2.0)  # slow, but within the cooldown of the last cut
    assert limit.slots == 6
    now[0] = 1.0
    limit.record(latency=2.0)
    now[0] = 2.0
    limit.record(congested=True)
    assert limit.slots == 2  # halved twice, and never below the floor
    now[0] = 5.0
    limit.record(congested=True)
    assert limit.slots == 2

    held = [asyncio.create_task(limit.acquire()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert limit.active == 2 and sum(t.done() for t in held) == 2
    await limit.release()
    await asyncio.sleep(0.01)
    assert all(t.done() for t in held) and limit.active == 2


def test_congestion_is_a_throttle_a_server_error_or_no_answer_not_a_conflict() -> None:
    from kubernetes_asyncio.client.exceptions import ApiException

    assert congestion(ApiException(status=429))
    assert congestion(ApiException(status=503))
    assert congestion(ConnectionRefusedError())
    assert not congestion(ApiException(status=409))
    assert not congestion(ApiException(status=422))


def test_workflows_with_one_spec_share_one_parsed_copy() -> None:
    cache = SpecCache(size=2)
    spec = {"steps": [{"name": "a", "sleep": {"duration": "1s"}}]}
    first = cache.parse(spec)
    assert cache.parse({"steps": [{"sleep": {"duration": "1s"}, "name": "a"}]}) is first
    cache.parse({"steps": [{"name": "b", "noop": {}}]})
    cache.parse({"steps": [{"name": "c", "noop": {}}]})  # the least recently used goes
    assert cache.parse(spec) is not first and cache.parse(spec).steps[0].name == "a"


def test_the_cache_keeps_workflows_as_json_and_hands_out_copies() -> None:
    cache = BodyCache()
    body = {
        "metadata": {"name": "w", "namespace": "ns", "resourceVersion": "7"},
        "status": {"phase": "Running", "steps": {"a": {"phase": "WaitingForApproval"}}},
    }
    cache[("ns", "w")] = body
    copy = cache.get(("ns", "w"))
    assert copy == body and copy is not body
    copy["status"]["phase"] = "Failed"
    assert cache.get(("ns", "w")) == body
    assert cache.version(("ns", "w")) == "7" and cache.version(("ns", "x")) is None
    assert cache.summaries()[0].phase == "Running"
    assert cache.summaries()[0].approvals_waiting == 1
    assert 0 < cache.size_bytes() < 200
    cache.pop(("ns", "w"))
    assert cache.get(("ns", "w")) is None and len(cache) == 0


def test_callback_annotations_become_deliveries_and_go_only_if_unchanged() -> None:
    from cerebelum.engine.types import CallbackDelivery, CallbackOutcome
    from cerebelum.kube.inputs import read_callbacks, to_remove

    record = '{"outcome":"succeeded","tokenHash":"ab12","data":{"n":1},"at":"x"}'
    annotations = {
        "callback.cerebelum.io/build": record,
        "callback.cerebelum.io/broken": "not json",
        "cerebelum.io/callback": "review",
        "cerebelum.io/callback-data": '{"ok": true}',
        "cerebelum.io/decided-by": "alice",
    }
    deliveries, notes, bad = read_callbacks(annotations)
    assert deliveries == (
        CallbackDelivery("build", CallbackOutcome.SUCCEEDED, {"n": 1}, "ab12", "http"),
        CallbackDelivery("review", CallbackOutcome.SUCCEEDED, {"ok": True}, None, "kubectl"),
    )
    assert [n.reason for n in notes] == ["CallbackIgnored"] and bad == [
        "callback.cerebelum.io/broken"
    ]
    removed = to_remove(annotations, deliveries, bad)
    # The HTTP record goes only if it still holds what was read; the rest whatever they hold.
    assert removed == {
        "callback.cerebelum.io/broken": None,
        "cerebelum.io/callback": None,
        "cerebelum.io/callback-data": None,
        "callback.cerebelum.io/build": record,
    }
    # A kubectl callback whose data is not JSON is refused and its annotations go.
    _, notes, bad = read_callbacks(
        {"cerebelum.io/callback": "s", "cerebelum.io/callback-data": "{"}
    )
    assert [n.reason for n in notes] == ["CallbackRefused"] and "not JSON" in notes[0].message
    assert bad == ["cerebelum.io/callback", "cerebelum.io/callback-data"]
