"""Each wait module alone, in the Scenario shape: a status in, one input (or the clock
passing a deadline), the outcome out. No driver loop: one ``reconcile`` call each, so a
failure points at one module's rule."""

from __future__ import annotations

import datetime
from typing import Any

from cerebelum.actions import CATALOG
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import (
    ApprovalStatus,
    PauseKind,
    StepError,
    StepPhase,
    StepStatus,
    WorkflowPhase,
    WorkflowStatus,
)
from cerebelum.engine import (
    ActionResult,
    ApprovalDecision,
    Input,
    Outcome,
    Pause,
    WorkflowMeta,
    reconcile,
)
from cerebelum.engine.repair import load_status

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
META = WorkflowMeta(name="wf", namespace="ns", uid="uid-1")


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def state(**steps: StepStatus) -> WorkflowStatus:
    """A running workflow whose steps are as given (the others Pending)."""
    return WorkflowStatus(phase=WorkflowPhase.RUNNING, started_at=T0, steps=dict(steps))


def step_in(phase: StepPhase, **fields: Any) -> StepStatus:
    return StepStatus(phase=phase, visits=1, started_at=T0, idempotency_key="uid-1.s.1", **fields)


def run(steps: list[dict[str, Any]], status: WorkflowStatus, now: float, *inputs: Input) -> Outcome:
    return reconcile(
        WorkflowSpec.model_validate({"steps": steps}),
        status,
        META,
        at(now),
        inputs=inputs,
        actions=CATALOG,
    )


def result(step: str, attempt: int = 1, **fields: Any) -> ActionResult:
    return ActionResult(step=step, visit=1, attempt=attempt, **fields)


NOOP = {"noop": {"with": {"x": 1}}}


# -- sleep --------------------------------------------------------------------------------


def test_sleep_before_its_deadline_waits_and_asks_to_be_woken_then() -> None:
    out = run(
        [{"name": "s", "sleep": {"duration": "10s"}}],
        state(s=step_in(StepPhase.SLEEPING, sleep_until=at(10))),
        9.5,
    )
    assert out.status.steps["s"].phase == StepPhase.SLEEPING
    assert out.wake_at == at(10) and out.status.next_wake_at == at(10)
    assert out.status.phase == WorkflowPhase.SLEEPING and not out.actions


def test_sleep_at_its_deadline_goes_on_to_the_action() -> None:
    out = run(
        [{"name": "s", "sleep": {"duration": "10s"}, **NOOP}],
        state(s=step_in(StepPhase.SLEEPING, sleep_until=at(10))),
        10,
    )
    s = out.status.steps["s"]
    assert s.phase == StepPhase.RUNNING and s.attempts == 1
    assert [(c.step, c.kind, c.local) for c in out.actions] == [("s", "noop", True)]
    assert [e.reason for e in out.events] == ["Woke"]


def test_a_sleep_without_its_end_is_recomputed_from_the_visit_start() -> None:
    spec = WorkflowSpec.model_validate({"steps": [{"name": "s", "sleep": {"duration": "1m"}}]})
    wire = state(s=step_in(StepPhase.SLEEPING)).to_wire()
    status, repairs = load_status(spec, wire, at(5))
    assert status is not None and status.steps["s"].sleep_until == at(60)
    assert repairs == ["step s: sleepUntil recomputed from its start: 2026-01-01T12:01:00.000Z"]


# -- approval -----------------------------------------------------------------------------

GATE = {"name": "g", "approval": {"timeout": "1m"}}


def waiting_gate(**fields: Any) -> StepStatus:
    return step_in(
        StepPhase.WAITING_FOR_APPROVAL,
        approval=ApprovalStatus(requested_at=T0, deadline=at(60)),
        **fields,
    )


def test_an_approval_with_data_ends_an_approval_only_step_with_that_data() -> None:
    decision = ApprovalDecision("g", True, reason="ok", data={"ticket": 7}, decided_by="alice")
    out = run([GATE], state(g=waiting_gate()), 5, decision)
    s = out.status.steps["g"]
    assert s.phase == StepPhase.SUCCEEDED and s.output == {"ticket": 7}
    assert s.approval is not None and (s.approval.decision, s.approval.decided_by) == (
        "Approved",
        "alice",
    )
    assert out.consumed == [decision] and out.status.phase == WorkflowPhase.SUCCEEDED


def test_a_rejection_fails_the_step_and_the_workflow() -> None:
    out = run([GATE], state(g=waiting_gate()), 5, ApprovalDecision("g", False, reason="no"))
    assert out.status.steps["g"].error == StepError(error_class="Rejected", message="rejected: no")
    assert out.status.phase == WorkflowPhase.FAILED


