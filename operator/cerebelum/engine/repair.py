"""Status is input too: anyone allowed to write ``workflows/status`` can put anything there.

``load_status`` turns what is stored into a status the engine can use, and says what it had
to change. It is the one place stored times are parsed: the engine works on ``datetime``.
Nothing is guessed that can be derived: a lost ``sleepUntil`` is recomputed from the visit's
start and the sleep's duration, an unreadable retry time means "retry now", and a step in a
phase its spec cannot be in starts its visit again. Each wait's own part of the repair lives
in its module (``Wait.repair``). A finished phase is believed only when every step has
finished, so writing ``phase: Succeeded`` by hand cannot end a workflow whose steps never
ran: success is reached through the engine's own path only.

Pure, like the rest of the engine: (spec, stored status, now) -> (status, problems).
"""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import ValidationError

from cerebelum.api.durations import format_time, parse_time, to_millis
from cerebelum.api.spec import Step, WorkflowSpec
from cerebelum.api.status import StepPhase, WorkflowPhase, WorkflowStatus
from cerebelum.engine.kinds import KINDS
from cerebelum.engine.pause import PHASES as PAUSE_PHASES
from cerebelum.engine.run import restart_visit

#: Validation errors dropped one field at a time before giving up on the stored status.
_MAX_DROPS = 50


def load_status(
    spec: WorkflowSpec, wire: dict[str, Any] | None, now: datetime.datetime
) -> tuple[WorkflowStatus | None, list[str]]:
    """The stored status, repaired; and one line per repair, for a Warning Event."""
    if not wire:
        return None, []
    data: Any = _plain_copy(wire)
    problems = _repair_times(data, format_time(now))
    status, dropped = _validated(data)
    problems += dropped
    problems += _repair_step_phases(spec, status, now)
    problems += _repair_workflow_phase(status, now)
    return status, problems


def _validated(data: Any) -> tuple[WorkflowStatus, list[str]]:
    """Validate, dropping each field the model refuses (a bad value is an unknown value)."""
    problems: list[str] = []
    for _ in range(_MAX_DROPS):
        try:
            return WorkflowStatus.model_validate(data), problems
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            loc = tuple(error["loc"])
            if error["type"] == "missing":  # the entry lacks what it needs: it goes whole
                loc = loc[:-1]
            problems.append(
                f"status.{'.'.join(str(p) for p in loc)} {error['msg'].lower()}: dropped"
            )
            if not loc or not _drop(data, loc):
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


def _readable(value: Any) -> bool:
    if value is None:
        return True
    try:
        parse_time(value)
    except (ValueError, OverflowError):
        return False
    return True


def _repair_times(wire: dict[str, Any], stamp: str) -> list[str]:
    """Unreadable times, on the wire before anything parses them: reset, or dropped for
    their wait's repair to recompute."""
    problems = []
    for field, key in (
        ("started_at", "startedAt"),
        ("finished_at", "finishedAt"),
        ("next_wake_at", "nextWakeAt"),
    ):
        if not _readable(wire.get(key)):
            problems.append(f"status.{field} {wire.get(key)!r} is not a time: reset")
            wire[key] = stamp if key == "startedAt" else None
    steps = wire.get("steps")
    for name, s in steps.items() if isinstance(steps, dict) else ():
        if not isinstance(s, dict):
            continue
        where = f"status.steps.{name}"
        for field, key in (
            ("started_at", "startedAt"),
            ("finished_at", "finishedAt"),
            ("last_attempt_at", "lastAttemptAt"),
            ("poll_started_at", "pollStartedAt"),
        ):
            if not _readable(s.get(key)):
                problems.append(f"{where}.{field} {s.get(key)!r} is not a time: reset")
                s[key] = stamp if key in ("startedAt", "pollStartedAt") else None
        if not _readable(s.get("nextAttemptAt")):
            problems.append(f"{where}.nextAttemptAt {s.get('nextAttemptAt')!r} is not a time: now")
            s["nextAttemptAt"] = stamp
        if not _readable(s.get("sleepUntil")):
            problems.append(f"{where}.sleepUntil {s.get('sleepUntil')!r} is not a time")
            s["sleepUntil"] = None  # recomputed by the sleep's repair
        approval = s.get("approval")
        if isinstance(approval, dict):
            for field, key in (("requested_at", "requestedAt"), ("decided_at", "decidedAt")):
                if not _readable(approval.get(key)):
                    approval[key] = stamp if key == "requestedAt" else None
                    problems.append(f"{where}.approval.{field} is not a time: reset")
            if not _readable(approval.get("deadline")):
                problems.append(
                    f"{where}.approval.deadline {approval.get('deadline')!r} is not a time"
                )
                approval["deadline"] = None  # recomputed by the approval's repair
    return problems


def _step(spec: WorkflowSpec, name: str) -> Step | None:
    return spec.find(name)


def _repair_step_phases(
    spec: WorkflowSpec, st: WorkflowStatus, now: datetime.datetime
) -> list[str]:
    problems = []
    for name, s in st.steps.items():
        step = _step(spec, name)
        if step is None:
            continue  # the engine drops entries of removed steps
        where = f"step {name}"
        if s.phase.info.needs_action and step.action_kind() is None:
            problems.append(f"{where} is {s.phase} but has no action: its visit starts again")
            restart_visit(s)
        elif s.paused is not None and s.phase != PAUSE_PHASES[s.paused]:
            problems.append(f"{where} is {s.phase}, not paused: its pause ({s.paused}) is dropped")
            s.paused = None
        else:
            wait = KINDS.waits.get(s.phase)
            if wait is not None:
                problems += wait.repair(step, s, now)
        if s.phase != StepPhase.PENDING and s.phase != StepPhase.SKIPPED and s.visits < 1:
            s.visits = 1
    return problems


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
            st.finished_at = max(ends) if ends else to_millis(now)
            return [f"status.finishedAt was missing: set to {format_time(st.finished_at)}"]
        return []
    st.phase = WorkflowPhase.RUNNING
    st.finished_at = None
    st.conditions = [c for c in st.conditions or [] if c.type != "Succeeded"] or None
    which = ", ".join(unfinished) if unfinished else "no step has run"
    return [f"phase was set to finished but {which} did not finish: the workflow goes on"]
