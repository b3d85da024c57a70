"""Drive the pure engine the way the shell does, with fake time: through the one driver
(``engine.driver.settle``) the operator and the local runner use.

Local actions (noop, fail) run through the real action code inline, as the shell runs
them; with ``defer=True`` every call is held as in flight until the test completes it.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence
from typing import Any

from cerebelum.actions import CATALOG, REGISTRY, ActionContext, execute
from cerebelum.api.durations import parse_time
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import StepError, StepPhase, WorkflowStatus
from cerebelum.engine import (
    ActionCall,
    ActionResult,
    ApprovalDecision,
    EventRecord,
    Input,
    Settled,
    WorkflowMeta,
    settle,
)
from cerebelum.engine.repair import load_status

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


async def run_calls(calls: Sequence[ActionCall], status: WorkflowStatus) -> list[ActionResult]:
    results = []
    for call in calls:
        context = ActionContext(
            "ns", "wf", "uid-1", call.step, call.visit, call.attempt, call.idempotency_key
        )
        results.append(await execute(REGISTRY[call.kind], call, context))
    return results


class Driver:
    def __init__(
        self, spec: dict[str, Any], *, defer: bool = False, meta: WorkflowMeta | None = None
    ) -> None:
        self.spec = WorkflowSpec.model_validate(spec)
        self.meta = meta or WorkflowMeta(name="wf", namespace="ns", uid="uid-1")
        self.defer = defer
        self.now = T0
        self.status: WorkflowStatus | None = None
        self.in_flight: dict[str, ActionCall] = {}
        self.calls: list[ActionCall] = []
        self.events: list[EventRecord] = []
        self.cancelled: list[str] = []
        self.consumed: list[Input] = []
        self.last: Settled | None = None

    # -- driving -----------------------------------------------------------------------

    def tick(
        self,
        *,
        decisions: tuple[ApprovalDecision, ...] = (),
        results: tuple[ActionResult, ...] = (),
    ) -> Settled:
        for result in results:
            self.in_flight.pop(result.step, None)
        out = asyncio.run(
            settle(
                self.spec,
                self.status,
                self.meta,
                clock=lambda: self.now,
                run=run_calls,
                inline=lambda call: call.local and not self.defer,
                actions=CATALOG,
                inputs=(*results, *decisions),
                in_flight=frozenset(self.in_flight),
                max_passes=1001,  # the first pass, and up to 1000 fed back
            )
        )
        self.status = out.status
        self.last = out
        self.calls += out.issued
        self.events += out.events
        self.cancelled += out.cancel
        self.consumed += out.consumed
        for name in out.cancel:
            self.in_flight.pop(name, None)
        for call in out.calls:
            self.in_flight[call.step] = call
        return out

    def edit_status(self, edit: Any) -> list[str]:
        """Change the stored status as a user with ``kubectl edit --subresource=status``
        would, then load it as the shell does; returns the repairs made."""
        assert self.status is not None
        wire = self.status.to_wire()
        edit(wire)
        self.status, repairs = load_status(self.spec, wire, self.now)
        return repairs

    def at(self, seconds: float, **kwargs: Any) -> Settled:
        """Move the clock to T0 + seconds and reconcile."""
        self.now = T0 + datetime.timedelta(seconds=seconds)
        return self.tick(**kwargs)

    def approve(self, step: str, approve: bool = True, **kwargs: Any) -> Settled:
        return self.tick(decisions=(ApprovalDecision(step=step, approve=approve, **kwargs),))

    def complete(
        self,
        step: str,
        *,
        ok: bool = True,
        output: Any = None,
        error: StepError | None = None,
        **kwargs: Any,
    ) -> Settled:
        call = self.in_flight[step]
        result = ActionResult(
            step=step,
            visit=call.visit,
            attempt=call.attempt,
            ok=ok,
            output=output,
            error=error,
            **kwargs,
        )
        return self.tick(results=(result,))

    def run_to_end(self, limit: int = 10000) -> Settled:
        """Jump from deadline to deadline until the workflow finishes or waits on a person."""
        out = self.tick()
        for _ in range(limit):
            if self.finished or out.wake_at is None:
                return out
            self.now = max(self.now, out.wake_at)
            out = self.tick()
        raise AssertionError("workflow did not settle")

    # -- reading -----------------------------------------------------------------------

    @property
    def phase(self) -> str:
        assert self.status is not None
        return str(self.status.phase)

    @property
    def finished(self) -> bool:
        return self.status is not None and self.status.phase.finished

    def step(self, name: str) -> Any:
        assert self.status is not None
        return self.status.steps[name]

    def step_phase(self, name: str) -> StepPhase:
        return self.step(name).phase  # type: ignore[no-any-return]

    def event_reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def calls_for(self, name: str) -> list[ActionCall]:
        return [c for c in self.calls if c.step == name]


def seconds_after_t0(stamp: str | datetime.datetime | None) -> float:
    assert stamp is not None
    return (parse_time(stamp) - T0).total_seconds()
