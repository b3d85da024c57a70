"""``wf.execute(inputs)``: run a workflow here, with no cluster, on the operator's own engine.

This is not a second implementation of the semantics: the pure engine the operator runs
(``cerebelum.engine.reconcile``) decides everything, and this loop plays the shell. Python
steps run in this process (through the worker's ``run_step``); declarative actions run
through the operator's action code (an http step makes a real request). Time is virtual:
when nothing is running, the clock jumps to the engine's next deadline, so a week of
sleeps, polls and retry backoff passes in milliseconds. Approvals are scripted with
``approvals=``, and in-step ``await sleep(...)``/``await wait_for_approval(...)`` pause the
workflow after their step, as Cerebelum Core does, through the same StepRun result and
engine path as on the operator.

The result is shaped like Cerebelum's ``ExecutionResult`` (``execution_id``, ``status``,
``output`` as the last step's ``{"ok": value}``), plus ``final_result``, every step's
output, the order steps finished in, and the full Workflow status. As in Cerebelum, a
failed workflow raises ``ExecutionError`` (``raise_on_failure=False`` returns it instead).
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cerebelum.api.durations import format_time
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import (
    StepPhase,
    Transition,
    WorkflowPhase,
    WorkflowStatus,
)
from cerebelum.api.tokens import CallbackIssuer
from cerebelum.engine import (
    ActionCall,
    ActionResult,
    ApprovalDecision,
    Input,
    WorkflowMeta,
    settle,
)
from cerebelum.engine.notify import NOTIFY_KIND
from cerebelum.engine.types import CallbackDelivery, CallbackOutcome
from cerebelum.sdk.context import Context
from cerebelum.sdk.helpers import CLOCK
from cerebelum.sdk.running import pause_request, run_step
from cerebelum.sdk.steps import StepDef, StepExecutionError, reference

#: Where the virtual clock starts unless ``start=`` says otherwise.
EPOCH = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
#: Callback tokens of local runs: a key of this process, and a URL nobody serves (a local
#: run's callbacks are scripted: ``callbacks={"step": payload}``).
CALLBACK_TOKENS = CallbackIssuer.ephemeral("https://callbacks.local.invalid")
#: A guard against a workflow that never settles (each pass is one engine reconciliation).
MAX_PASSES = 100_000

#: A scripted decision: True/False, a dict {"approve": bool, "data":, "reason":, "by":}, or
#: a function of (step, request) giving one of those (None: no decision yet). Without any
#: script the run stops at the first approval (status "waiting_for_approval"); with one, a
#: step it never decides waits on the virtual clock until its timeout, if it has one.
Decision = bool | Mapping[str, Any] | None
Approvals = Mapping[str, Decision] | Callable[[str, Mapping[str, Any]], Decision]
#: Scripted callbacks, by step: the payload the outside system sends (a step not named, or
#: None, is never called back: it waits for its timeout on the virtual clock, or the run
#: stops there). ``{"fail": "why"}`` reports a failure instead.
Callbacks = Mapping[str, Any]


class LocalWorkflow(Protocol):
    """What the local runner needs of a ``@workflow`` (``sdk.workflow.WorkflowDef``)."""

    name: str
    resource_name: str
    definition_func: Callable[..., Any]

    @property
    def steps(self) -> list[StepDef]: ...

    @property
    def finally_steps(self) -> list[StepDef]: ...

    def _spec(
        self, inputs: dict[str, Any] | None = None, *, importable: bool
    ) -> dict[str, Any]: ...


class ExecutionError(StepExecutionError):
    """The workflow failed (Cerebelum raises its ``StepExecutionError``, which this is, from
    ``execute``); ``result`` has it all."""

    def __init__(
        self, message: str, result: ExecutionResult, original_error: BaseException | None = None
    ) -> None:
        super().__init__(result.failed_step, message, original_error, result.execution_id)
        self.result = result
        self.error = result.error


@dataclass
class ExecutionResult:
    """A local run's outcome, Cerebelum's fields first."""

    execution_id: str
    #: completed | failed | cancelled | waiting_for_approval (no scripted decision)
    status: str
    #: Cerebelum's: the last finished step's result envelope, ``{"ok": value}``.
    output: Any = None
    error: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    #: The last finished step's value, unwrapped (Cerebelum's README calls it so).
    final_result: Any = None
    #: Every step's output, by name (steps that did not succeed have none).
    outputs: dict[str, Any] = field(default_factory=dict)
    #: Steps in the order they finished (skipped ones left out; a loop lists one each time).
    steps_run: list[str] = field(default_factory=list)
    failed_step: str | None = None
    #: Steps waiting for a decision when the run stopped.
    waiting_for: list[str] = field(default_factory=list)
    #: The Workflow status the operator would have written (its history: the last 100).
    workflow_status: WorkflowStatus | None = None
    #: Every transition of the run, oldest first.
    history: list[Transition] = field(default_factory=list)


class VirtualClock:
    """Time that moves only when told: the engine's deadlines and the helpers' waits."""

    def __init__(self, start: datetime.datetime) -> None:
        self.start = start
        self.now = start

    def monotonic(self) -> float:
        return (self.now - self.start).total_seconds()

    async def sleep(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=max(0.0, seconds))


class LocalRun:
    def __init__(
        self,
        wf: LocalWorkflow,
        inputs: Mapping[str, Any],
        *,
        approvals: Approvals | None = None,
        callbacks: Callbacks | None = None,
        start: datetime.datetime | None = None,
        namespace: str = "local",
        digitalocean_endpoint: str | None = None,
    ) -> None:
        from cerebelum.actions import ActionSettings

        manifest_spec = wf._spec(dict(inputs), importable=False)
        self.wf = wf
        self.spec = WorkflowSpec.model_validate(manifest_spec)
        self.inputs = dict(manifest_spec.get("inputs") or {})
        self.by_function = {
            reference(s): s for s in [*wf.steps, *wf.finally_steps] if s.fn is not None
        }
        self.approvals = approvals
        self.callbacks = dict(callbacks or {})
        self.clock = VirtualClock(start or EPOCH)
        self.execution_id = str(uuid.uuid4())
        self.meta = WorkflowMeta(name=wf.resource_name, namespace=namespace, uid=self.execution_id)
        self.namespace = namespace
        self.settings = ActionSettings.defaults()
        if digitalocean_endpoint is not None:
            self.settings = self.settings.with_values(
                "digitalocean", endpoint=digitalocean_endpoint
            )
        self.status: WorkflowStatus | None = None
        #: The latest exception each Python step raised here (``original_error``).
        self.exceptions: dict[str, BaseException] = {}
        self.finished_order: list[str] = []
        self.history: list[Transition] = []

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> ExecutionResult:
        """Settle the engine (every call runs inline, scripted decisions answer at once),
        then jump the clock to the next deadline, until the workflow ends or waits on a
        person nobody scripted."""
        from cerebelum.actions import CATALOG

        budget = MAX_PASSES
        while budget > 0:
            settled = await settle(
                self.spec,
                self.status,
                self.meta,
                clock=lambda: self.clock.now,
                run=self._run_all,
                inline=lambda call: True,
                actions=CATALOG,
                respond=self._decide,
                max_passes=budget,
                callbacks=CALLBACK_TOKENS,
            )
            budget -= settled.passes
            self.status = settled.status
            self._note(settled.transitions)
            if settled.exhausted:
                break
            if self.status.phase.finished or (
                (self.approvals is None and self._waiting()) or self._uncalled()
            ):
                return self._result()  # without a script, nobody can answer: stop and say so
            if settled.wake_at is None:
                return self._result()  # waits on a person with no scripted decision
            self.clock.now = max(self.clock.now, settled.wake_at)
        raise RuntimeError(f"workflow {self.wf.name} did not settle in {MAX_PASSES} passes")

    async def _run_all(
        self, calls: Sequence[ActionCall], status: WorkflowStatus
    ) -> list[ActionResult]:
        self.status = status  # what the steps' contexts read (their approval)
        return list(await asyncio.gather(*(self._run(c) for c in calls)))

    # -- running attempts ------------------------------------------------------------------

    async def _run(self, call: ActionCall) -> ActionResult:
        from cerebelum.actions import REGISTRY, ActionContext, execute

        if call.kind == NOTIFY_KIND:  # a local run notifies nobody; the notice counts as sent
            return ActionResult(call.step, call.visit, call.attempt, ok=True, output={})

        if call.kind == "python":
            return await self._run_python(call)
        assert self.status is not None
        step_status = self.status.steps.get(call.step)
        approval = step_status.approval.to_wire() if step_status and step_status.approval else None
        context = ActionContext(
            self.namespace,
            self.meta.name,
            self.meta.uid,
            call.step,
            call.visit,
            call.attempt,
            call.idempotency_key,
            settings=self.settings.of(call.kind),
            inputs=self.inputs,
            pins=self.status.pins or {},
            approval=approval,
            timeout=call.timeout,
        )
        return await execute(REGISTRY[call.kind], call, context)

    async def _run_python(self, call: ActionCall) -> ActionResult:
        from cerebelum.actions.python import pause_from_wire

        assert self.status is not None
        stepdef: StepDef | None = self.by_function.get(str(call.params.get("function")))
        if stepdef is None:  # the spec names a function of this workflow: cannot happen
            raise RuntimeError(f"no step function {call.params.get('function')}")
        step_status = self.status.steps.get(call.step)
        approval = step_status.approval.to_wire() if step_status and step_status.approval else None
        context = Context(
            workflow_name=self.wf.name,
            step_name=call.step,
            inputs=self.inputs,
            attempt=call.attempt,
            visit=call.visit,
            namespace=self.namespace,
            idempotency_key=call.idempotency_key,
            approval=approval,
            deadline=self.clock.now + call.timeout if call.timeout else None,
            execution_id=self.execution_id,
        )
        token = CLOCK.set(self.clock)
        try:
            timeout = call.timeout.total_seconds() if call.timeout else None
            done = await run_step(
                stepdef,
                context,
                call.params.get("arguments") or {},
                list(call.params.get("checks") or []),
                timeout,
            )
        finally:
            CLOCK.reset(token)
        if done.exception is not None:
            self.exceptions[call.step] = done.exception
        # The in-step wait takes the operator's path: written as a StepRun's result would
        # be, read back as the operator reads it, and carried out by the engine.
        request = pause_request(done.pause)
        return ActionResult(
            step=call.step,
            visit=call.visit,
            attempt=call.attempt,
            ok=done.ok,
            output=done.value,
            error=done.error,
            checks=done.checks,
            pause=pause_from_wire(request.to_wire()) if request else None,
        )

    # -- approvals the engine waits for ------------------------------------------------------

    def _waiting(self) -> list[str]:
        assert self.status is not None
        return [
            n for n, s in self.status.steps.items() if s.phase == StepPhase.WAITING_FOR_APPROVAL
        ]

    def _uncalled(self) -> list[str]:
        """Callback waits no script answers and no timeout ends: nobody ever will."""
        assert self.status is not None
        return [
            n
            for n, s in self.status.steps.items()
            if s.phase == StepPhase.WAITING_FOR_CALLBACK
            and self.callbacks.get(n) is None
            and (s.callback is None or s.callback.deadline is None)
        ]

    def _decide(self, status: WorkflowStatus) -> list[Input]:
        answers: list[Input] = list(self._call_back(status))
        return answers + list(self._approve(status))

    def _call_back(self, status: WorkflowStatus) -> list[CallbackDelivery]:
        out = []
        for name, s in status.steps.items():
            payload = self.callbacks.get(name)
            if s.phase != StepPhase.WAITING_FOR_CALLBACK or payload is None:
                continue
            if isinstance(payload, Mapping) and set(payload) == {"fail"}:
                delivery = CallbackDelivery(
                    name, CallbackOutcome.FAILED, {"message": payload["fail"]}, None, "local"
                )
            else:
                delivery = CallbackDelivery(name, CallbackOutcome.SUCCEEDED, payload, None, "local")
            out.append(delivery)
        return out

    def _approve(self, status: WorkflowStatus) -> list[ApprovalDecision]:
        decisions = []
        for name, s in status.steps.items():
            if s.phase != StepPhase.WAITING_FOR_APPROVAL:
                continue
            request = s.approval.to_wire() if s.approval else {}
            decision = self._decision(name, request)
            if decision is not None:
                approve, data, reason, by = decision
                decisions.append(
                    ApprovalDecision(
                        step=name, approve=approve, data=data, reason=reason, decided_by=by
                    )
                )
        return decisions

    def _decision(
        self, step: str, request: Mapping[str, Any]
    ) -> tuple[bool, Any, str | None, str | None] | None:
        script = self.approvals
        if script is None:
            return None
        raw = script(step, request) if callable(script) else script.get(step)
        if raw is None:
            return None
        if isinstance(raw, bool):
            return raw, None, None, "local"
        if isinstance(raw, Mapping):
            return (
                bool(raw.get("approve", True)),
                raw.get("data"),
                raw.get("reason"),
                raw.get("by", "local"),
            )
        raise TypeError(f"approvals[{step!r}] must be True/False or a dict, not {raw!r}")

    # -- the result ------------------------------------------------------------------------

    def _note(self, transitions: list[Transition]) -> None:
        """Keep the whole history (status keeps the last 100) and the order steps finished."""
        self.history += transitions
        for t in transitions:
            if t.step is not None and t.phase in (StepPhase.SUCCEEDED, StepPhase.FAILED):
                self.finished_order.append(t.step)

    def _result(self) -> ExecutionResult:
        st = self.status
        assert st is not None
        outputs = {n: s.output for n, s in st.steps.items() if s.phase == StepPhase.SUCCEEDED}
        done = [n for n in self.finished_order if st.steps[n].phase == StepPhase.SUCCEEDED]
        last = done[-1] if done else None
        final = outputs.get(last) if last else None
        failed = next(
            (n for n in reversed(self.finished_order) if st.steps[n].phase == StepPhase.FAILED),
            None,
        )
        status = {
            WorkflowPhase.SUCCEEDED: "completed",
            WorkflowPhase.FAILED: "failed",
            WorkflowPhase.CANCELLED: "cancelled",
        }.get(st.phase, "waiting_for_callback" if self._uncalled() else "waiting_for_approval")
        error = None
        if st.phase == WorkflowPhase.FAILED:
            error = st.message
        return ExecutionResult(
            execution_id=self.execution_id,
            status=status,
            output={"ok": final} if last else None,
            error=error,
            started_at=format_time(st.started_at) if st.started_at else None,
            completed_at=format_time(st.finished_at) if st.finished_at else None,
            final_result=final,
            outputs=outputs,
            steps_run=list(self.finished_order),
            failed_step=failed,
            waiting_for=[*self._waiting(), *self._uncalled()] if not st.phase.finished else [],
            workflow_status=st,
            history=list(self.history),
        )


async def run(
    wf: LocalWorkflow,
    inputs: Mapping[str, Any] | None = None,
    *,
    approvals: Approvals | None = None,
    callbacks: Callbacks | None = None,
    start: datetime.datetime | None = None,
    raise_on_failure: bool = True,
    digitalocean_endpoint: str | None = None,
) -> ExecutionResult:
    """Run ``wf`` to its end (or to an approval or callback nobody scripted) on a virtual
    clock."""
    local = LocalRun(
        wf,
        inputs or {},
        approvals=approvals,
        callbacks=callbacks,
        start=start,
        digitalocean_endpoint=digitalocean_endpoint,
    )
    result = await local.run()
    if raise_on_failure and result.status == "failed":
        where = f"step '{result.failed_step}' " if result.failed_step else ""
        original = local.exceptions.get(result.failed_step or "")
        raise ExecutionError(f"workflow {wf.name} failed: {where}{result.error}", result, original)
    return result


async def execute(
    wf: LocalWorkflow, inputs: Mapping[str, Any], options: dict[str, Any]
) -> ExecutionResult:
    """``await wf.execute(inputs, **options)``: Cerebelum's options are taken (``executor``
    runs it elsewhere; ``distributed=True`` is refused, saying what replaces Core)."""
    options = dict(options)
    executor = options.pop("executor", None)
    if options.pop("distributed", False):
        raise ValueError(
            "execute(distributed=True): there is no Cerebelum Core here; the cluster is the "
            f"engine: `cerebelum apply MODULE:{wf.definition_func.__name__}` and run "
            "`cerebelum worker` for its Python steps"
        )
    for unused in ("max_reconnect_attempts", "reconnect_max_delay"):
        options.pop(unused, None)
    if executor is not None:
        result: ExecutionResult = await executor.execute(wf, dict(inputs))
        return result
    return await run(wf, inputs, **options)


def execute_sync(
    wf: LocalWorkflow, inputs: Mapping[str, Any], options: dict[str, Any]
) -> ExecutionResult:
    """``wf.execute_sync(inputs)``: the same, run at once from plain (non-async) code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(execute(wf, inputs, options))
    raise RuntimeError(
        "wf.execute_sync(...) runs its own event loop, and one is running here: "
        "result = await wf.execute(...)"
    )
