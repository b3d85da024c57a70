"""Poll: repeat the action every ``interval`` until ``until`` holds on its output.

The first attempt runs at once; the next starts ``interval`` after the previous one ended
(times ``backoffFactor`` per attempt, capped at ``maxInterval``). The poll ends when the
condition holds, after ``maxAttempts``, or ``timeout`` after the first attempt started;
then ``onTimeout`` applies. Between attempts the step is ``Polling`` with a deadline.
"""

from __future__ import annotations

import datetime
from typing import Any

from cerebelum.api.durations import parse_duration, to_millis
from cerebelum.api.spec import Outcome as OnOutcome
from cerebelum.api.spec import Step
from cerebelum.api.status import StepError, StepPhase, StepStatus
from cerebelum.engine.backoff import poll_interval
from cerebelum.engine.launch import launch, repair_next_attempt
from cerebelum.engine.run import Run, TableDeadline
from cerebelum.engine.visit import fail_or_goto, fail_step
from cerebelum.expressions import ExpressionError, evaluate_bool


class PollWait(TableDeadline):
    phase = StepPhase.POLLING

    def on_deadline(self, run: Run, step: Step) -> None:
        if out_of_time(run, step):
            exhausted(run, step)
        else:
            launch(run, step)

    def repair(self, step: Step, s: StepStatus, now: datetime.datetime) -> list[str]:
        return repair_next_attempt(step, s, now)


def met(run: Run, step: Step, output: Any) -> bool | None:
    """Whether ``until`` holds on this attempt's output; None if it could not be evaluated
    (the step has failed, saying why)."""
    assert step.poll is not None
    s = run.s(step.name)
    try:
        return evaluate_bool(
            step.poll.until,
            run.activation(step.name, output=output, attempt=s.attempts, checks=s.checks or {}),
            field=f"{run.field(step.name)}.poll.until",
        )
    except ExpressionError as exc:
        fail_step(run, step, StepError(error_class="ExpressionError", message=str(exc)))
        return None


def again(run: Run, step: Step) -> None:
    """The condition does not hold yet: plan the next attempt, or give up."""
    poll = step.poll
    assert poll is not None
    s = run.s(step.name)
    if (poll.max_attempts and s.attempts >= poll.max_attempts) or out_of_time(run, step):
        exhausted(run, step)
        return
    at = run.later(poll_interval(poll, s.attempts))
    if poll.timeout and s.poll_started_at:
        at = min(at, to_millis(s.poll_started_at + parse_duration(poll.timeout)))
    s.next_attempt_at = at
    if s.phase != StepPhase.POLLING and s.attempts == 1:
        run.event("Normal", "Polling", f"step {step.name} polls until {poll.until}")
    run.step_phase(
        step.name, StepPhase.POLLING, "Polling", f"attempt {s.attempts}: condition not met yet"
    )


def out_of_time(run: Run, step: Step) -> bool:
    poll = step.poll
    s = run.s(step.name)
    if poll is None or not poll.timeout or s.poll_started_at is None:
        return False
    return run.now >= s.poll_started_at + parse_duration(poll.timeout)


def exhausted(run: Run, step: Step) -> None:
    poll = step.poll
    assert poll is not None
    s = run.s(step.name)
    limits = []
    if poll.max_attempts:
        limits.append(f"maxAttempts={poll.max_attempts}")
    if poll.timeout:
        limits.append(f"timeout={poll.timeout}")
    error = StepError(
        error_class="PollTimeout",
        message=f"condition {poll.until!r} not met after {s.attempts} attempts ({', '.join(limits)})",
    )
    target = poll.timeout_goto if poll.on_timeout == OnOutcome.GOTO else None
    fail_or_goto(run, step, error, target, "PollTimeout")


WAIT = PollWait()
