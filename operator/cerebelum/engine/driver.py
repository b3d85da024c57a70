"""The one driver of the engine: reconcile, run what may run inline, feed the results back.

The operator, the local runner (``wf.execute``) and the unit tests all drive the engine
through ``settle``; only what they pass in differs:

- ``clock``: the operator's is the wall clock; the local runner's and the tests' are fake;
- ``inline``: which calls run at once inside the loop (the operator: local actions such as
  ``noop``, which need no status write first; the local runner: every call);
- ``run``: how those calls run (the real action code in every case);
- ``respond``: answers that arrive at once, read from the status after each pass (the
  local runner's scripted approvals; the operator and the tests have none).

Every other call is returned for the caller to start after it has written the status
that records it. A run of passes ends when a pass asks for nothing to run inline and nothing responds, or after
``max_passes`` (``Settled.exhausted``: the caller should come back soon).
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import Transition, WorkflowStatus
from cerebelum.api.tokens import NO_CALLBACKS, CallbackIssuer
from cerebelum.engine.machine import reconcile
from cerebelum.engine.types import (
    ActionCall,
    ActionCatalog,
    ActionResult,
    EventRecord,
    Input,
    WorkflowMeta,
)

#: Runs calls inline and gives their results, in any order; it is given the status of the
#: pass that asked for them (what a step's context reads, e.g. its approval).
Runner = Callable[[Sequence[ActionCall], WorkflowStatus], Awaitable[Sequence[ActionResult]]]


@dataclass
class Settled:
    """What a run of engine passes ended with, and what all its passes asked for."""

    status: WorkflowStatus
    #: When to look again if nothing else happens.
    wake_at: datetime.datetime | None
    #: Calls the caller must start (after writing ``status``, unless ``resumed``).
    calls: list[ActionCall] = field(default_factory=list)
    #: Every call any pass asked for, the inline ones included, in order.
    issued: list[ActionCall] = field(default_factory=list)
    #: Steps whose running action must be cancelled.
    cancel: list[str] = field(default_factory=list)
    #: Inputs from outside that were read: their source must go.
    consumed: list[Input] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    passes: int = 0
    #: The pass limit was reached with inline work still to do.
    exhausted: bool = False
    #: Its ttlAfterFinished has passed: the caller deletes the workflow.
    delete: bool = False


async def settle(
    spec: WorkflowSpec,
    status: WorkflowStatus | None,
    meta: WorkflowMeta,
    *,
    clock: Callable[[], datetime.datetime],
    run: Runner,
    inline: Callable[[ActionCall], bool],
    actions: ActionCatalog,
    inputs: Sequence[Input] = (),
    in_flight: frozenset[str] = frozenset(),
    respond: Callable[[WorkflowStatus], Sequence[Input]] | None = None,
    max_passes: int = 200,
    callbacks: CallbackIssuer = NO_CALLBACKS,
) -> Settled:
    """Advance the workflow until no call is left to run inline (see the module doc)."""
    now = clock()
    out = reconcile(
        spec,
        status,
        meta,
        now,
        inputs=inputs,
        in_flight=in_flight,
        actions=actions,
        callbacks=callbacks,
    )
    settled = Settled(status=out.status, wake_at=out.wake_at)
    for passes in range(1, max_passes + 1):
        settled.passes = passes
        settled.status, settled.wake_at = out.status, out.wake_at
        settled.issued += out.actions
        settled.events += out.events
        settled.consumed += out.consumed
        settled.cancel += out.cancel
        settled.transitions += out.transitions
        settled.delete = out.delete
        settled.calls = [c for c in settled.calls if c.step not in out.cancel]
        now_inline = [c for c in out.actions if inline(c)]
        settled.calls += [c for c in out.actions if not inline(c)]
        answers = tuple(respond(out.status)) if respond is not None else ()
        if not now_inline and not answers:
            return settled
        if passes == max_passes:
            break
        results = tuple(await run(now_inline, out.status)) if now_inline else ()
        out = reconcile(
            spec,
            out.status,
            meta,
            clock(),
            inputs=(*results, *answers),
            in_flight=in_flight | {c.step for c in settled.calls},
            actions=actions,
            callbacks=callbacks,
        )
    settled.exhausted = True
    return settled
