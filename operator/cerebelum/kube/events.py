"""Which Kubernetes Events a reconciliation posts: at most one, and none for routine steps.

Every Event is an API write. Status history already records each transition, so an Event is
kept for what a user must notice in ``kubectl describe``/``get events``: bad input, a
failure, a person's decision or a request for one, a workflow's end. Routine transitions (a
step woke, slept, succeeded, was skipped, polled, retried) are not posted. What one
reconciliation produces becomes one Event: the most important, with the others folded into
its message. Per workflow, a token bucket then limits the rate, as kube's event recorder
does; suppressed Events are counted and the next one posted says how many.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cerebelum.engine.types import EventRecord

#: Transitions a user does not need an Event for (status.history has them).
ROUTINE = frozenset(
    {
        "Woke",
        "Sleeping",
        "StepSucceeded",
        "StepSkipped",
        "Polling",
        "Retrying",
        "Goto",
        "Started",
        "Running",
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
