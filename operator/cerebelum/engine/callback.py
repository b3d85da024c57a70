"""The callback stage: after the action, wait until an outside system calls back.

The action (an HTTP request that triggers a CI build, say) hands the outside system
``${{ callback.url }}`` or ``${{ callback.token }}`` (``engine.launch`` offers them); the
step then waits in ``WaitingForCallback`` until a ``CallbackDelivery`` arrives, the
timeout passes, or a heartbeat is missed. How a delivery reaches the operator (an HTTP
``POST`` with the token, or ``kubectl annotate``) is the shell's business; this module
decides what it means:

- ``succeeded``: its payload, checked against ``callback.schema``, becomes the output;
  a payload that does not match is refused with a Warning and the step keeps waiting;
- ``failed``: the attempt fails with ``CallbackFailed`` (``retry`` applies if it names it);
- ``heartbeat``: the outside system is alive; the heartbeat deadline moves on.

A delivery that arrives while the action is still running (a fast system calls back
before its trigger has answered) is kept and applied when the action ends. One for an
earlier attempt (its token hash differs), or for a step not waiting, is ignored with a
Warning. A missed heartbeat fails the attempt with ``HeartbeatTimeout``, retryable, so
``retry`` starts a new attempt with a new token.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from cerebelum.api.durations import format_time, parse_duration, to_millis
from cerebelum.api.spec import CALLBACK_PAYLOAD_LIMIT_BYTES, Step, instance_problem
from cerebelum.api.spec import Outcome as OnOutcome
from cerebelum.api.status import CallbackStatus, StepError, StepPhase, StepStatus
from cerebelum.api.tokens import token_hash
from cerebelum.engine import retry
from cerebelum.engine.run import Run, TableDeadline, restart_visit
from cerebelum.engine.types import CallbackDelivery, CallbackOutcome
from cerebelum.engine.visit import continue_visit, fail_or_goto, fail_step


def payload_problem(step: Step, data: Any) -> str | None:
    """Why a callback payload is refused (size, schema), or None. The HTTP endpoint asks
    the same before it accepts a delivery, so a bad one gets its 400 at once."""
    try:
        size = len(json.dumps(data))
    except (TypeError, ValueError):
        return "the payload is not JSON"
    if size > CALLBACK_PAYLOAD_LIMIT_BYTES:
        return f"the payload is {size} bytes, over the {CALLBACK_PAYLOAD_LIMIT_BYTES}-byte limit"
    schema = step.callback.payload_schema if step.callback else None
    return None if schema is None else instance_problem(schema, data, "the payload")


def _next_deadline(step: Step, cb: CallbackStatus) -> datetime.datetime | None:
    """The timeout or the next heartbeat, whichever comes first."""
    spec = step.callback
    candidates = [cb.expires_at] if cb.expires_at else []
    if spec is not None and spec.heartbeat_timeout and cb.requested_at:
        since = cb.last_heartbeat_at or cb.requested_at
        candidates.append(to_millis(since + parse_duration(spec.heartbeat_timeout)))
    return min(candidates) if candidates else None


class CallbackStage(TableDeadline):
    name = "callback"
    phase = StepPhase.WAITING_FOR_CALLBACK

    def applies(self, step: Step) -> bool:
        return step.callback is not None

    def enter(self, run: Run, step: Step) -> None:
        spec = step.callback
        assert spec is not None
        s = run.s(step.name)
        cb = s.callback
        if cb is None or cb.attempt != s.attempts:  # no action: the token is the visit's
            token = run.callback_token(step.name)
            cb = CallbackStatus(attempt=s.attempts, token_hash=token and token_hash(token))
            s.callback = cb
        cb.requested_at = run.now
        cb.expires_at = run.later(parse_duration(spec.timeout)) if spec.timeout else None
        cb.deadline = _next_deadline(step, cb)
        early, cb.early = cb.early, None
        until = f" until {format_time(cb.expires_at)}" if cb.expires_at else ""
        run.step_phase(
            step.name, StepPhase.WAITING_FOR_CALLBACK, "CallbackRequested", f"waiting{until}"
        )
        if isinstance(early, dict):
            _deliver(run, step, _from_wire(step.name, early))
            return
        run.event(
            "Normal",
            "CallbackRequested",
            f"step {step.name} waits for a callback{until}",
            step=step.name,
        )

    def on_deadline(self, run: Run, step: Step) -> None:
        s = run.s(step.name)
        cb = s.callback
        spec = step.callback
        assert cb is not None and spec is not None
        if cb.expires_at is not None and run.now >= cb.expires_at:
            cb.outcome = "TimedOut"
            message = f"no callback within {spec.timeout}"
            run.event("Warning", "CallbackTimedOut", f"step {step.name}: {message}")
            target = spec.timeout_goto if spec.on_timeout == OnOutcome.GOTO else None
            error = StepError(error_class="CallbackTimeout", message=message)
            fail_or_goto(run, step, error, target, "CallbackTimeout")
            return
        cb.outcome = "HeartbeatTimeout"
        last = format_time(cb.last_heartbeat_at or cb.requested_at or run.now)
        message = f"no heartbeat within {spec.heartbeat_timeout} (the last at {last})"
        run.event("Warning", "HeartbeatTimeout", f"step {step.name}: {message}")
        _attempt_failed(
            run, step, StepError(error_class="HeartbeatTimeout", message=message, retryable=True)
        )

    def repair(self, step: Step, s: StepStatus, now: datetime.datetime) -> list[str]:
        if step.callback is None:
            restart_visit(s)
            return [f"step {step.name} waits for a callback but has none: its visit starts again"]
        notes = []
        if s.callback is None:
            s.callback = CallbackStatus(attempt=s.attempts)
            notes.append(f"step {step.name}: its callback token was lost; only kubectl delivers")
        cb = s.callback
        if cb.requested_at is None:
            cb.requested_at = to_millis(now)
        if cb.expires_at is None and step.callback.timeout:
            cb.expires_at = to_millis(cb.requested_at + parse_duration(step.callback.timeout))
        if cb.deadline is None:
            cb.deadline = _next_deadline(step, cb)
        return notes


def on_callback(run: Run, delivery: CallbackDelivery) -> None:
    """Someone called a step back; ignored (with a Warning) unless it waits for that."""
    run.out.consumed.append(delivery)
    s = run.status.steps.get(delivery.step)
    if s is None:
        run.event("Warning", "CallbackIgnored", f"callback names unknown step {delivery.step!r}")
        return
    step = run.spec_step(delivery.step)
    cb = s.callback
    if step.callback is None:
        message = f"callback of step {step.name} ignored: it has no callback wait"
        run.event("Warning", "CallbackIgnored", message)
        return
    if delivery.token_hash is not None and (cb is None or cb.token_hash != delivery.token_hash):
        message = f"callback of step {step.name} ignored: its token is of an earlier attempt"
        run.event("Warning", "CallbackIgnored", message)
        return
    if s.phase == StepPhase.WAITING_FOR_CALLBACK:
        _deliver(run, step, delivery)
        return
    if s.phase == StepPhase.RUNNING and cb is not None and cb.attempt == s.attempts:
        if delivery.outcome == CallbackOutcome.HEARTBEAT:
            cb.last_heartbeat_at = run.now
            return
        cb.early = _to_wire(delivery)  # the action has not answered yet: applied when it does
        return
    message = f"callback of step {step.name} ignored: it is {s.phase}, not waiting for one"
    run.event("Warning", "CallbackIgnored", message)


def _deliver(run: Run, step: Step, delivery: CallbackDelivery) -> None:
    s = run.s(step.name)
    cb = s.callback
    assert cb is not None
    if delivery.outcome == CallbackOutcome.HEARTBEAT:
        cb.last_heartbeat_at = run.now
        cb.deadline = _next_deadline(step, cb)
        return
    if delivery.outcome == CallbackOutcome.FAILED:
        cb.received_at, cb.received_by, cb.outcome = run.now, delivery.received_by, "Failed"
        data = delivery.data
        said = data.get("message") if isinstance(data, dict) else data
        message = str(said)[:1024] if said is not None else "the outside system reported a failure"
        _attempt_failed(run, step, StepError(error_class="CallbackFailed", message=message))
        return
    output = delivery.data if delivery.data is not None else {}
    too_large = run.output_problem(step.name, output)
    problem = payload_problem(step, delivery.data) or (too_large and too_large.message)
    if problem is not None:
        run.event("Warning", "CallbackRefused", f"callback of step {step.name} refused: {problem}")
        return
    cb.received_at, cb.received_by, cb.outcome = run.now, delivery.received_by, "Succeeded"
    cb.deadline = None
    by = f" (via {delivery.received_by})" if delivery.received_by else ""
    run.event("Normal", "CallbackReceived", f"step {step.name} was called back{by}")
    continue_visit(run, step, after=STAGE.name, output=output)


def _attempt_failed(run: Run, step: Step, error: StepError) -> None:
    """The callback ended the attempt in failure: ``retry`` may start another."""
    s = run.s(step.name)
    s.error = error
    if step.action_kind() is not None and retry.schedule(run, step, error, None):
        return
    fail_step(run, step, error)


def _to_wire(delivery: CallbackDelivery) -> dict[str, Any]:
    return {"outcome": str(delivery.outcome), "data": delivery.data, "by": delivery.received_by}


def _from_wire(step: str, raw: dict[str, Any]) -> CallbackDelivery:
    try:
        outcome = CallbackOutcome(str(raw.get("outcome")))
    except ValueError:
        outcome = CallbackOutcome.SUCCEEDED
    return CallbackDelivery(step, outcome, raw.get("data"), received_by=raw.get("by"))


STAGE = CallbackStage()
