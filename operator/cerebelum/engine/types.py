"""What goes into the engine and what comes out of it. Plain frozen data, no I/O.

Inputs are typed values, each handled by the one module of its kind (``engine.kinds``
maps the type to its handler): an action's result, a person's decision. Effects are what
the shell must carry out: calls to start or cancel, Events, the time to look again.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from cerebelum.api.status import StepError, Transition, WorkflowStatus


@dataclass(frozen=True)
class WorkflowMeta:
    """The parts of the object's metadata the engine reads."""

    name: str
    namespace: str
    uid: str
    generation: int = 1
    #: The workflow was asked to cancel (by an annotation the shell read).
    cancel_requested: bool = False
    #: Who created it, as the webhook stamped it (None: unknown).
    created_by: str | None = None
    #: The operator's ttlAfterFinished, for a spec that sets none (None: kept).
    default_ttl: datetime.timedelta | None = None


# -- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalDecision:
    """A human decision on a step waiting for approval."""

    step: str
    approve: bool
    reason: str | None = None
    data: Any = None
    decided_by: str | None = None
    #: The option picked (``cerebelum.io/choice``), for a gate with ``options``.
    choice: str | None = None


class CallbackOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HEARTBEAT = "heartbeat"


@dataclass(frozen=True)
class CallbackDelivery:
    """An outside system called a step back: over HTTP with the attempt's token (its hash
    here), or through the Kubernetes API (``kubectl annotate``; RBAC decided, no token)."""

    step: str
    outcome: CallbackOutcome
    data: Any = None
    token_hash: str | None = None
    #: "http", or who annotated the workflow (when the webhook stamped it).
    received_by: str | None = None


@dataclass(frozen=True)
class Pause:
    """A finished attempt asks the workflow to wait before the step counts as done: a sleep,
    or a human decision (with an optional time limit)."""

    sleep: datetime.timedelta | None = None
    approval: bool = False
    approval_timeout: datetime.timedelta | None = None
    approval_type: str = "manual"


@dataclass(frozen=True)
class ActionResult:
    """The outcome of one attempt, fed back to the engine."""

    step: str
    visit: int
    attempt: int
    ok: bool
    output: Any = None
    error: StepError | None = None
    #: Wait at least this long before retrying (e.g. an HTTP Retry-After).
    retry_after: datetime.timedelta | None = None
    #: Python conditions a worker evaluated on the output (read as ``checks`` in CEL).
    checks: dict[str, bool] | None = None
    #: Wait after this attempt before the step succeeds (in-step sleep or approval).
    pause: Pause | None = None
    #: Values to keep for the rest of the workflow (``status.pins``); a key already pinned
    #: keeps its first value.
    pins: dict[str, str] | None = None


#: Everything that can happen to a workflow from outside the engine.
Input = ActionResult | ApprovalDecision | CallbackDelivery


# -- effects -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionCall:
    """Effect: run one attempt of a step's action. ``params`` are already interpolated.

    ``local`` actions complete at once without I/O, so the shell may run them inline.
    ``resumed`` means the attempt was already recorded in status (the process that started
    it is gone), so it may start without another status write.
    """

    step: str
    kind: str
    params: dict[str, Any]
    visit: int
    attempt: int
    idempotency_key: str
    timeout: datetime.timedelta | None
    local: bool
    resumed: bool = False
    #: The step polls: this attempt is one more look at whether a condition holds.
    poll: bool = False
    #: Values in ``params`` that must never be recorded (a callback token): scrubbed from
    #: the attempt's output and errors like revealed secrets.
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventRecord:
    """Effect: a Kubernetes Event for the workflow. ``step`` names the step it is about, so
    the shell can add how to answer it (the command to approve, say)."""

    type: str  # Normal or Warning
    reason: str
    message: str
    step: str | None = None


@dataclass
class Outcome:
    """The engine's answer: the new status and the effects the shell must carry out."""

    status: WorkflowStatus
    actions: list[ActionCall] = field(default_factory=list)
    #: Steps whose running action must be cancelled.
    cancel: list[str] = field(default_factory=list)
    #: Inputs from outside that were read (applied or refused): the shell removes their
    #: source (the annotations) so they cannot act twice.
    consumed: list[Input] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    #: When to call the engine again if nothing else happens (None: only on events).
    wake_at: datetime.datetime | None = None
    #: The transitions this reconciliation added to the history, oldest first.
    transitions: list[Transition] = field(default_factory=list)
    #: The workflow finished longer ago than its ttlAfterFinished: delete it.
    delete: bool = False


class ActionCatalog(Protocol):
    """What the engine must know of action kinds, given by the caller (the actions package
    implements it): the engine itself names no action."""

    def is_local(self, kind: str) -> bool:
        """The action completes at once without I/O (the shell may run it inline)."""
        ...

    def problem(self, kind: str, raw: dict[str, Any], params: dict[str, Any]) -> str | None:
        """Why these interpolated parameters cannot be used (None: they can)."""
        ...


class NoActionChecks:
    """A catalog that knows nothing: no action is local, every parameter is accepted."""

    def is_local(self, kind: str) -> bool:
        return False

    def problem(self, kind: str, raw: dict[str, Any], params: dict[str, Any]) -> str | None:
        return None
