"""The approval stage: wait for a person's decision, with an optional time limit.

A decision is an input (``ApprovalDecision``); how it reaches the operator (an annotation
checked by the admission webhook) is the shell's business. The step's own in-step
``await wait_for_approval(...)`` uses the same wait (``paused``), entered by
``engine.pause`` after the action: its approval ends the step with the action's output.
"""

from __future__ import annotations

import datetime
from typing import Any

from cerebelum.api.durations import format_time, parse_duration, to_millis
from cerebelum.api.spec import ApprovalSpec, Step
from cerebelum.api.spec import Outcome as OnOutcome
from cerebelum.api.status import (
    ApprovalStatus,
    PauseKind,
    StepError,
    StepPhase,
    StepStatus,
    Vote,
)
from cerebelum.engine.run import Run, TableDeadline, restart_visit
from cerebelum.engine.types import ApprovalDecision
from cerebelum.engine.visit import continue_visit, fail_or_goto, fail_step
from cerebelum.expressions import ExpressionError, interpolate


class ApprovalStage(TableDeadline):
    name = "approval"
    phase = StepPhase.WAITING_FOR_APPROVAL

    def applies(self, step: Step) -> bool:
        return step.approval is not None

    def enter(self, run: Run, step: Step) -> None:
        gate = step.approval
        assert gate is not None
        deadline = run.later(parse_duration(gate.timeout)) if gate.timeout else None
        message = gate.message
        if message:
            try:
                field = f"{run.field(step.name)}.approval.message"
                message = str(interpolate(message, run.activation(step.name), field=field))
            except ExpressionError as exc:
                fail_step(run, step, StepError(error_class="ExpressionError", message=str(exc)))
                return
        ask(run, step, deadline, message)

    def on_deadline(self, run: Run, step: Step) -> None:
        """Nobody decided in time."""
        s = run.s(step.name)
        assert s.approval is not None
        s.approval.decision = "TimedOut"
        s.approval.decided_at = run.now
        gate = step.approval
        if s.paused is not None or gate is None:
            s.paused = None
            deadline = format_time(s.approval.deadline) if s.approval.deadline else None
            message = f"no decision by {deadline}"
            run.event("Warning", "ApprovalTimedOut", f"step {step.name}: {message}")
            fail_step(run, step, StepError(error_class="ApprovalTimeout", message=message))
            return
        message = f"no decision within {gate.timeout}"
        run.event("Warning", "ApprovalTimedOut", f"step {step.name}: {message}")
        if gate.on_timeout == OnOutcome.APPROVE:
            defaults = gate.defaults()
            s.approval.data = defaults or None
            s.approval.choice = defaults.get("choice")
            continue_visit(run, step, after=self.name, output=defaults or {})
            return
        target = gate.timeout_goto if gate.on_timeout == OnOutcome.GOTO else None
        error = StepError(error_class="ApprovalTimeout", message=message)
        fail_or_goto(run, step, error, target, "ApprovalTimeout")

    def repair(self, step: Step, s: StepStatus, now: datetime.datetime) -> list[str]:
        gate = step.approval
        if gate is None and s.paused is None:
            restart_visit(s)
            return [
                f"step {step.name} waits for approval but has no approval: its visit starts again"
            ]
        if s.approval is None:
            s.approval = ApprovalStatus(requested_at=to_millis(now))
        if gate is not None and s.paused is None and gate.timeout and s.approval.deadline is None:
            start = s.approval.requested_at or to_millis(now)
            s.approval.deadline = to_millis(start + parse_duration(gate.timeout))
        return []


def ask(
    run: Run,
    step: Step,
    deadline: datetime.datetime | None,
    message: str | None,
    *,
    paused: bool = False,
) -> None:
    """The step waits for a decision (a spec'd gate, or its own in-step request)."""
    s = run.s(step.name)
    s.approval = ApprovalStatus(requested_at=run.now, deadline=deadline, message=message)
    if paused:
        s.paused = PauseKind.APPROVAL
    run.step_phase(step.name, StepPhase.WAITING_FOR_APPROVAL, "ApprovalRequested", message)
    run.event("Normal", "ApprovalRequested", f"step {step.name} waits for approval", step=step.name)


