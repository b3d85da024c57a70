"""A step's visit from start to end: ``when``, its stages in order, then ``next`` routing.

The stage modules call back here when they are done (``continue_visit``), when the step
succeeds or fails, and when a rule jumps elsewhere (``goto``). Which stages there are, and
in which order, comes from the ``Kinds`` table the run carries.
"""

from __future__ import annotations

from typing import Any

from cerebelum.api.spec import Step
from cerebelum.api.status import StepError, StepPhase, StepStatus, WorkflowPhase
from cerebelum.engine.run import Run
from cerebelum.expressions import ExpressionError, evaluate_bool

DEFAULT_MAX_STEP_VISITS = 1000
#: A stage ended without an output of its own: a step with nothing else succeeds with {}.
NO_OUTPUT: Any = object()


def start_visit(run: Run, step: Step) -> None:
    """Start a new visit of ``step``: check ``when`` and the visit cap, then the first stage."""
    st = run.status
    cap = run.spec.max_step_visits or DEFAULT_MAX_STEP_VISITS
    if st.total_visits >= cap:
        run.end(
            WorkflowPhase.FAILED,
            "VisitLimitExceeded",
            f"step {step.name} would start visit {st.total_visits + 1} of the workflow, over "
            f"spec.maxStepVisits={cap}: a goto loop does not end",
        )
    previous = run.s(step.name)
    if step.when:
        try:
            run_it = evaluate_bool(
                step.when, run.activation(), field=f"{run.field(step.name)}.when"
            )
        except ExpressionError as exc:
            st.steps[step.name] = StepStatus(visits=previous.visits, started_at=run.now)
            fail_step(run, step, StepError(error_class="ExpressionError", message=str(exc)))
            return
        if not run_it:
            skip(run, step.name, f"when {step.when!r} is false")
            return
    st.total_visits += 1
    visit = previous.visits + 1
    st.steps[step.name] = StepStatus(
        phase=StepPhase.PENDING,
        visits=visit,
        started_at=run.now,
        idempotency_key=f"{run.meta.uid}.{step.name}.{visit}",
    )
    continue_visit(run, step, after=None)


def continue_visit(run: Run, step: Step, *, after: str | None, output: Any = NO_OUTPUT) -> None:
    """The stage ``after`` is over (None: the visit just started): enter the next stage
    that applies, or, with none left, the step succeeds with ``output`` (``{}`` if the
    stage gave none).

    A step paused by its own code (an in-step sleep or approval) has run all its stages
    already: when the pause ends it succeeds with the output its action gave.
    """
    s = run.s(step.name)
    if s.paused is not None:
        s.paused = None
        s.sleep_until = None
        succeed(run, step, s.output)
        return
    stages = run.kinds.stages
    start = 0 if after is None else [st.name for st in stages].index(after) + 1
    for stage in stages[start:]:
        if stage.applies(step):
            stage.enter(run, step)
            return
    succeed(run, step, {} if output is NO_OUTPUT else output)


def skip(run: Run, name: str, why: str) -> None:
    s = run.s(name)
    s.finished_at = run.now
    run.step_phase(name, StepPhase.SKIPPED, "Skipped", why)
    run.event("Normal", "StepSkipped", f"step {name} skipped: {why}")


def succeed(run: Run, step: Step, output: Any) -> None:
    s = run.s(step.name)
    s.output = output
    s.error = None
    s.next_attempt_at = None
    s.finished_at = run.now
    run.step_phase(step.name, StepPhase.SUCCEEDED, "Succeeded")
    run.event("Normal", "StepSucceeded", f"step {step.name} succeeded")
    route(run, step, failed=False)


def fail_step(run: Run, step: Step, error: StepError, *, route_it: bool = True) -> None:
    """The visit ends in failure; ``next`` rules decide what follows (unless ``route_it`` is
    False: the caller goes somewhere itself, e.g. a timeout's goto)."""
    s = run.s(step.name)
    s.error = error
    s.next_attempt_at = None
    s.finished_at = run.now
    run.step_phase(step.name, StepPhase.FAILED, error.error_class, error.message)
    run.event(
        "Warning", "StepFailed", f"step {step.name} failed: {error.error_class}: {error.message}"
    )
    if route_it:
        route(run, step, failed=True)


def fail_or_goto(run: Run, step: Step, error: StepError, target: str | None, reason: str) -> None:
    """A wait ran out or was refused: go to ``target`` if the spec names one, else fail."""
    if target:
        fail_step(run, step, error, route_it=False)
        goto(run, step.name, target, reason)
    else:
        fail_step(run, step, error)


def route(run: Run, step: Step, *, failed: bool) -> None:
    """Apply the first ``next`` rule whose ``when`` holds; with none, a failure ends the
    workflow and a success carries on."""
    s = run.s(step.name)
    error = s.error.to_wire() if (failed and s.error) else None
    activation = run.activation(
        step.name, output=s.output, error=error, phase=str(s.phase), checks=s.checks or {}
    )
    for index, rule in enumerate(step.next or []):
        if rule.when:
            try:
                matched = evaluate_bool(
                    rule.when, activation, field=f"{run.field(step.name)}.next[{index}].when"
                )
            except ExpressionError as exc:
                if not failed:
                    fail_step(run, step, StepError(error_class="ExpressionError", message=str(exc)))
                    return
                run.end(WorkflowPhase.FAILED, "ExpressionError", str(exc))
            if not matched:
                continue
        if rule.goto:
            goto(run, step.name, rule.goto, "Goto")
        elif rule.fail is not None:
            run.end(WorkflowPhase.FAILED, "NextRuleFailed", f"step {step.name}: {rule.fail}")
        elif rule.end:
            end_here(run, step.name, index)
        elif failed:
            s.message = f"failure tolerated by next[{index}] (continue)"
            run.step_phase(step.name, StepPhase.SKIPPED, "FailureTolerated", s.message)
        return
    if failed:
        assert s.error is not None
        run.end(
            WorkflowPhase.FAILED,
            "StepFailed",
            f"step {step.name} failed: {s.error.error_class}: {s.error.message}",
        )


def goto(run: Run, source: str, target: str, reason: str) -> None:
    """Jump to ``target``: it and everything after it start over; steps it would have
    waited for, and that have not run, are skipped."""
    assert run.graph is not None
    reset = {target} | run.graph.descendants(target)
    for name in reset:
        s = run.s(name)
        if s.phase == StepPhase.RUNNING:
            run.out.cancel.append(name)
        if s.phase != StepPhase.PENDING:
            s.next_attempt_at = None
            s.sleep_until = None
            run.step_phase(name, StepPhase.PENDING, "Reset", f"reset by goto from {source}")
    for name in run.graph.ancestors(target):
        if run.s(name).phase == StepPhase.PENDING:
            skip(run, name, f"skipped by goto from {source} to {target}")
    run.event("Normal", reason, f"step {source} goes to {target}")
    start_visit(run, run.spec_step(target))


def end_here(run: Run, source: str, index: int) -> None:
    """A ``next[].end`` rule: the workflow is done; what has not run never will."""
    why = f"workflow ended by {source}.next[{index}] (end)"
    for name in run.part():
        s = run.s(name)
        if s.phase.finished:
            continue
        running = s.phase == StepPhase.RUNNING
        if running:
            run.out.cancel.append(name)
        s.next_attempt_at = None
        s.sleep_until = None
        s.finished_at = run.now
        phase = StepPhase.CANCELLED if running else StepPhase.SKIPPED
        run.step_phase(name, phase, "Ended", why)
    run.end(WorkflowPhase.SUCCEEDED, "Ended", f"step {source}: {why}")
