"""The sleep stage: wait a duration or until a time, as a deadline in status.

``sleep.duration`` counts from the visit's start; ``sleep.until`` is a time (it may be an
expression). The step's own in-step ``await sleep(...)`` uses the same wait (``paused``),
entered by ``engine.pause`` after the action.
"""

from __future__ import annotations

import datetime

from cerebelum.api.durations import format_time, parse_duration, parse_time, to_millis
from cerebelum.api.spec import Step
from cerebelum.api.status import PauseKind, StepError, StepPhase, StepStatus
from cerebelum.engine.run import Run, TableDeadline, restart_visit
from cerebelum.engine.visit import continue_visit, fail_step
from cerebelum.expressions import ExpressionError, interpolate


class SleepStage(TableDeadline):
    name = "sleep"
    phase = StepPhase.SLEEPING

    def applies(self, step: Step) -> bool:
        return step.sleep is not None

    def enter(self, run: Run, step: Step) -> None:
        assert step.sleep is not None
        try:
            if step.sleep.duration:
                until = run.later(parse_duration(step.sleep.duration))
            else:
                raw = interpolate(
                    step.sleep.until,
                    run.activation(step.name),
                    field=f"{run.field(step.name)}.sleep.until",
                )
                until = to_millis(parse_time(str(raw)))
        except (ExpressionError, ValueError) as exc:
            fail_step(run, step, StepError(error_class="InvalidSleep", message=str(exc)))
            return
        if until <= run.now:
            continue_visit(run, step, after=self.name)
            return
        sleep_until(run, step, until, message=f"sleeping until {format_time(until)}")

    def on_deadline(self, run: Run, step: Step) -> None:
        run.event("Normal", "Woke", f"step {step.name} finished sleeping")
        continue_visit(run, step, after=self.name)

    def repair(self, step: Step, s: StepStatus, now: datetime.datetime) -> list[str]:
        where = f"step {step.name}"
        if s.sleep_until is not None:
            return []
        if s.paused == PauseKind.SLEEP:
            s.sleep_until = to_millis(now)
            return [f"{where} sleeps after its action with no end: it wakes now"]
        until = _planned_end(step, s)
        if until is None:
            restart_visit(s)
            return [f"{where} sleeps with no end: its visit starts again"]
        s.sleep_until = until
        return [f"{where}: sleepUntil recomputed from its start: {format_time(until)}"]


def sleep_until(run: Run, step: Step, until: datetime.datetime, *, message: str) -> None:
    """Put the step to sleep until ``until`` (a spec'd sleep, or an in-step one)."""
    run.s(step.name).sleep_until = until
    run.step_phase(step.name, StepPhase.SLEEPING, "Sleeping", message)
    run.event("Normal", "Sleeping", f"step {step.name} sleeps until {format_time(until)}")


def _planned_end(step: Step, s: StepStatus) -> datetime.datetime | None:
    if step.sleep is None or not step.sleep.duration or not s.started_at:
        return None  # sleep.until may be an expression: the new visit evaluates it
    return to_millis(s.started_at + parse_duration(step.sleep.duration))


STAGE = SleepStage()