def on_decision(run: Run, decision: ApprovalDecision) -> None:
    """A person approved or rejected a step; refused (with a Warning) if it is not waiting,
    or if the gate's rules refuse this vote. The gate passes on its ``required``-th
    distinct approval; one rejection ends it."""
    run.out.consumed.append(decision)
    s = run.status.steps.get(decision.step)
    verb = "approval" if decision.approve else "rejection"
    if s is None:
        run.event("Warning", "DecisionIgnored", f"{verb} names unknown step {decision.step!r}")
        return
    if s.phase != StepPhase.WAITING_FOR_APPROVAL:
        run.event(
            "Warning",
            "DecisionIgnored",
            f"{verb} of step {decision.step!r} ignored: it is {s.phase}, not waiting for approval",
        )
        return
    step = run.spec_step(decision.step)
    gate = step.approval if s.paused is None else None
    approval = s.approval or ApprovalStatus()
    s.approval = approval
    voter = decision.decided_by or "anonymous"
    by = f" by {decision.decided_by}" if decision.decided_by else ""
    why = f": {decision.reason}" if decision.reason else ""
    if decision.approve and gate is not None:
        problem = _refused(run, gate, decision, voter, approval)
        if problem:
            message = f"approval of step {step.name}{by} not counted: {problem}"
            run.event("Warning", "DecisionIgnored", message)
            return
    votes = approval.votes or []
    votes.append(
        Vote(
            by=voter,
            at=run.now,
            decision="Approved" if decision.approve else "Rejected",
            reason=decision.reason,
            choice=decision.choice,
        )
    )
    approval.votes = votes
    if decision.approve:
        need = (gate.required if gate is not None else None) or 1
        have = len({v.by for v in votes if v.decision == "Approved"})
        approval.required = need if need > 1 else None
        if have < need:
            message = f"{have} of {need} approvals"
            run.step_phase(step.name, StepPhase.WAITING_FOR_APPROVAL, "Approved", message)
            run.event("Normal", "Approved", f"step {step.name}: {message}{by}{why}")
            return
        _decided(run, approval, decision)
        approval.decision = "Approved"
        approval.data = decision.data
        approval.choice = decision.choice
        run.event("Normal", "Approved", f"step {step.name} approved{by}{why}")
        continue_visit(run, step, after=STAGE.name, output=_output(decision.data, decision.choice))
        return
    _decided(run, approval, decision)
    approval.decision = "Rejected"
    s.paused = None
    run.event("Warning", "Rejected", f"step {step.name} rejected{by}{why}")
    error = StepError(error_class="Rejected", message=f"rejected{by}{why}")
    target = gate.reject_goto if gate is not None and gate.on_reject == OnOutcome.GOTO else None
    fail_or_goto(run, step, error, target, "Rejected")


def _decided(run: Run, approval: ApprovalStatus, decision: ApprovalDecision) -> None:
    approval.decided_at = run.now
    approval.decided_by = decision.decided_by
    approval.reason = decision.reason


def _refused(
    run: Run,
    gate: ApprovalSpec,
    decision: ApprovalDecision,
    voter: str,
    approval: ApprovalStatus,
) -> str | None:
    """Why this approval does not count (the webhook refuses the same at kubectl annotate)."""
    if gate.allow_self_approval is False:
        if run.meta.created_by is None:
            return (
                "the gate refuses its creator's approval, and the creator is unknown (the "
                "webhook stamps cerebelum.io/created-by when the workflow is created)"
            )
        if voter == run.meta.created_by:
            return f"{voter} created the workflow, and the gate refuses self-approval"
    if gate.options and decision.choice not in gate.options:
        picked = f"{decision.choice!r} is not one of" if decision.choice else "pick one of"
        return f"{picked} {', '.join(gate.options)} (cerebelum.io/choice)"
    if decision.data is not None:
        problem = gate.data_problem(decision.data)
        if problem:
            return problem
    if any(v.by == voter and v.decision == "Approved" for v in approval.votes or []):
        return f"{voter} has approved already (a person counts once)"
    return None


def _output(data: Any, choice: str | None) -> Any:
    """What an approval gives the step: its data, and the option picked."""
    if choice is None:
        return data if data is not None else {}
    if isinstance(data, dict):
        return {**data, "choice": choice}
    return {"choice": choice} if data is None else {"choice": choice, "data": data}


STAGE = ApprovalStage()