def test_a_timed_out_gate_follows_on_timeout() -> None:
    approve = {**GATE, "approval": {"timeout": "1m", "onTimeout": "Approve"}}
    out = run([approve], state(g=waiting_gate()), 60)
    assert out.status.steps["g"].phase == StepPhase.SUCCEEDED
    assert out.status.steps["g"].approval.decision == "TimedOut"  # type: ignore[union-attr]
    goto = {**GATE, "approval": {"timeout": "1m", "onTimeout": "Goto", "timeoutGoto": "other"}}
    out = run([goto, {"name": "other", **NOOP}], state(g=waiting_gate()), 60)
    assert out.status.steps["g"].phase == StepPhase.FAILED
    assert out.status.steps["other"].phase == StepPhase.RUNNING


def test_a_decision_for_a_step_that_is_not_waiting_is_refused_and_consumed() -> None:
    decision = ApprovalDecision("g", True)
    out = run([GATE], state(g=step_in(StepPhase.SLEEPING, sleep_until=at(100))), 5, decision)
    assert out.status.steps["g"].phase == StepPhase.SLEEPING
    assert [(e.type, e.reason) for e in out.events] == [("Warning", "DecisionIgnored")]
    assert out.consumed == [decision]


# -- poll ---------------------------------------------------------------------------------

POLL = {"name": "p", **NOOP, "poll": {"until": "output.x > 1", "interval": "5s", "maxAttempts": 3}}


def polling(attempts: int) -> StepStatus:
    return step_in(
        StepPhase.RUNNING, attempts=attempts, last_attempt_at=at(0), poll_started_at=at(0)
    )


def test_an_unmet_condition_waits_an_interval_for_the_next_attempt() -> None:
    out = run([POLL], state(p=polling(1)), 1, result("p", ok=True, output={"x": 1}))
    s = out.status.steps["p"]
    assert s.phase == StepPhase.POLLING and s.next_attempt_at == at(6) and out.wake_at == at(6)
    assert out.status.phase == WorkflowPhase.POLLING


def test_the_next_poll_attempt_starts_at_its_deadline() -> None:
    status = state(p=step_in(StepPhase.POLLING, attempts=1, next_attempt_at=at(6)))
    out = run([POLL], status, 6)
    assert out.status.steps["p"].attempts == 2 and [c.attempt for c in out.actions] == [2]
    assert out.actions[0].poll


def test_a_poll_that_runs_out_of_attempts_fails_with_poll_timeout() -> None:
    out = run([POLL], state(p=polling(3)), 1, result("p", attempt=3, ok=True, output={"x": 0}))
    s = out.status.steps["p"]
    assert s.phase == StepPhase.FAILED and s.error is not None
    assert s.error.error_class == "PollTimeout"


def test_a_transient_failure_of_a_poll_attempt_is_one_more_unmet_attempt() -> None:
    error = StepError(error_class="Transport", message="reset", retryable=True)
    out = run([POLL], state(p=polling(1)), 1, result("p", ok=False, error=error))
    assert out.status.steps["p"].phase == StepPhase.POLLING


def test_a_met_condition_ends_the_poll_with_that_output() -> None:
    out = run([POLL], state(p=polling(2)), 1, result("p", attempt=2, ok=True, output={"x": 2}))
    assert out.status.steps["p"].phase == StepPhase.SUCCEEDED
    assert out.status.steps["p"].output == {"x": 2}


# -- retry --------------------------------------------------------------------------------

RETRY = {"name": "r", **NOOP, "retry": {"limit": 1, "backoff": {"delay": "2s"}}}
BOOM = StepError(error_class="Boom", message="no", retryable=True)


def test_a_retryable_failure_waits_the_backoff_delay() -> None:
    running = step_in(StepPhase.RUNNING, attempts=1)
    out = run([RETRY], state(r=running), 1, result("r", ok=False, error=BOOM))
    s = out.status.steps["r"]
    assert s.phase == StepPhase.RETRYING and s.next_attempt_at == at(3)
    assert out.status.phase == WorkflowPhase.RUNNING and out.wake_at == at(3)


def test_the_retry_starts_at_its_deadline_with_the_same_idempotency_key() -> None:
    status = state(r=step_in(StepPhase.RETRYING, attempts=1, next_attempt_at=at(3)))
    out = run([RETRY], status, 3)
    assert [(c.attempt, c.idempotency_key) for c in out.actions] == [(2, "uid-1.s.1")]


