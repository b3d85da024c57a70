"""One reconciliation's working state, the bookkeeping every part of the engine shares, and
the small protocol every step kind implements (at the end).

A ``Run`` owns its own copy of the status and the outcome being built. The step-kind
modules (sleep, approval, poll, retry, the action's attempts) change it through the few
methods here, so a phase change is always recorded in history and a time is always cut to
what status can hold.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cerebelum.api.base import deep_copy
from cerebelum.api.durations import format_time, parse_duration, to_millis
from cerebelum.api.spec import DEFAULT_FINALLY_DEADLINE, Step, WorkflowSpec
from cerebelum.api.status import (
    MainResult,
    StepError,
    StepPhase,
    StepStatus,
    Transition,
    WorkflowPhase,
    WorkflowStatus,
    step_deadline,
)
from cerebelum.api.tokens import NO_CALLBACKS, CallbackIssuer, TokenClaims
from cerebelum.engine.graph import Graph
from cerebelum.engine.types import ActionCatalog, EventRecord, Outcome, WorkflowMeta

HISTORY_LIMIT = 100
#: One step's output, as JSON, at most this big.
OUTPUT_LIMIT_BYTES = 32 * 1024
#: All outputs of a workflow together at most this big: status must stay well below the
#: API server's object limit (etcd's 1.5 MiB), or no write of it would ever succeed again.
OUTPUTS_LIMIT_BYTES = 512 * 1024


def restart_visit(s: StepStatus) -> None:
    """Start the step's visit again (its attempts and waits are lost; its count is kept):
    what a repair does with a step whose stored state cannot go on."""
    visits = max(s.visits - 1, 0)
    for field in StepStatus.model_fields:
        setattr(s, field, getattr(StepStatus(), field))
    s.visits = visits


class WorkflowEnded(Exception):
    """Raised inside a reconciliation once the workflow has reached a final phase."""


class MainEnded(WorkflowEnded):
    """Raised inside a reconciliation once the main steps have ended and the finally steps
    are to run: the workflow has not reached its final phase yet."""


class Run:
    """The state of one reconciliation. Mutates its own copy of the status only."""

    def __init__(
        self,
        spec: WorkflowSpec,
        status: WorkflowStatus | None,
        meta: WorkflowMeta,
        now: datetime.datetime,
        *,
        kinds: Kinds,
        actions: ActionCatalog,
        in_flight: frozenset[str] = frozenset(),
        callbacks: CallbackIssuer = NO_CALLBACKS,
    ) -> None:
        self.spec = spec
        self.callbacks = callbacks
        self.meta = meta
        self.now = to_millis(now)
        self.kinds = kinds
        self.actions = actions
        self.in_flight = in_flight
        self.status = deep_copy(status) if status else WorkflowStatus()
        self.out = Outcome(status=self.status)
        self.graph: Graph | None = None
        #: Steps given an ActionCall in this reconciliation (never issued twice).
        self.issued: set[str] = set()

    # -- reading ---------------------------------------------------------------------------

    def s(self, name: str) -> StepStatus:
        return self.status.steps[name]

    def later(self, delta: datetime.timedelta) -> datetime.datetime:
        """``now + delta`` as status stores it."""
        return to_millis(self.now + delta)

    def callback_token(self, name: str) -> str | None:
        """The token of the step's current attempt (None: this operator issues none)."""
        if not self.callbacks.enabled:
            return None
        s = self.s(name)
        m = self.meta
        return self.callbacks.token(
            TokenClaims(m.namespace, m.name, m.uid, name, s.visits, s.attempts)
        )

    def output_problem(self, name: str, output: Any) -> StepError | None:
        """Why ``output`` cannot be the step's output: too large alone (OutputTooLarge), or
        with the other steps' outputs over the workflow's budget (StatusTooLarge, naming
        the largest); None if it fits."""
        size = len(json.dumps(output, default=str))
        if size > OUTPUT_LIMIT_BYTES:
            message = f"output is {size} bytes, over the {OUTPUT_LIMIT_BYTES}-byte limit"
            return StepError(error_class="OutputTooLarge", message=message)
        sizes = {
            n: len(json.dumps(s.output, default=str))
            for n, s in self.status.steps.items()
            if n != name and s.output is not None
        }
        others = sum(sizes.values())
        if others + size <= OUTPUTS_LIMIT_BYTES:
            return None
        largest = sorted({**sizes, name: size}.items(), key=lambda kv: -kv[1])[:3]
        named = ", ".join(f"{n} ({b} bytes)" for n, b in largest)
        return StepError(
            error_class="StatusTooLarge",
            message=(
                f"output of {name} is {size} bytes; with the other steps' outputs ({others} "
                f"bytes) that is over the workflow's {OUTPUTS_LIMIT_BYTES}-byte budget for "
                f"outputs, which keeps status below the API server's object size limit. The "
                f"largest: {named}. Return less (a reference to where the data is), or split "
                "the workflow"
            ),
        )

    def field(self, name: str) -> str:
        """Where a step is in the spec, for messages: ``spec.steps[2]``."""
        if self.graph is not None and name in self.graph.order:
            return self.graph.field(name)
        return "spec.steps[?]"

    def part(self) -> list[str]:
        """The steps of the part that runs now: the main steps, or once they have ended
        (``status.main`` is set), the finally steps."""
        steps = self.spec.steps if self.status.main is None else self.spec.finally_ or []
        return [s.name for s in steps if s.name in self.status.steps]

    def failures(self) -> list[dict[str, Any]]:
        """What failed so far, for ``workflow.failures``: each failed step with its error
        class and message, and the workflow's own reason when the main steps failed for one
        that is not a step's (DeadlineExceeded, VisitLimitExceeded...)."""
        found: list[dict[str, Any]] = [
            {"step": n, "reason": s.error.error_class, "message": s.error.message}
            for n, s in self.status.steps.items()
            if s.phase == StepPhase.FAILED and s.error is not None
        ]
        main = self.status.main
        if main is not None and main.phase == WorkflowPhase.FAILED and main.reason != "StepFailed":
            found.append({"step": None, "reason": main.reason, "message": main.message})
        return found

    def activation(self, name: str | None = None, **extra: Any) -> dict[str, Any]:
        """What expressions see: inputs, every step, the workflow (and the step at hand)."""
        steps = {
            n: {
                "phase": str(s.phase),
                "output": s.output,
                "attempts": s.attempts,
                "visits": s.visits,
            }
            for n, s in self.status.steps.items()
        }
        activation: dict[str, Any] = {
            "inputs": self.spec.inputs or {},
            "steps": steps,
            "workflow": {
                "name": self.meta.name,
                "namespace": self.meta.namespace,
                "uid": self.meta.uid,
                # In the finally steps: how the main steps ended (Succeeded, Failed,
                # Cancelled); before, the workflow's phase (Running...).
                "phase": str(self.status.main.phase if self.status.main else self.status.phase),
                "failures": self.failures(),
            },
        }
        if name is not None:
            s = self.s(name)
            activation["step"] = {
                "name": name,
                "attempt": s.attempts,
                "visit": s.visits,
                "approval": s.approval.to_wire() if s.approval else None,
            }
        activation.update(extra)
        return activation

    # -- writing ---------------------------------------------------------------------------

    def step_phase(
        self, name: str, phase: StepPhase, reason: str, message: str | None = None
    ) -> None:
        s = self.s(name)
        if s.phase != phase:
            self.history(
                Transition(time=self.now, step=name, phase=phase, reason=reason, message=message)
            )
        s.phase = phase
        s.message = message

    def workflow_phase(self, phase: WorkflowPhase, reason: str, message: str) -> None:
        if self.status.phase != phase or reason == "Started":
            self.history(Transition(time=self.now, phase=phase, reason=reason, message=message))
        self.status.phase = phase
        self.status.message = message

    def history(self, entry: Transition) -> None:
        history = self.status.history or []
        history.append(entry)
        self.status.history = history[-HISTORY_LIMIT:]
        self.out.transitions.append(entry)

    def event(self, type_: str, reason: str, message: str, *, step: str | None = None) -> None:
        self.out.events.append(EventRecord(type_, reason, message, step))

    def end(
        self, phase: WorkflowPhase, reason: str, message: str, *, run_finally: bool = True
    ) -> None:
        """The part that runs now is over: its unfinished steps are cancelled. After the
        main steps, the finally steps start (unless ``run_finally`` is False: the spec itself
        cannot run) and ``MainEnded`` is raised; after them, or with none, the workflow
        finishes and ``WorkflowEnded`` is raised. Ends the reconciliation either way."""
        st = self.status
        for name in self.part():
            s = st.steps[name]
            if s.phase == StepPhase.RUNNING:
                self.out.cancel.append(name)
            if not s.phase.finished:
                s.finished_at = self.now if s.phase != StepPhase.PENDING else None
                s.next_attempt_at = None
                self.step_phase(name, StepPhase.CANCELLED, reason, f"workflow {phase}: {message}")
        if st.main is None and self.spec.finally_ and run_finally:
            self._begin_finally(phase, reason, message)
        if st.main is not None:
            phase, reason, message = st.main.after_finally(phase, reason, message)
        st.finished_at = self.now
        st.next_wake_at = None
        self.workflow_phase(phase, reason, message)
        self.event(
            "Normal" if phase == WorkflowPhase.SUCCEEDED else "Warning", f"Workflow{phase}", message
        )
        raise WorkflowEnded

    def _begin_finally(self, phase: WorkflowPhase, reason: str, message: str) -> None:
        bound = parse_duration(self.spec.finally_deadline or DEFAULT_FINALLY_DEADLINE)
        self.status.main = MainResult(
            phase=phase,
            reason=reason,
            message=message,
            finally_started_at=self.now,
            finally_deadline=self.later(bound),
        )
        why = f"the main steps ended {phase} ({reason}: {message}); the finally steps run"
        self.history(
            Transition(time=self.now, phase=WorkflowPhase.RUNNING, reason="Finally", message=why)
        )
        self.status.phase = WorkflowPhase.RUNNING
        self.status.message = why
        self.event(
            "Normal" if phase == WorkflowPhase.SUCCEEDED else "Warning", "FinallyStarted", why
        )
        raise MainEnded

    def stamp(self) -> str:
        """``now`` as written in messages."""
        return format_time(self.now)

    def spec_step(self, name: str) -> Step:
        return self.spec.step(name)


