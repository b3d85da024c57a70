"""Which Kubernetes Events a reconciliation posts: at most one, and none for routine steps.

Every Event is an API write. Status history already records each transition, so an Event is
kept for what a user must notice in ``kubectl describe``/``get events``: bad input, a
failure, a person's decision or a request for one, a workflow that failed or was cancelled.
Routine transitions (a step woke, slept, succeeded, was skipped, polled, retried; the
workflow succeeded) are not posted: a success is the common end, status says it (phase,
completedAt, the Succeeded condition), and at 5,000 workflows its Event alone was a sixth
of all the API writes they cost (bench/wakeups.py). What one
reconciliation produces becomes one Event: the most important, with the others folded into
its message. Per workflow, a token bucket then limits the rate, as kube's event recorder
does; suppressed Events are counted and the next one posted says how many.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cerebelum.api.status import STEP_PHASES
from cerebelum.engine.types import EventRecord

logger = logging.getLogger("cerebelum.operator")

#: Transitions a user does not need an Event for (status.history has them): a step that
#: enters a routine phase of the phase table (running, waiting for time), succeeds or is
#: skipped; a wake-up, a goto, the start, the workflow's success.
ROUTINE = frozenset(
    {
        *(phase.value for phase, info in STEP_PHASES.items() if info.routine),
        "StepSucceeded",
        "StepSkipped",
        "Woke",
        "Goto",
        "Started",
        "WorkflowSucceeded",
    }
)
#: Problems with what a user wrote: always worth an Event, first.
_INPUT = frozenset(
    {
        "InvalidSpec",
        "StatusRepaired",
        "InvalidApprovalData",
        "ConflictingDecision",
        "DecisionIgnored",
    }
)
_ENDS = frozenset({"WorkflowFailed", "WorkflowCancelled", "WorkflowSucceeded"})
_PEOPLE = frozenset({"ApprovalRequested", "Approved"})
MESSAGE_LIMIT = 1024


def _rank(event: EventRecord) -> int:
    if event.reason in _INPUT:
        return 0
    if event.reason in ("WorkflowFailed", "WorkflowCancelled"):
        return 1
    if event.type == "Warning":
        return 2
    if event.reason == "WorkflowSucceeded":
        return 3
    if event.reason in _PEOPLE:
        return 4
    return 5


def one_event(events: list[EventRecord]) -> EventRecord | None:
    """The single Event for one reconciliation's records, or None if all were routine."""
    notable = [e for e in events if e.type == "Warning" or e.reason not in ROUTINE]
    if not notable:
        return None
    top = min(notable, key=_rank)  # the first of the most important rank
    others = [e for e in notable if e is not top]
    message = top.message
    if others:
        message += " (also: " + "; ".join(f"{e.reason}: {e.message}" for e in others) + ")"
    kind = "Warning" if any(e.type == "Warning" for e in notable) else "Normal"
    return EventRecord(kind, top.reason, _cut(message))


def _cut(message: str) -> str:
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 1] + "…"


@dataclass
class _Bucket:
    tokens: float
    at: float
    suppressed: int = 0


@dataclass
class EventLimiter:
    """Per workflow: a burst of ``burst`` Events, then one per ``every`` seconds. A
    workflow's end and input problems always pass (they are rare and matter most)."""

    burst: int = 5
    every: float = 30.0
    clock: Callable[[], float] = field(default=time.monotonic)
    _buckets: dict[object, _Bucket] = field(default_factory=dict)

    def admit(self, key: object, event: EventRecord) -> EventRecord | None:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.burst), at=now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) / self.every)
        bucket.at = now
        always = event.reason in _ENDS or event.reason in _INPUT
        if bucket.tokens < 1 and not always:
            bucket.suppressed += 1
            return None
        bucket.tokens = max(bucket.tokens - 1, 0.0)
        if bucket.suppressed:
            note = f" ({bucket.suppressed} earlier Events suppressed; status.history has them)"
            event = EventRecord(event.type, event.reason, _cut(event.message + note))
            bucket.suppressed = 0
        return event

    def forget(self, key: object) -> None:
        self._buckets.pop(key, None)


#: Events being posted at once, and the most waiting to be posted.
_IN_FLIGHT = 4
_BACKLOG = 10_000
#: How long an Event waits for a backlog of reconciliations to clear before it is posted.
_PATIENCE = 60.0


class EventPoster:
    """Posts Events off the reconciliation: they are best effort, and a worker slot waiting
    on one would hold back the next workflow's wake-up. A few at a time; while workflows wait
    in the queue an Event waits too (a while), since it would take the API server's time from
    their status writes; past a backlog limit (the API server is away or swamped) they are
    dropped and counted."""

    def __init__(
        self,
        post: Callable[[dict[str, Any], str, str, str], Awaitable[None]],
        busy: Callable[[], bool],
    ) -> None:
        self._post = post
        self._busy = busy
        self.limiter = EventLimiter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(_IN_FLIGHT)
        self.dropped = 0

    def post(self, key: object, body: dict[str, Any], event: EventRecord) -> None:
        admitted = self.limiter.admit(key, event)
        if admitted is None:
            return
        if len(self._tasks) >= _BACKLOG:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:
                logger.warning("%d Events dropped: the API server is not keeping up", self.dropped)
            return
        meta = body["metadata"]
        about = {  # only what the Event names: a waiting Event holds no copy of the workflow
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid") if k in meta},
        }

        async def send() -> None:
            async with self._slots:
                patience = time.monotonic() + _PATIENCE
                while self._busy() and time.monotonic() < patience:
                    await asyncio.sleep(0.2)
                await self._post(about, admitted.type, admitted.reason, admitted.message)

        task = asyncio.create_task(send(), name="cerebelum-event")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, key: object) -> None:
        self.limiter.forget(key)

    async def stop(self) -> None:
        """A moment to post what was already decided, then the rest is dropped."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
