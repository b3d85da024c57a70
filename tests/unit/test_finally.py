"""``finally`` steps: they run once after the main steps end, whatever the end (success,
failure, cancel, activeDeadline), see how it ended, and decide the final phase only when
they fail themselves. Driven through the one driver with fake time."""

from __future__ import annotations

from typing import Any

from cerebelum.api.status import StepPhase, WorkflowPhase
from cerebelum.engine import WorkflowMeta
from tests.unit.engine_driver import Driver, seconds_after_t0

CLEANUP = {
    "name": "cleanup",
    "noop": {
        "with": {
            "phase": "${{ workflow.phase }}",
            "failed": "${{ workflow.failures.map(f, f.step) }}",
            "created": "${{ steps.create.phase }}",
        }
    },
}


def spec(steps: list[dict[str, Any]], *final: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"steps": steps, "finally": list(final or [CLEANUP]), **extra}


def order(d: Driver) -> list[str]:
    """The steps in the order they first started."""
    assert d.status is not None and d.status.history is not None
    seen: list[str] = []
    for t in d.status.history:
        if t.step and t.step not in seen and t.phase != StepPhase.PENDING:
            seen.append(t.step)
    return seen


def test_after_success_finally_runs_last_and_the_workflow_succeeds() -> None:
    d = Driver(spec([{"name": "create", "noop": {}}, {"name": "use", "noop": {}}]))
    d.run_to_end()
    assert d.phase == "Succeeded"
    assert d.step("cleanup").output == {"phase": "Succeeded", "failed": [], "created": "Succeeded"}
    assert order(d) == ["create", "use", "cleanup"]
    assert "FinallyStarted" in d.event_reasons()
    assert d.status is not None and d.status.progress == "3/3"


def test_after_a_failure_finally_sees_which_step_failed_and_the_failure_stays() -> None:
    d = Driver(
        spec(
            [
                {"name": "create", "noop": {}},
                {"name": "check", "fail": {"errorClass": "HostDown", "retryable": False}},
                {"name": "never", "noop": {}},
            ],
            {**CLEANUP, "when": "workflow.phase != 'Succeeded'"},
        )
    )
    d.run_to_end()
    assert d.phase == "Failed"
    assert d.step_phase("never") == StepPhase.CANCELLED
    assert d.step("cleanup").output == {
        "phase": "Failed",
        "failed": ["check"],
        "created": "Succeeded",
    }
    assert d.status is not None
    assert d.status.main is not None and d.status.main.reason == "StepFailed"
    condition = d.status.conditions[0]  # type: ignore[index]
    assert condition.status == "False" and "step check failed: HostDown" in condition.message


def test_a_finally_step_skipped_by_its_when_leaves_the_success() -> None:
    d = Driver(
        spec([{"name": "create", "noop": {}}], {**CLEANUP, "when": "workflow.phase == 'Failed'"})
    )
    d.run_to_end()
    assert d.phase == "Succeeded" and d.step_phase("cleanup") == StepPhase.SKIPPED


def test_cancel_stops_the_main_steps_and_still_runs_finally() -> None:
    d = Driver(
        spec([{"name": "create", "noop": {}}, {"name": "wait", "sleep": {"duration": "1h"}}])
    )
    d.at(0)
    assert d.step_phase("wait") == StepPhase.SLEEPING
    d.meta = WorkflowMeta(name="wf", namespace="ns", uid="uid-1", cancel_requested=True)
    d.at(5)
    assert d.phase == "Cancelled"
    assert d.step_phase("wait") == StepPhase.CANCELLED
    assert d.step("cleanup").output["phase"] == "Cancelled"


def test_the_active_deadline_ends_the_main_steps_and_finally_still_runs() -> None:
    d = Driver(
        spec(
            [{"name": "create", "noop": {}}, {"name": "wait", "sleep": {"duration": "1h"}}],
            activeDeadline="10s",
        )
    )
    out = d.at(0)
    assert out.wake_at is not None and seconds_after_t0(out.wake_at) == 10
    d.at(10)
    assert d.phase == "Failed" and d.step_phase("cleanup") == StepPhase.SUCCEEDED
    out_status = d.status
    assert out_status is not None and out_status.message is not None
    assert "activeDeadline 10s passed" in out_status.message
    # workflow.failures names the workflow's own reason when no step failed
    assert d.step("cleanup").output["failed"] == [None]


def test_a_failing_finally_step_fails_the_workflow_with_both_reasons() -> None:
    d = Driver(
        spec(
            [{"name": "create", "noop": {}}],
            {"name": "delete", "fail": {"errorClass": "Forbidden", "retryable": False}},
        )
    )
    d.run_to_end()
    assert d.phase == "Failed"
    assert d.status is not None and d.status.message is not None
    assert d.status.message.startswith("finally: step delete failed: Forbidden")
    assert "the main steps had ended Succeeded" in d.status.message


