"""What a CronWorkflow does at ``now``: (spec, status, its Workflows, now) -> decision.

Pure, like the workflow engine: the shell (``kube.crons``) carries the decision out. The
rules are CronJob's:

- at most one run is due at a time: the most recent scheduled time after the last one
  started (or after the CronWorkflow was created). After downtime the older missed times
  are dropped, never started in a burst, and even the most recent is skipped when it is
  more than ``startingDeadlineSeconds`` late;
- each run is named after its scheduled time, so creating it twice (a restart between
  creating it and recording it, two replicas) makes one Workflow;
- Allow starts a run whatever runs already; Forbid postpones it while a run is active (it
  starts when none is, if still within ``startingDeadlineSeconds``); Replace cancels the
  active runs, whose finally steps still run, and starts it;
- finished runs beyond the history limits (3 succeeded, 1 failed or cancelled, by default)
  are deleted, oldest first.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from cerebelum.api.cron import latest_at_or_before, next_after
from cerebelum.api.cronworkflow import (
    ActiveRun,
    ConcurrencyPolicy,
    CronWorkflowSpec,
    CronWorkflowStatus,
)
from cerebelum.api.durations import format_time, to_millis
from cerebelum.engine.types import EventRecord

DEFAULT_SUCCESSFUL_HISTORY = 3
DEFAULT_FAILED_HISTORY = 1
_FINISHED = ("Succeeded", "Failed", "Cancelled")


@dataclass(frozen=True)
class CronMeta:
    name: str
    created: datetime.datetime
    generation: int = 1


@dataclass(frozen=True)
class Child:
    """A Workflow the CronWorkflow started, as the shell last saw it."""

    name: str
    phase: str
    scheduled: datetime.datetime | None
    created: datetime.datetime | None = None
    finished: datetime.datetime | None = None

    @property
    def done(self) -> bool:
        return self.phase in _FINISHED


@dataclass
class CronDecision:
    status: CronWorkflowStatus
    #: Start this run: (the Workflow's name, its scheduled time).
    create: tuple[str, datetime.datetime] | None = None
    #: Cancel these runs (Replace).
    cancel: list[str] = field(default_factory=list)
    #: Delete these finished runs (history limits).
    delete: list[str] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    wake_at: datetime.datetime | None = None


def run_name(cron: str, scheduled: datetime.datetime) -> str:
    """The Workflow of one scheduled time: the same on every replica and every retry."""
    return f"{cron[:52]}-{int(scheduled.timestamp())}"


def _order(child: Child) -> datetime.datetime:
    return (
        child.finished
        or child.created
        or child.scheduled
        or datetime.datetime.min.replace(tzinfo=datetime.UTC)
    )


def decide(
    spec: CronWorkflowSpec,
    status: CronWorkflowStatus | None,
    meta: CronMeta,
    children: list[Child],
    now: datetime.datetime,
) -> CronDecision:
    st = status.model_copy(deep=True) if status else CronWorkflowStatus()
    out = CronDecision(status=st)
    st.observed_generation = meta.generation
    active = [c for c in children if not c.done]
    _prune(spec, children, out)
    succeeded = [c.finished for c in children if c.phase == "Succeeded" and c.finished]
    if succeeded:
        newest = max(succeeded)
        if st.last_successful_time is None or newest > st.last_successful_time:
            st.last_successful_time = to_millis(newest)
    if spec.suspend:
        st.next_schedule_time = None
        st.message = "suspended: no run starts"
    else:
        _due(spec, st, meta, active, now, out)
        st.next_schedule_time = next_after(spec.schedule, now, spec.time_zone)
    running = [ActiveRun(name=c.name, scheduled_time=c.scheduled) for c in active]
    running = [r for r in running if r.name not in out.cancel]
    if out.create is not None:
        running.append(ActiveRun(name=out.create[0], scheduled_time=out.create[1]))
    st.active = sorted(running, key=lambda r: r.name) or None
    out.wake_at = st.next_schedule_time
    return out


def _due(
    spec: CronWorkflowSpec,
    st: CronWorkflowStatus,
    meta: CronMeta,
    active: list[Child],
    now: datetime.datetime,
    out: CronDecision,
) -> None:
    last = st.last_schedule_time or meta.created
    due = latest_at_or_before(spec.schedule, now, last, spec.time_zone)
    if due is None:
        return
    late = (now - due).total_seconds()
    when = format_time(due)
    if spec.starting_deadline_seconds is not None and late > spec.starting_deadline_seconds:
        message = (
            f"the run of {when} was not started: {late:.0f}s late, over "
            f"startingDeadlineSeconds={spec.starting_deadline_seconds}"
        )
        _say(st, out, "Warning", "MissedSchedule", message)
        return
    policy = spec.concurrency_policy or ConcurrencyPolicy.ALLOW
    if active and policy == ConcurrencyPolicy.FORBID:
        names = ", ".join(c.name for c in active)
        message = f"the run of {when} waits: concurrencyPolicy Forbid, and {names} still runs"
        _say(st, out, "Normal", "RunPostponed", message)
        return
    if active and policy == ConcurrencyPolicy.REPLACE:
        out.cancel = [c.name for c in active]
    name = run_name(meta.name, due)
    out.create = (name, due)
    st.last_schedule_time = due
    replaced = f", replacing {', '.join(out.cancel)}" if out.cancel else ""
    _say(st, out, "Normal", "RunStarted", f"started {name} for {when}{replaced}")


def _say(st: CronWorkflowStatus, out: CronDecision, type_: str, reason: str, message: str) -> None:
    """Record what happened; an Event only when it is news (not at every look)."""
    if st.message != message:
        out.events.append(EventRecord(type_, reason, message))
    st.message = message


def _prune(spec: CronWorkflowSpec, children: list[Child], out: CronDecision) -> None:
    keep = {
        True: spec.successful_history_limit,
        False: spec.failed_history_limit,
    }
    defaults = {True: DEFAULT_SUCCESSFUL_HISTORY, False: DEFAULT_FAILED_HISTORY}
    for succeeded in (True, False):
        limit = keep[succeeded]
        limit = defaults[succeeded] if limit is None else limit
        done = [c for c in children if c.done and (c.phase == "Succeeded") == succeeded]
        done.sort(key=_order, reverse=True)
        out.delete += [c.name for c in done[limit:]]