def test_past_the_limit_or_outside_retry_on_the_failure_fails_the_step() -> None:
    running = step_in(StepPhase.RUNNING, attempts=2)
    out = run([RETRY], state(r=running), 1, result("r", attempt=2, ok=False, error=BOOM))
    assert out.status.steps["r"].phase == StepPhase.FAILED
    only_timeouts = {**RETRY, "retry": {"limit": 5, "retryOn": ["Timeout"]}}
    out = run(
        [only_timeouts],
        state(r=step_in(StepPhase.RUNNING, attempts=1)),
        1,
        result("r", ok=False, error=BOOM),
    )
    assert out.status.steps["r"].phase == StepPhase.FAILED


# -- the in-step pause (the sleep and approval waits, paused) --------------------------


def test_an_in_step_sleep_waits_then_succeeds_with_the_actions_output() -> None:
    running = step_in(StepPhase.RUNNING, attempts=1)
    pause = Pause(sleep=datetime.timedelta(seconds=30))
    out = run(
        [{"name": "a", **NOOP}], state(a=running), 1, result("a", ok=True, output="v", pause=pause)
    )
    s = out.status.steps["a"]
    assert (s.phase, s.paused, s.sleep_until) == (StepPhase.SLEEPING, PauseKind.SLEEP, at(31))
    out = run([{"name": "a", **NOOP}], out.status, 31)
    s = out.status.steps["a"]
    assert (s.phase, s.output, s.paused) == (StepPhase.SUCCEEDED, "v", None)


def test_an_in_step_approval_ends_with_the_actions_output_not_the_approval_data() -> None:
    running = step_in(StepPhase.RUNNING, attempts=1)
    pause = Pause(approval=True, approval_timeout=datetime.timedelta(minutes=1))
    out = run(
        [{"name": "a", **NOOP}], state(a=running), 1, result("a", ok=True, output="v", pause=pause)
    )
    s = out.status.steps["a"]
    assert (s.phase, s.paused) == (StepPhase.WAITING_FOR_APPROVAL, PauseKind.APPROVAL)
    assert s.approval is not None and s.approval.deadline == at(61)
    out = run([{"name": "a", **NOOP}], out.status, 2, ApprovalDecision("a", True, data={"d": 1}))
    assert (out.status.steps["a"].phase, out.status.steps["a"].output) == (
        StepPhase.SUCCEEDED,
        "v",
    )


def test_an_in_step_approval_nobody_answers_fails_at_its_deadline() -> None:
    waiting = step_in(
        StepPhase.WAITING_FOR_APPROVAL,
        paused=PauseKind.APPROVAL,
        approval=ApprovalStatus(requested_at=T0, deadline=at(60)),
    )
    out = run([{"name": "a", **NOOP}], state(a=waiting), 60)
    s = out.status.steps["a"]
    assert s.phase == StepPhase.FAILED and s.paused is None
    assert s.error == StepError(
        error_class="ApprovalTimeout", message="no decision by 2026-01-01T12:01:00.000Z"
    )


# -- the action's results -------------------------------------------------------------


def test_a_stale_result_changes_nothing() -> None:
    running = step_in(StepPhase.RUNNING, attempts=2)
    status = state(a=running)
    out = run([{"name": "a", **NOOP}], status, 1, result("a", attempt=1, ok=True, output={}))
    assert out.status.steps["a"].phase == StepPhase.RUNNING and out.status.steps["a"].attempts == 2


# -- ttlAfterFinished -----------------------------------------------------------------------


def test_a_finished_workflow_wakes_at_its_ttl_and_is_then_deleted() -> None:
    steps = [{"name": "s", "noop": {}}]
    spec = WorkflowSpec.model_validate({"steps": steps, "ttlAfterFinished": "1h"})
    done = WorkflowStatus(phase=WorkflowPhase.SUCCEEDED, started_at=T0, finished_at=at(10))
    before = reconcile(spec, done, META, at(20), actions=CATALOG)
    assert before.wake_at == at(3610) and not before.delete
    after = reconcile(spec, done, META, at(3610), actions=CATALOG)
    assert after.delete


def test_the_operators_default_ttl_applies_only_where_the_spec_sets_none() -> None:
    import dataclasses

    done = WorkflowStatus(phase=WorkflowPhase.FAILED, started_at=T0, finished_at=at(0))
    meta = dataclasses.replace(META, default_ttl=datetime.timedelta(minutes=5))
    plain = WorkflowSpec.model_validate({"steps": [{"name": "s", "noop": {}}]})
    assert reconcile(plain, done, meta, at(300), actions=CATALOG).delete
    assert reconcile(plain, done, META, at(10**6), actions=CATALOG).wake_at is None
    own = WorkflowSpec.model_validate(
        {"steps": [{"name": "s", "noop": {}}], "ttlAfterFinished": "1h"}
    )
    assert not reconcile(own, done, meta, at(300), actions=CATALOG).delete