def test_a_failing_finally_step_after_a_failure_names_both_failures() -> None:
    d = Driver(
        spec(
            [{"name": "create", "fail": {"errorClass": "Quota", "retryable": False}}],
            {"name": "delete", "fail": {"errorClass": "Forbidden", "retryable": False}},
        )
    )
    d.run_to_end()
    assert d.phase == "Failed"
    assert d.status is not None and d.status.message is not None
    assert "Forbidden" in d.status.message and "Quota" in d.status.message


def test_finally_is_bounded_by_finally_deadline() -> None:
    d = Driver(
        spec(
            [{"name": "create", "noop": {}}],
            {"name": "slow", "sleep": {"duration": "1h"}},
            finallyDeadline="30s",
        )
    )
    out = d.at(0)
    assert d.phase == "Sleeping" and d.status is not None and d.status.main is not None
    assert out.wake_at is not None and seconds_after_t0(out.wake_at) == 30
    d.at(30)
    assert d.phase == "Failed" and d.step_phase("slow") == StepPhase.CANCELLED
    assert d.status.message is not None and "finallyDeadline 30s passed" in d.status.message


def test_a_cancel_during_finally_does_not_stop_it() -> None:
    d = Driver(
        spec(
            [{"name": "create", "noop": {}}],
            {"name": "slow", "sleep": {"duration": "20s"}},
        )
    )
    d.at(0)
    d.meta = WorkflowMeta(name="wf", namespace="ns", uid="uid-1", cancel_requested=True)
    d.at(5)
    assert d.step_phase("slow") == StepPhase.SLEEPING
    d.at(20)
    assert d.phase == "Succeeded"


def test_finally_runs_once_and_its_action_is_issued_once() -> None:
    d = Driver(spec([{"name": "create", "noop": {}}], {"name": "delete", "noop": {}}), defer=True)
    d.at(0)
    d.complete("create")
    d.tick()
    d.tick()  # reconciling again before the result arrives issues nothing new
    assert [c.step for c in d.calls] == ["create", "delete"]
    d.complete("delete")
    assert d.phase == "Succeeded"
    for _ in range(3):
        d.tick()
    assert [c.step for c in d.calls] == ["create", "delete"]
    assert d.step("delete").visits == 1


def test_a_running_action_is_cancelled_and_the_finally_action_starts_in_the_same_pass() -> None:
    d = Driver(spec([{"name": "create", "noop": {}}], {"name": "delete", "noop": {}}), defer=True)
    d.at(0)
    d.meta = WorkflowMeta(name="wf", namespace="ns", uid="uid-1", cancel_requested=True)
    out = d.at(1)
    assert out.cancel == ["create"]
    assert [c.step for c in out.calls] == ["delete"]


def test_an_end_rule_in_the_main_steps_still_runs_finally() -> None:
    d = Driver(
        spec(
            [
                {"name": "create", "noop": {}, "next": [{"end": True}]},
                {"name": "unused", "noop": {}},
            ]
        )
    )
    d.run_to_end()
    assert d.phase == "Succeeded" and d.step_phase("unused") == StepPhase.SKIPPED
    assert d.step_phase("cleanup") == StepPhase.SUCCEEDED


def test_finally_steps_run_in_order_and_may_depend_on_each_other() -> None:
    d = Driver(
        spec(
            [{"name": "create", "noop": {}}],
            {"name": "a", "noop": {}},
            {"name": "b", "noop": {"with": {"a": "${{ steps.a.phase }}"}}},
        )
    )
    d.run_to_end()
    assert order(d) == ["create", "a", "b"] and d.step("b").output == {"a": "Succeeded"}


def test_a_finally_step_that_refers_to_a_main_step_fails_the_workflow_before_anything_runs() -> (
    None
):
    d = Driver(
        spec([{"name": "create", "noop": {}}], {"name": "x", "noop": {}, "dependsOn": ["create"]})
    )
    d.run_to_end()
    assert d.phase == "Failed" and d.calls == []
    assert d.status is not None and d.status.message is not None
    assert "not a step of spec.finally" in d.status.message
    assert d.status.steps == {}  # nothing started


def test_a_finally_step_named_as_a_main_step_is_invalid() -> None:
    d = Driver(spec([{"name": "create", "noop": {}}], {"name": "create", "noop": {}}))
    d.run_to_end()
    assert d.phase == "Failed" and d.status is not None and d.status.message is not None
    assert "have the names of spec.steps" in d.status.message


def test_finally_waits_show_in_the_workflow_phase() -> None:
    d = Driver(
        spec(
            [{"name": "create", "fail": {"retryable": False}}],
            {"name": "confirm", "approval": {"timeout": "1h"}},
        )
    )
    d.at(0)
    assert d.phase == str(WorkflowPhase.WAITING_FOR_APPROVAL)
    d.approve("confirm")
    assert d.phase == "Failed"
