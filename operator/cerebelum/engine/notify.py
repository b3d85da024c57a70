"""Notices: tell ``spec.notify`` targets that a step waits for approval or a callback, or
that the workflow has finished.

A notice is opened when a pass enters such a phase (one per target, step, visit and
event), recorded in ``status.notifications``, then sent as a call the shell carries out
after the write, like an action attempt: so a send that a crash interrupted is sent again
with the same dedupe key, never with a new one. Sending never holds up or fails the
workflow. A failed send is retried with backoff (2 s doubling, at most 5 minutes apart,
20 tries), each failure a Warning; a finished workflow still wakes for its retries.
"""

from __future__ import annotations

import datetime
from typing import Any, TypeGuard

from cerebelum.api.spec import NotifyEvent, NotifyTarget
from cerebelum.api.status import Notice, StepPhase, WorkflowPhase
from cerebelum.engine.run import Run
from cerebelum.engine.types import ActionCall, ActionResult, Input

#: The kind of a notice's call (the shell sends it; it is not a step's action).
NOTIFY_KIND = "notify"
#: A notice's call is named ``notice/TARGET/KEY`` (step names cannot hold a slash).
PREFIX = "notice/"
MAX_SENDS = 20
_KEEP = 50
_FIRST_DELAY = datetime.timedelta(seconds=2)
_MAX_DELAY = datetime.timedelta(minutes=5)

_EVENTS = {
    StepPhase.WAITING_FOR_APPROVAL: (NotifyEvent.APPROVAL, "ApprovalRequested"),
    StepPhase.WAITING_FOR_CALLBACK: (NotifyEvent.CALLBACK, "CallbackRequested"),
}


def is_result(item: Input) -> TypeGuard[ActionResult]:
    return isinstance(item, ActionResult) and item.step.startswith(PREFIX)


def _wants(target: NotifyTarget, event: NotifyEvent) -> bool:
    return target.on is None or event in target.on


def open_notices(run: Run) -> None:
    """Open a notice per target for every wait and end this pass entered."""
    targets = run.spec.notify or []
    if not targets:
        return
    st = run.status
    notices = list(st.notifications or [])
    known = {(n.target, n.key) for n in notices}
    for t in run.out.transitions:
        if t.step is not None:
            entry = _EVENTS.get(StepPhase(t.phase)) if t.phase in set(StepPhase) else None
            if entry is None or t.step not in st.steps:
                continue
            event, reason = entry
            s = st.steps[t.step]
            key = f"{run.meta.uid}.{t.step}.{s.visits}.{event.value.lower()}"
            since, until = t.time, _until(run, t.step)
        elif t.phase in set(WorkflowPhase) and WorkflowPhase(t.phase).finished:
            event, reason = NotifyEvent.END, str(t.phase)
            key, since, until = f"{run.meta.uid}.end", t.time, None
        else:
            continue
        for target in targets:
            if _wants(target, event) and (target.name, key) not in known:
                known.add((target.name, key))
                notices.append(
                    Notice(
                        key=key,
                        target=target.name,
                        event=reason,
                        step=t.step,
                        since=since,
                        until=until,
                        next_attempt_at=run.now,
                    )
                )
    st.notifications = notices[-_KEEP:] or None


def _until(run: Run, step: str) -> datetime.datetime | None:
    s = run.s(step)
    if s.phase == StepPhase.WAITING_FOR_APPROVAL and s.approval is not None:
        return s.approval.deadline
    if s.phase == StepPhase.WAITING_FOR_CALLBACK and s.callback is not None:
        return s.callback.expires_at
    return None


def issue(run: Run) -> None:
    """Send the notices that are due, and again those whose send was lost (a restart)."""
    for notice in run.status.notifications or []:
        name = f"{PREFIX}{notice.target}/{notice.key}"
        if notice.sending:
            if name not in run.in_flight:
                run.out.actions.append(_call(run, notice, name))
            continue
        due = notice.next_attempt_at
        if notice.sent_at is None and due is not None and run.now >= due:
            notice.attempts += 1
            notice.sending = True
            notice.next_attempt_at = None
            run.out.actions.append(_call(run, notice, name))


def _call(run: Run, notice: Notice, name: str) -> ActionCall:
    target = next((t for t in run.spec.notify or [] if t.name == notice.target), None)
    params: dict[str, Any] = {
        "target": target.to_wire() if target else {},
        "notice": notice.to_wire(),
        "workflow": {
            "name": run.meta.name,
            "namespace": run.meta.namespace,
            "uid": run.meta.uid,
            "phase": str(run.status.phase),
            "message": run.status.message,
        },
    }
    if notice.step is not None:
        gate = run.spec_step(notice.step).approval
        if gate is not None:
            params["approval"] = {
                "message": (run.s(notice.step).approval or gate).message,
                "approvers": gate.approvers.to_wire() if gate.approvers else None,
            }
    return ActionCall(
        step=name,
        kind=NOTIFY_KIND,
        params=params,
        visit=0,
        attempt=notice.attempts,
        idempotency_key=notice.key,
        timeout=datetime.timedelta(seconds=10),
        local=False,
    )


def on_result(run: Run, result: ActionResult) -> None:
    target, _, key = result.step[len(PREFIX) :].partition("/")
    notice = next(
        (n for n in run.status.notifications or [] if n.target == target and n.key == key), None
    )
    if notice is None or not notice.sending or notice.attempts != result.attempt:
        return  # stale: a send superseded, or a notice no longer kept
    notice.sending = None
    if result.ok:
        notice.sent_at, notice.last_error = run.now, None
        return
    notice.last_error = result.error.message if result.error else "the send failed"
    where = f"notice {notice.key} to {target}"
    if notice.attempts >= MAX_SENDS:
        message = f"{where} not sent after {notice.attempts} tries: {notice.last_error}"
        run.event("Warning", "NotificationFailed", message)
        return
    delay = min(_FIRST_DELAY * 2 ** (notice.attempts - 1), _MAX_DELAY)
    notice.next_attempt_at = run.later(delay)
    message = f"{where} failed (try {notice.attempts}): {notice.last_error}; retrying"
    run.event("Warning", "NotificationFailed", message)


def next_deadline(run: Run) -> datetime.datetime | None:
    times = [
        n.next_attempt_at
        for n in run.status.notifications or []
        if n.sent_at is None and n.next_attempt_at is not None and not n.sending
    ]
    return min(times) if times else None
