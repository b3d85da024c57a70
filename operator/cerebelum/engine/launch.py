"""Starting an attempt of a step's action: record it, then ask the shell to run it.

The attempt is counted in status before the call goes out (the shell starts I/O only after
the write that records it), and its parameters are interpolated and checked here, so a
parameter no attempt could use fails the step before any I/O and is never retried.
"""

from __future__ import annotations

import datetime
from typing import Any

from cerebelum.api.durations import parse_duration, to_millis
from cerebelum.api.spec import Step
from cerebelum.api.status import CallbackStatus, StepError, StepPhase, StepStatus
from cerebelum.api.tokens import token_hash
from cerebelum.engine.run import Run
from cerebelum.engine.types import ActionCall
from cerebelum.engine.visit import fail_step, succeed
from cerebelum.expressions import ExpressionError, interpolate


def launch(run: Run, step: Step) -> None:
    """Start the next attempt of the action, or finish a step that has none."""
    if step.action_kind() is None:
        succeed(run, step, {})
        return
    s = run.s(step.name)
    s.attempts += 1
    s.last_attempt_at = run.now
    s.next_attempt_at = None
    if step.poll is not None and s.poll_started_at is None:
        s.poll_started_at = run.now
    run.step_phase(step.name, StepPhase.RUNNING, "Running", f"attempt {s.attempts}")
    issue(run, step, resumed=False)


def issue(run: Run, step: Step, *, resumed: bool) -> None:
    """Ask for the current attempt to run (again, after a restart, when ``resumed``)."""
    kind = step.action_kind()
    assert kind is not None
    s = run.s(step.name)
    run.issued.add(step.name)
    raw = getattr(step, kind).to_wire()
    extra, secrets = _offer_callback(run, step)
    try:
        params = interpolate(
            raw, run.activation(step.name, **extra), field=f"{run.field(step.name)}.{kind}"
        )
    except ExpressionError as exc:
        fail_step(run, step, _callback_unavailable(run, step, exc))
        return
    problem = run.actions.problem(kind, raw, params)
    if problem:
        message = f"{run.field(step.name)}.{problem}"
        fail_step(run, step, StepError(error_class="InvalidAction", message=message))
        return
    run.out.actions.append(
        ActionCall(
            step=step.name,
            kind=kind,
            params=params,
            visit=s.visits,
            attempt=s.attempts,
            idempotency_key=s.idempotency_key or f"{run.meta.uid}.{step.name}.{s.visits}",
            timeout=parse_duration(step.timeout) if step.timeout else None,
            local=run.actions.is_local(kind),
            resumed=resumed,
            poll=step.poll is not None,
            secrets=secrets,
        )
    )


def _offer_callback(run: Run, step: Step) -> tuple[dict[str, Any], tuple[str, ...]]:
    """For a step with a callback wait: ``callback.url`` and ``callback.token`` for the
    action's request, recorded (as a hash) before the call goes out, and the token as a
    value to scrub from everything the attempt reports."""
    if step.callback is None:
        return {}, ()
    s = run.s(step.name)
    token = run.callback_token(step.name)
    if token is None:
        return {}, ()
    if s.callback is None or s.callback.attempt != s.attempts:
        s.callback = CallbackStatus(attempt=s.attempts, token_hash=token_hash(token))
    offered = {"token": token}
    url = run.callbacks.url(token)
    if url is not None:
        offered["url"] = url
    return {"callback": offered}, (token,)


def _callback_unavailable(run: Run, step: Step, exc: ExpressionError) -> StepError:
    """A reference to ``callback`` the operator cannot fill says why, not just "unknown"."""
    if step.callback is not None and "callback" in str(exc):
        if not run.callbacks.enabled:
            why = "this operator has no callback key (Helm: callbacks.enabled=true)"
        else:
            why = "this operator serves no callback endpoint (Helm: callbacks.url)"
        return StepError(
            error_class="CallbackUnavailable",
            message=f"{exc}; {why}; a callback can still be given with kubectl annotate "
            f"workflow {run.meta.name} cerebelum.io/callback={step.name}",
        )
    return StepError(error_class="ExpressionError", message=str(exc))


def resume_lost_attempts(run: Run) -> None:
    """A Running step that nobody runs lost its runner: issue the same attempt again."""
    for name, s in run.status.steps.items():
        if s.phase == StepPhase.RUNNING and name not in run.in_flight and name not in run.issued:
            issue(run, run.spec_step(name), resumed=True)


def repair_next_attempt(step: Step, s: StepStatus, now: datetime.datetime) -> list[str]:
    """A step between attempts (polling, retrying) with no time for the next one: now."""
    if s.next_attempt_at is not None:
        return []
    s.next_attempt_at = to_millis(now)
    return [f"step {step.name} is {s.phase} with no next attempt time: it attempts now"]
