"""The action stage: attempts of the step's action, and what their results mean.

A result is an input (``ActionResult``). A failure is retried (``engine.retry``), counts as
one more unmet poll attempt if it is transient (``engine.poll``), or fails the step. A
success is checked against the poll condition, then ends the stage, or first pauses as the
step's code asked (``engine.pause``).
"""

from __future__ import annotations

import datetime
from typing import Any

from cerebelum.api.spec import Step
from cerebelum.api.status import StepError, StepPhase
from cerebelum.engine import pause, poll, retry
from cerebelum.engine.launch import launch
from cerebelum.engine.run import Run
from cerebelum.engine.types import ActionResult, Pause
from cerebelum.engine.visit import continue_visit, fail_step


class ActionStage:
    name = "action"

    def applies(self, step: Step) -> bool:
        return step.action_kind() is not None

    def enter(self, run: Run, step: Step) -> None:
        launch(run, step)


def on_result(run: Run, result: ActionResult) -> None:
    s = run.status.steps.get(result.step)
    if (
        s is None
        or s.phase != StepPhase.RUNNING
        or s.visits != result.visit
        or s.attempts != result.attempt
    ):
        return  # a stale result (a cancelled or superseded attempt): ignore it
    step = run.spec_step(result.step)
    if result.pins:
        run.status.pins = {**result.pins, **(run.status.pins or {})}
    if not result.ok:
        error = result.error or StepError(error_class="Unknown", message="action failed")
        failed(run, step, error, result.retry_after)
        return
    problem = run.output_problem(step.name, result.output)
    if problem is not None:
        fail_step(run, step, problem)
        return
    s.output = result.output
    s.error = None
    s.checks = dict(result.checks) if result.checks else None
    if step.poll is not None:
        holds = poll.met(run, step, result.output)
        if holds is None:
            return
        if not holds:
            poll.again(run, step)
            return
    done(run, step, result.output, result.pause)


def failed(run: Run, step: Step, error: StepError, retry_after: datetime.timedelta | None) -> None:
    run.s(step.name).error = error
    if retry.schedule(run, step, error, retry_after):
        return
    if step.poll is not None and error.retryable:
        poll.again(run, step)  # a transient failure is one more unmet attempt, not the end
        return
    fail_step(run, step, error)


def done(run: Run, step: Step, output: Any, paused: Pause | None) -> None:
    """The action is done: the stage ends, or first waits as the step's code asked."""
    if paused is None:
        continue_visit(run, step, after=STAGE.name, output=output)
    else:
        pause.enter(run, step, output, paused)


STAGE = ActionStage()
