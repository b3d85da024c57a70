"""Status is input too: anyone allowed to write ``workflows/status`` can put anything there.

``load_status`` turns what is stored into a status the engine can use, and says what it had
to change. Nothing is guessed that can be derived: a lost ``sleepUntil`` is recomputed from
the visit's start and the sleep's duration, an unreadable retry time means "retry now", and
a step in a phase its spec cannot be in starts its visit again. A finished phase is believed
only when every step has finished, so writing ``phase: Succeeded`` by hand cannot end a
workflow whose steps never ran: success is reached through the engine's own path only.

Pure, like the rest of the engine: (spec, stored status, now) -> (status, problems).
"""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import ValidationError

from cerebelum.api.durations import format_time, parse_duration, parse_time
from cerebelum.api.spec import Step, WorkflowSpec
from cerebelum.api.status import PauseKind, StepPhase, StepStatus, WorkflowPhase, WorkflowStatus

#: Validation errors dropped one field at a time before giving up on the stored status.
_MAX_DROPS = 50
#: Phases that need the step to have an action.
_ACTION_PHASES = (StepPhase.RUNNING, StepPhase.POLLING, StepPhase.RETRYING)


def load_status(
    spec: WorkflowSpec, wire: dict[str, Any] | None, now: datetime.datetime
) -> tuple[WorkflowStatus | None, list[str]]:
    """The stored status, repaired; and one line per repair, for a Warning Event."""
    if not wire:
        return None, []
    status, problems = _validated(wire)
    problems += _repair_times(spec, status, now)
    problems += _repair_step_phases(spec, status, now)
    problems += _repair_workflow_phase(status, now)
    return status, problems


def _validated(wire: dict[str, Any]) -> tuple[WorkflowStatus, list[str]]:
    """Validate, dropping each field the model refuses (a bad value is an unknown value)."""
    data: Any = _plain_copy(wire)
    problems: list[str] = []
    for _ in range(_MAX_DROPS):
        try:
            return WorkflowStatus.model_validate(data), problems
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            loc = [str(p) for p in error["loc"]]
            problems.append(f"status.{'.'.join(loc)} {error['msg'].lower()}: dropped")
            if not _drop(data, error["loc"]):
                break
    problems.append("status could not be read: started again from its spec")
    return WorkflowStatus(), problems


def _plain_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_copy(v) for v in value]
    return value


def _drop(data: Any, loc: tuple[int | str, ...]) -> bool:
    """Remove the value at ``loc`` (or its nearest existing container entry)."""
    parent = data
    for part in loc[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return False
    last = loc[-1] if loc else None
    if isinstance(parent, dict) and last in parent:
        del parent[last]
        return True
    if isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent):
        del parent[last]
        return True
    return False


def _readable(text: str | None) -> bool:
    if text is None:
        return True
    try:
        parse_time(text)
    except ValueError:
        return False
    return True


def _repair_times(spec: WorkflowSpec, st: WorkflowStatus, now: datetime.datetime) -> list[str]:
    problems = []
    stamp = format_time(now)
    for field in ("started_at", "finished_at", "next_wake_at"):
        if not _readable(getattr(st, field)):
            problems.append(f"status.{field} {getattr(st, field)!r} is not a time: reset")
            setattr(st, field, stamp if field == "started_at" else None)
    for name, s in st.steps.items():
        where = f"status.steps.{name}"
        for field in ("started_at", "finished_at", "last_attempt_at", "poll_started_at"):
            if not _readable(getattr(s, field)):
                problems.append(f"{where}.{field} {getattr(s, field)!r} is not a time: reset")
                setattr(s, field, stamp if field in ("started_at", "poll_started_at") else None)
        if not _readable(s.next_attempt_at):
            problems.append(f"{where}.nextAttemptAt {s.next_attempt_at!r} is not a time: now")
            s.next_attempt_at = stamp
        if not _readable(s.sleep_until):
            problems.append(f"{where}.sleepUntil {s.sleep_until!r} is not a time")
            s.sleep_until = None  # recomputed below from the spec
        if s.approval is not None:
            for field in ("requested_at", "decided_at"):
                if not _readable(getattr(s.approval, field)):
                    setattr(s.approval, field, stamp if field == "requested_at" else None)
                    problems.append(f"{where}.approval.{field} is not a time: reset")
            if not _readable(s.approval.deadline):
                problems.append(f"{where}.approval.deadline {s.approval.deadline!r} is not a time")
                s.approval.deadline = _approval_deadline(_step(spec, name), s, now)
    return problems


