"""The shell's pure parts: annotations to decisions, event merging, the queue and the timer heap."""

from __future__ import annotations

import asyncio
import datetime

from cerebelum.engine import ApprovalDecision, EventRecord
from cerebelum.kube.runtime import merge_events, read_decisions
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


def test_events_of_one_reconciliation_are_merged_by_reason() -> None:
    merged = merge_events(
        [
            EventRecord("Normal", "StepSucceeded", "step a succeeded"),
            EventRecord("Warning", "StepFailed", "step c failed"),
            EventRecord("Normal", "StepSucceeded", "step b succeeded"),
        ]
    )
    assert merged == [
        EventRecord("Normal", "StepSucceeded", "step a succeeded; step b succeeded"),
        EventRecord("Warning", "StepFailed", "step c failed"),
    ]


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
    assert queue._queue.empty(), "a must wait until its current run is done"
    queue.done(first)
    assert await asyncio.wait_for(queue.get(), 1) == ("ns", "a")


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