# -- the protocol of step kinds ------------------------------------------------------------
# The small protocol every step kind implements, and the table that wires them together.
#
# A step's visit is a sequence of *stages* (``when``, then sleep, approval, the action...):
# each stage that applies to the step is entered in turn, and when it is over the visit goes
# on to the next (``visit.continue_visit``). While a stage waits, the step is in the stage's
# *wait* phase, which has a deadline (from the phase table in ``api.status``), a handler for
# the deadline passing, and a repair of its part of a hand-edited status. Inputs from outside
# (an action's result, a decision) are typed values, each dispatched to the one handler of
# its type.
#
# ``engine.kinds`` builds the one ``Kinds`` table; a ``Run`` carries it, so the modules can
# hand a visit on to the next stage without importing each other.


class Stage(Protocol):
    """One part of a visit, in visit order."""

    name: str

    def applies(self, step: Step) -> bool:
        """The step has this stage (its spec asks for it)."""
        ...

    def enter(self, run: Run, step: Step) -> None:
        """Begin this stage of the step's current visit."""
        ...


class Wait(Protocol):
    """A phase in which a step waits, and what ends the wait."""

    phase: StepPhase

    def deadline(self, step: Step, s: StepStatus) -> datetime.datetime | None:
        """When the step must be looked at again (None: only when an input arrives)."""
        ...

    def on_deadline(self, run: Run, step: Step) -> None:
        """The deadline has passed."""
        ...

    def repair(self, step: Step, s: StepStatus, now: datetime.datetime) -> list[str]:
        """Make a hand-edited status of a step in this phase usable; one line per change."""
        ...


class TableDeadline:
    """A wait whose deadline is the field the phase table names."""

    def deadline(self, step: Step, s: StepStatus) -> datetime.datetime | None:
        return step_deadline(s)


#: A handler of one input type: (run, the input) -> None.
Handler = Callable[[Run, Any], None]


@dataclass(frozen=True)
class Kinds:
    """Every step kind, in one place."""

    #: The stages of a visit, in order.
    stages: tuple[Stage, ...]
    #: The wait of each waiting phase.
    waits: Mapping[StepPhase, Wait]
    #: The handler of each input type.
    inputs: Mapping[type, Handler]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)