def _step(spec: WorkflowSpec, name: str) -> Step | None:
    return next((s for s in spec.steps if s.name == name), None)


def _approval_deadline(step: Step | None, s: StepStatus, now: datetime.datetime) -> str | None:
    gate = step.approval if step is not None else None
    if gate is None or not gate.timeout:
        return None
    start = parse_time(s.approval.requested_at) if s.approval and s.approval.requested_at else now
    return format_time(start + parse_duration(gate.timeout))


def _restart(s: StepStatus) -> None:
    """Start the step's visit again (its attempts and waits are lost; its count is kept)."""
    visits = max(s.visits - 1, 0)
    for field in StepStatus.model_fields:
        setattr(s, field, getattr(StepStatus(), field))
    s.visits = visits


def _repair_step_phases(
    spec: WorkflowSpec, st: WorkflowStatus, now: datetime.datetime
) -> list[str]:
    problems = []
    for name, s in st.steps.items():
        step = _step(spec, name)
        if step is None:
            continue  # the engine drops entries of removed steps
        where = f"step {name}"
        if s.phase in _ACTION_PHASES and step.action_kind() is None:
            problems.append(f"{where} is {s.phase} but has no action: its visit starts again")
            _restart(s)
        elif s.paused is not None and s.phase not in _PAUSED_PHASES[s.paused]:
            problems.append(f"{where} is {s.phase}, not paused: its pause ({s.paused}) is dropped")
            s.paused = None
        elif s.paused == PauseKind.SLEEP and not s.sleep_until:
            s.sleep_until = format_time(now)
            problems.append(f"{where} sleeps after its action with no end: it wakes now")
        elif s.phase == StepPhase.WAITING_FOR_APPROVAL and step.approval is None and not s.paused:
            problems.append(
                f"{where} waits for approval but has no approval: its visit starts again"
            )
            _restart(s)
        elif s.phase == StepPhase.SLEEPING and not s.sleep_until:
            until = _sleep_end(step, s)
            if until is None:
                problems.append(f"{where} sleeps with no end: its visit starts again")
                _restart(s)
            else:
                s.sleep_until = format_time(until)
                problems.append(f"{where}: sleepUntil recomputed from its start: {s.sleep_until}")
        elif s.phase in (StepPhase.POLLING, StepPhase.RETRYING) and not s.next_attempt_at:
            s.next_attempt_at = format_time(now)
            problems.append(f"{where} is {s.phase} with no next attempt time: it attempts now")
        if s.phase != StepPhase.PENDING and s.phase != StepPhase.SKIPPED and s.visits < 1:
            s.visits = 1
    return problems


_PAUSED_PHASES = {
    PauseKind.SLEEP: (StepPhase.SLEEPING,),
    PauseKind.APPROVAL: (StepPhase.WAITING_FOR_APPROVAL,),
}


def _sleep_end(step: Step, s: StepStatus) -> datetime.datetime | None:
    if step.sleep is None or not step.sleep.duration or not s.started_at:
        return None  # sleep.until may be an expression: the new visit evaluates it
    return parse_time(s.started_at) + parse_duration(step.sleep.duration)


def _repair_workflow_phase(st: WorkflowStatus, now: datetime.datetime) -> list[str]:
    """A finished workflow has only finished steps: the engine ends a workflow that way. (It
    may have none when it failed before any step started, e.g. on an invalid spec; it never
    succeeds with none.)"""
    if not st.phase.finished:
        return []
    unfinished = [n for n, s in st.steps.items() if not s.phase.finished]
    if not unfinished and (st.steps or st.phase != WorkflowPhase.SUCCEEDED):
        if st.finished_at is None:
            ends = [s.finished_at for s in st.steps.values() if s.finished_at]
            st.finished_at = max(ends, key=parse_time) if ends else format_time(now)
            return [f"status.finishedAt was missing: set to {st.finished_at}"]
        return []
    st.phase = WorkflowPhase.RUNNING
    st.finished_at = None
    st.conditions = [c for c in st.conditions or [] if c.type != "Succeeded"] or None
    which = ", ".join(unfinished) if unfinished else "no step has run"
    return [f"phase was set to finished but {which} did not finish: the workflow goes on"]
