"""Retry: after a failed attempt, wait (exponential backoff with jitter) and try again.

Only errors ``retryOn`` names are retried (unset: those the action marks retryable; "*":
all). The wait is a deadline in status (``nextAttemptAt``), the step ``Retrying``.
"""

from __future__ import annotations

import datetime

from cerebelum.api.durations import format_time
from cerebelum.api.spec import Step
from cerebelum.api.status import StepError, StepPhase, StepStatus
from cerebelum.engine.backoff import retry_delay
from cerebelum.engine.launch import launch, repair_next_attempt
from cerebelum.engine.run import Run, TableDeadline


class RetryWait(TableDeadline):
    phase = StepPhase.RETRYING

    def on_deadline(self, run: Run, step: Step) -> None:
        launch(run, step)

    def repair(self, step: Step, s: StepStatus, now: datetime.datetime) -> list[str]:
        return repair_next_attempt(step, s, now)


def schedule(
    run: Run, step: Step, error: StepError, retry_after: datetime.timedelta | None
) -> bool:
    """Plan the next attempt if the spec retries this error; False if it does not."""
    retry = step.retry
    s = run.s(step.name)
    if retry is None or s.attempts - 1 >= retry.limit or not retries(retry.retry_on, error):
        return False
    wait = retry_delay(retry, s.attempts, seed=f"{s.idempotency_key}")
    if retry_after is not None:
        wait = max(wait, retry_after)
    s.next_attempt_at = run.later(wait)
    run.step_phase(
        step.name,
        StepPhase.RETRYING,
        "Retrying",
        f"attempt {s.attempts} failed ({error.error_class}: {error.message}); retry "
        f"{s.attempts} of {retry.limit} at {format_time(s.next_attempt_at)}",
    )
    run.event("Warning", "Retrying", f"step {step.name}: {error.error_class}: {error.message}")
    return True


def retries(retry_on: list[str] | None, error: StepError) -> bool:
    if not retry_on:
        return error.retryable
    return "*" in retry_on or error.error_class in retry_on


WAIT = RetryWait()
