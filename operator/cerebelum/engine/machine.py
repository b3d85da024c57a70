"""The workflow state machine: (spec, status, decisions, results, now) -> outcome.

Pure: no I/O, no clock, no randomness, no Kubernetes. The shell calls ``reconcile`` with
what it knows and carries out the effects in the outcome. Calling it twice with the same
input gives the same answer, which is what makes restarts safe.

One visit of a step goes: ``when`` (skip if false) -> ``sleep`` -> ``approval`` -> action
attempts (``poll`` repeats on success, ``retry`` on failure) -> ``next`` routing.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from typing import Any

from cerebelum.api.durations import format_time, parse_duration, parse_time
from cerebelum.api.spec import Outcome as OnOutcome
from cerebelum.api.spec import Step, WorkflowSpec
from cerebelum.api.status import (
    ApprovalStatus,
    Condition,
    PauseKind,
    StepError,
    StepPhase,
    StepStatus,
    Transition,
    WorkflowPhase,
    WorkflowStatus,
)
from cerebelum.engine.backoff import poll_interval, retry_delay
from cerebelum.engine.graph import Graph, InvalidSpec
from cerebelum.engine.params import params_problem
from cerebelum.engine.types import (
    ActionCall,
    ActionResult,
    ApprovalDecision,
    EventRecord,
    Outcome,
    Pause,
    WorkflowMeta,
)
from cerebelum.expressions import ExpressionError, evaluate_bool, interpolate

DEFAULT_MAX_STEP_VISITS = 1000
HISTORY_LIMIT = 100
#: Outputs larger than this (as JSON) fail the step, so status stays far below etcd's limit.
OUTPUT_LIMIT_BYTES = 32 * 1024
#: Actions that complete at once without I/O: the shell may run them inline.
LOCAL_ACTIONS = frozenset({"noop", "fail"})

_WAITING = (
    StepPhase.SLEEPING,
    StepPhase.WAITING_FOR_APPROVAL,
    StepPhase.POLLING,
    StepPhase.RETRYING,
)


class _WorkflowEnded(Exception):
    """Raised inside a reconciliation once the workflow has reached a final phase."""


def reconcile(
    spec: WorkflowSpec,
    status: WorkflowStatus | None,
    meta: WorkflowMeta,
    now: datetime.datetime,
    *,
    decisions: tuple[ApprovalDecision, ...] = (),
    results: tuple[ActionResult, ...] = (),
    in_flight: frozenset[str] = frozenset(),
) -> Outcome:
    """Advance the workflow as far as it can go at ``now``.

    ``in_flight`` names steps whose action this process is running; a Running step not in
    it has lost its runner (an operator restart) and its attempt is issued again.
    """
    run = _Run(spec, status, meta, now, in_flight)
    try:
        with contextlib.suppress(_WorkflowEnded):
            run.advance(decisions, results)
        return run.finish()
    except Exception as exc:
        # Deterministic: the same input would fail the same way on every retry, so looping
        # on it would only hide it. The workflow fails and says why.
        return _engine_fault(spec, status, meta, now, exc)


def _engine_fault(
    spec: WorkflowSpec,
    status: WorkflowStatus | None,
    meta: WorkflowMeta,
    now: datetime.datetime,
    exc: Exception,
) -> Outcome:
    message = f"the engine cannot go on with this workflow: {type(exc).__name__}: {exc}"[:1024]
    run = _Run(spec, status, meta, now, frozenset())
    try:
        with contextlib.suppress(_WorkflowEnded):
            run._end(WorkflowPhase.FAILED, "EngineError", message)
        return run.finish()
    except Exception:
        stamp = format_time(now)
        failed = WorkflowStatus(
            phase=WorkflowPhase.FAILED,
            message=message,
            started_at=stamp,
            finished_at=stamp,
            observed_generation=meta.generation,
            conditions=[
                Condition(
                    type="Succeeded",
                    status="False",
                    reason="EngineError",
                    message=message,
                    last_transition_time=stamp,
                    observed_generation=meta.generation,
                )
            ],
        )
        return Outcome(status=failed, events=[EventRecord("Warning", "WorkflowFailed", message)])


class _Run:
    """One reconciliation's working state. Mutates its own copy of the status only."""

    def __init__(
        self,
        spec: WorkflowSpec,
        status: WorkflowStatus | None,
        meta: WorkflowMeta,
        now: datetime.datetime,
        in_flight: frozenset[str],
    ) -> None:
        self.spec = spec
        self.meta = meta
        self.now = now
        self.stamp = format_time(now)
        self.in_flight = in_flight
        self.status = status.model_copy(deep=True) if status else WorkflowStatus()
        self.out = Outcome(status=self.status)
        self.graph: Graph | None = None
        #: Steps given an ActionCall in this reconciliation (never issued twice).
        self.issued: set[str] = set()

    # -- the main loop -----------------------------------------------------------------

    def advance(
        self, decisions: tuple[ApprovalDecision, ...], results: tuple[ActionResult, ...]
    ) -> None:
        st = self.status
        if st.phase.finished:
            self.out.consumed.extend(decisions)  # nothing can use them any more
            return
        st.observed_generation = self.meta.generation
        if st.started_at is None:
            st.started_at = self.stamp
            self._workflow_transition(WorkflowPhase.RUNNING, "Started", "workflow started")
        try:
            self.graph = Graph(self.spec)
        except InvalidSpec as exc:
            self._end(WorkflowPhase.FAILED, "InvalidSpec", str(exc))
        self._sync_step_entries()

        if self.spec.cancel or self.meta.cancel_requested:
            self._end(WorkflowPhase.CANCELLED, "Cancelled", "cancelled by request")
        if self.spec.active_deadline:
            deadline = parse_time(st.started_at) + parse_duration(self.spec.active_deadline)
            if self.now >= deadline:
                self._end(
                    WorkflowPhase.FAILED,
                    "DeadlineExceeded",
                    f"activeDeadline {self.spec.active_deadline} passed at {format_time(deadline)}",
                )

        for result in results:
            self._apply_result(result)
        for decision in decisions:
            self._apply_decision(decision)
        if self.spec.suspend:
            return
        self._resume_lost_attempts()
        self._fire_timers()
        self._start_ready_steps()

    def finish(self) -> Outcome:
        st = self.status
        if not st.phase.finished:
            self._derive_phase()
        active = [
            n for n, s in st.steps.items() if not s.phase.finished and s.phase != StepPhase.PENDING
        ]
        st.current_steps = active or None
        st.current_step = active[0] if active else None
        done = sum(1 for s in st.steps.values() if s.phase.done)
        st.progress = f"{done}/{len(self.spec.steps)}"
        self.out.wake_at = None if st.phase.finished else self._next_deadline()
        st.next_wake_at = format_time(self.out.wake_at) if self.out.wake_at else None
        self._set_condition()
        return self.out

    # -- step bookkeeping --------------------------------------------------------------

    def _sync_step_entries(self) -> None:
        """Steps added to the spec appear as Pending; removed ones disappear."""
        names = [s.name for s in self.spec.steps]
        current = self.status.steps
        self.status.steps = {n: current.get(n) or StepStatus() for n in names}

    def _s(self, name: str) -> StepStatus:
        return self.status.steps[name]

    def _step_phase(
        self, name: str, phase: StepPhase, reason: str, message: str | None = None
    ) -> None:
        s = self._s(name)
        if s.phase != phase:
            self._history(
                Transition(time=self.stamp, step=name, phase=phase, reason=reason, message=message)
            )
        s.phase = phase
        s.message = message

    def _history(self, entry: Transition) -> None:
        history = self.status.history or []
        history.append(entry)
        self.status.history = history[-HISTORY_LIMIT:]

    def _event(self, type_: str, reason: str, message: str) -> None:
        self.out.events.append(EventRecord(type_, reason, message))

    def _activation(self, name: str | None = None, **extra: Any) -> dict[str, Any]:
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
            },
        }
        if name is not None:
            s = self._s(name)
            activation["step"] = {
                "name": name,
                "attempt": s.attempts,
                "visit": s.visits,
                "approval": s.approval.to_wire() if s.approval else None,
            }
        activation.update(extra)
        return activation

    def _field(self, name: str) -> str:
        return f"spec.steps[{self.graph.order.index(name) if self.graph else '?'}]"

    # -- inputs: results and decisions ---------------------------------------------------

    def _apply_result(self, result: ActionResult) -> None:
        s = self.status.steps.get(result.step)
        if (
            s is None
            or s.phase != StepPhase.RUNNING
            or s.visits != result.visit
            or s.attempts != result.attempt
        ):
            return  # a stale result (a cancelled or superseded attempt): ignore it
        step = self.spec.step(result.step)
        if not result.ok:
            error = result.error or StepError(error_class="Unknown", message="action failed")
            self._attempt_failed(step, error, result.retry_after)
            return
        size = len(json.dumps(result.output, default=str))
        if size > OUTPUT_LIMIT_BYTES:
            message = f"output is {size} bytes, over the {OUTPUT_LIMIT_BYTES}-byte limit"
            self._fail_step(step, StepError(error_class="OutputTooLarge", message=message))
            return
        s.output = result.output
        s.error = None
        s.checks = dict(result.checks) if result.checks else None
        if step.poll is None:
            self._done(step, result.output, result.pause)
            return
        try:
            met = evaluate_bool(
                step.poll.until,
                self._activation(
                    step.name, output=result.output, attempt=s.attempts, checks=s.checks or {}
                ),
                field=f"{self._field(step.name)}.poll.until",
            )
        except ExpressionError as exc:
            self._fail_step(step, StepError(error_class="ExpressionError", message=str(exc)))
            return
        if met:
            self._done(step, result.output, result.pause)
        else:
            self._poll_again(step)

    def _apply_decision(self, decision: ApprovalDecision) -> None:
        self.out.consumed.append(decision)
        s = self.status.steps.get(decision.step)
        verb = "approval" if decision.approve else "rejection"
        if s is None:
            self._event(
                "Warning", "DecisionIgnored", f"{verb} names unknown step {decision.step!r}"
            )
            return
        if s.phase != StepPhase.WAITING_FOR_APPROVAL:
            self._event(
                "Warning",
                "DecisionIgnored",
                f"{verb} of step {decision.step!r} ignored: it is {s.phase}, not waiting for approval",
            )
            return
        step = self.spec.step(decision.step)
        approval = s.approval or ApprovalStatus()
        approval.decided_at = self.stamp
        approval.decided_by = decision.decided_by
        approval.reason = decision.reason
        s.approval = approval
        by = f" by {decision.decided_by}" if decision.decided_by else ""
        why = f": {decision.reason}" if decision.reason else ""
        if decision.approve:
            approval.decision = "Approved"
            approval.data = decision.data
            self._event("Normal", "Approved", f"step {step.name} approved{by}{why}")
            if s.paused == PauseKind.APPROVAL:
                self._unpause(step)
            else:
                self._after_approval(step, decision.data)
            return
        approval.decision = "Rejected"
        self._event("Warning", "Rejected", f"step {step.name} rejected{by}{why}")
        error = StepError(error_class="Rejected", message=f"rejected{by}{why}")
        gate = step.approval
        if gate is not None and gate.on_reject == OnOutcome.GOTO and gate.reject_goto:
            self._fail_step(step, error, route=False)
            self._goto(step.name, gate.reject_goto, "Rejected")
        else:
            self._fail_step(step, error)

    # -- timers ------------------------------------------------------------------------

    def _resume_lost_attempts(self) -> None:
        """A Running step that nobody runs lost its runner: issue the same attempt again."""
        for name, s in self.status.steps.items():
            if (
                s.phase == StepPhase.RUNNING
                and name not in self.in_flight
                and name not in self.issued
            ):
                self._issue_call(self.spec.step(name), resumed=True)

    def _fire_timers(self) -> None:
        for name in list(self.status.steps):
            s = self._s(name)
            due = _step_deadline(s)
            if due is None or self.now < due:
                continue
            step = self.spec.step(name)
            if s.phase == StepPhase.SLEEPING:
                self._event("Normal", "Woke", f"step {name} finished sleeping")
                if s.paused == PauseKind.SLEEP:
                    self._unpause(step)
                else:
                    self._open_gate(step)
            elif s.phase == StepPhase.WAITING_FOR_APPROVAL:
                if s.paused == PauseKind.APPROVAL:
                    self._pause_timed_out(step)
                else:
                    self._approval_timed_out(step)
            elif s.phase == StepPhase.POLLING and self._poll_out_of_time(step):
                self._poll_exhausted(step)
            else:
                self._launch(step)

    def _next_deadline(self) -> datetime.datetime | None:
        times = [due for s in self.status.steps.values() if (due := _step_deadline(s)) is not None]
        if self.spec.active_deadline and self.status.started_at:
            times.append(
                parse_time(self.status.started_at) + parse_duration(self.spec.active_deadline)
            )
        return min(times) if times else None

    # -- starting steps ----------------------------------------------------------------

    def _start_ready_steps(self) -> None:
        assert self.graph is not None
        progressed = True
        while progressed:
            progressed = False
            for name in self.graph.order:
                s = self._s(name)
                if s.phase != StepPhase.PENDING:
                    continue
                deps = [self._s(d) for d in self.graph.deps[name]]
                if any(d.phase.finished and not d.phase.done for d in deps):
                    blocker = next(
                        d
                        for d in self.graph.deps[name]
                        if self._s(d).phase.finished and not self._s(d).phase.done
                    )
                    self._skip(name, f"dependency {blocker} did not succeed")
                    progressed = True
                elif all(d.phase.done for d in deps):
                    self._start_visit(self.spec.step(name))
                    progressed = True

    def _skip(self, name: str, why: str) -> None:
        s = self._s(name)
        s.finished_at = self.stamp
        self._step_phase(name, StepPhase.SKIPPED, "Skipped", why)
        self._event("Normal", "StepSkipped", f"step {name} skipped: {why}")

    def _start_visit(self, step: Step) -> None:
        st = self.status
        cap = self.spec.max_step_visits or DEFAULT_MAX_STEP_VISITS
        if st.total_visits >= cap:
            self._end(
                WorkflowPhase.FAILED,
                "VisitLimitExceeded",
                f"step {step.name} would start visit {st.total_visits + 1} of the workflow, over "
                f"spec.maxStepVisits={cap}: a goto loop does not end",
            )
        previous = self._s(step.name)
        if step.when:
            try:
                run_it = evaluate_bool(
                    step.when, self._activation(), field=f"{self._field(step.name)}.when"
                )
            except ExpressionError as exc:
                st.steps[step.name] = StepStatus(visits=previous.visits, started_at=self.stamp)
                self._fail_step(step, StepError(error_class="ExpressionError", message=str(exc)))
                return
            if not run_it:
                self._skip(step.name, f"when {step.when!r} is false")
                return
        st.total_visits += 1
        visit = previous.visits + 1
        st.steps[step.name] = StepStatus(
            phase=StepPhase.PENDING,
            visits=visit,
            started_at=self.stamp,
            idempotency_key=f"{self.meta.uid}.{step.name}.{visit}",
        )
        if step.sleep is None:
            self._open_gate(step)
            return
        try:
            if step.sleep.duration:
                until = self.now + parse_duration(step.sleep.duration)
            else:
                raw = interpolate(
                    step.sleep.until,
                    self._activation(step.name),
                    field=f"{self._field(step.name)}.sleep.until",
                )
                until = parse_time(str(raw))
        except (ExpressionError, ValueError) as exc:
            self._fail_step(step, StepError(error_class="InvalidSleep", message=str(exc)))
            return
        if until <= self.now:
            self._open_gate(step)
            return
        self._s(step.name).sleep_until = format_time(until)
        self._step_phase(
            step.name, StepPhase.SLEEPING, "Sleeping", f"sleeping until {format_time(until)}"
        )
        self._event("Normal", "Sleeping", f"step {step.name} sleeps until {format_time(until)}")

    def _open_gate(self, step: Step) -> None:
        gate = step.approval
        if gate is None:
            self._launch(step)
            return
        s = self._s(step.name)
        deadline = self.now + parse_duration(gate.timeout) if gate.timeout else None
        message = gate.message
        if message:
            try:
                field = f"{self._field(step.name)}.approval.message"
                message = str(interpolate(message, self._activation(step.name), field=field))
            except ExpressionError as exc:
                self._fail_step(step, StepError(error_class="ExpressionError", message=str(exc)))
                return
        s.approval = ApprovalStatus(
            requested_at=self.stamp,
            deadline=format_time(deadline) if deadline else None,
            message=message,
        )
        self._step_phase(step.name, StepPhase.WAITING_FOR_APPROVAL, "ApprovalRequested", message)
        self._event(
            "Normal",
            "ApprovalRequested",
            f"step {step.name} waits for approval: kubectl annotate workflow {self.meta.name} "
            f"cerebelum.io/approve={step.name}",
        )

    def _after_approval(self, step: Step, data: Any) -> None:
        if step.action_kind() is None:
            self._succeed(step, data if data is not None else {})
        else:
            self._launch(step)

    def _approval_timed_out(self, step: Step) -> None:
        gate = step.approval
        assert gate is not None
        s = self._s(step.name)
        assert s.approval is not None
        s.approval.decision = "TimedOut"
        s.approval.decided_at = self.stamp
        self._event(
            "Warning", "ApprovalTimedOut", f"step {step.name}: no decision within {gate.timeout}"
        )
        if gate.on_timeout == OnOutcome.APPROVE:
            self._after_approval(step, None)
            return
        error = StepError(
            error_class="ApprovalTimeout", message=f"no decision within {gate.timeout}"
        )
        if gate.on_timeout == OnOutcome.GOTO and gate.timeout_goto:
            self._fail_step(step, error, route=False)
            self._goto(step.name, gate.timeout_goto, "ApprovalTimeout")
        else:
            self._fail_step(step, error)

    # -- attempts ----------------------------------------------------------------------

    def _launch(self, step: Step) -> None:
        """Start the next attempt of the action, or finish a step that has none."""
        if step.action_kind() is None:
            self._succeed(step, {})
            return
        s = self._s(step.name)
        s.attempts += 1
        s.last_attempt_at = self.stamp
        s.next_attempt_at = None
        if step.poll is not None and s.poll_started_at is None:
            s.poll_started_at = self.stamp
        self._step_phase(step.name, StepPhase.RUNNING, "Running", f"attempt {s.attempts}")
        self._issue_call(step, resumed=False)

    def _issue_call(self, step: Step, *, resumed: bool) -> None:
        kind = step.action_kind()
        assert kind is not None
        s = self._s(step.name)
        self.issued.add(step.name)
        raw = getattr(step, kind).to_wire()
        try:
            params = interpolate(
                raw, self._activation(step.name), field=f"{self._field(step.name)}.{kind}"
            )
        except ExpressionError as exc:
            self._fail_step(step, StepError(error_class="ExpressionError", message=str(exc)))
            return
        problem = params_problem(kind, raw, params)
        if problem:
            message = f"{self._field(step.name)}.{problem}"
            self._fail_step(step, StepError(error_class="InvalidAction", message=message))
            return
        self.out.actions.append(
            ActionCall(
                step=step.name,
                kind=kind,
                params=params,
                visit=s.visits,
                attempt=s.attempts,
                idempotency_key=s.idempotency_key or f"{self.meta.uid}.{step.name}.{s.visits}",
                timeout=parse_duration(step.timeout) if step.timeout else None,
                local=kind in LOCAL_ACTIONS,
                resumed=resumed,
                poll=step.poll is not None,
            )
        )

    def _attempt_failed(
        self, step: Step, error: StepError, retry_after: datetime.timedelta | None
    ) -> None:
        s = self._s(step.name)
        s.error = error
        retry = step.retry
        if retry is not None and s.attempts - 1 < retry.limit and _retries(retry.retry_on, error):
            wait = retry_delay(retry, s.attempts, seed=f"{s.idempotency_key}")
            if retry_after is not None:
                wait = max(wait, retry_after)
            s.next_attempt_at = format_time(self.now + wait)
            self._step_phase(
                step.name,
                StepPhase.RETRYING,
                "Retrying",
                f"attempt {s.attempts} failed ({error.error_class}: {error.message}); retry "
                f"{s.attempts} of {retry.limit} at {s.next_attempt_at}",
            )
            self._event(
                "Warning", "Retrying", f"step {step.name}: {error.error_class}: {error.message}"
            )
            return
        if step.poll is not None and error.retryable:
            self._poll_again(step)  # a transient failure is one more unmet attempt, not the end
            return
        self._fail_step(step, error)

    def _poll_out_of_time(self, step: Step) -> bool:
        poll = step.poll
        s = self._s(step.name)
        if poll is None or not poll.timeout or s.poll_started_at is None:
            return False
        return self.now >= parse_time(s.poll_started_at) + parse_duration(poll.timeout)

    def _poll_again(self, step: Step) -> None:
        poll = step.poll
        assert poll is not None
        s = self._s(step.name)
        if (poll.max_attempts and s.attempts >= poll.max_attempts) or self._poll_out_of_time(step):
            self._poll_exhausted(step)
            return
        at = self.now + poll_interval(poll, s.attempts)
        if poll.timeout and s.poll_started_at:
            at = min(at, parse_time(s.poll_started_at) + parse_duration(poll.timeout))
        s.next_attempt_at = format_time(at)
        if s.phase != StepPhase.POLLING and s.attempts == 1:
            self._event("Normal", "Polling", f"step {step.name} polls until {poll.until}")
        self._step_phase(
            step.name, StepPhase.POLLING, "Polling", f"attempt {s.attempts}: condition not met yet"
        )

    def _poll_exhausted(self, step: Step) -> None:
        poll = step.poll
        assert poll is not None
        s = self._s(step.name)
        limits = []
        if poll.max_attempts:
            limits.append(f"maxAttempts={poll.max_attempts}")
        if poll.timeout:
            limits.append(f"timeout={poll.timeout}")
        error = StepError(
            error_class="PollTimeout",
            message=f"condition {poll.until!r} not met after {s.attempts} attempts ({', '.join(limits)})",
        )
        if poll.on_timeout == OnOutcome.GOTO and poll.timeout_goto:
            self._fail_step(step, error, route=False)
            self._goto(step.name, poll.timeout_goto, "PollTimeout")
        else:
            self._fail_step(step, error)

    # -- step endings and routing --------------------------------------------------------

    def _done(self, step: Step, output: Any, pause: Pause | None) -> None:
        """The action is done: the step succeeds, or first waits as its code asked."""
        if pause is None:
            self._succeed(step, output)
            return
        s = self._s(step.name)
        s.next_attempt_at = None
        if pause.approval:
            deadline = self.now + pause.approval_timeout if pause.approval_timeout else None
            s.paused = PauseKind.APPROVAL
            s.approval = ApprovalStatus(
                requested_at=self.stamp,
                deadline=format_time(deadline) if deadline else None,
                message=f"the step asked for {pause.approval_type} approval",
            )
            self._step_phase(
                step.name, StepPhase.WAITING_FOR_APPROVAL, "ApprovalRequested", s.approval.message
            )
            self._event(
                "Normal",
                "ApprovalRequested",
                f"step {step.name} waits for approval: kubectl annotate workflow {self.meta.name} "
                f"cerebelum.io/approve={step.name}",
            )
            return
        until = self.now + (pause.sleep or datetime.timedelta(0))
        if until <= self.now:
            self._succeed(step, output)
            return
        s.paused = PauseKind.SLEEP
        s.sleep_until = format_time(until)
        message = f"the step asked to sleep until {s.sleep_until}"
        self._step_phase(step.name, StepPhase.SLEEPING, "Sleeping", message)
        self._event("Normal", "Sleeping", f"step {step.name} sleeps until {s.sleep_until}")

    def _unpause(self, step: Step) -> None:
        s = self._s(step.name)
        s.paused = None
        s.sleep_until = None
        self._succeed(step, s.output)

    def _pause_timed_out(self, step: Step) -> None:
        s = self._s(step.name)
        assert s.approval is not None
        s.approval.decision = "TimedOut"
        s.approval.decided_at = self.stamp
        s.paused = None
        message = f"no decision by {s.approval.deadline}"
        self._event("Warning", "ApprovalTimedOut", f"step {step.name}: {message}")
        self._fail_step(step, StepError(error_class="ApprovalTimeout", message=message))

    def _succeed(self, step: Step, output: Any) -> None:
        s = self._s(step.name)
        s.output = output
        s.error = None
        s.next_attempt_at = None
        s.finished_at = self.stamp
        self._step_phase(step.name, StepPhase.SUCCEEDED, "Succeeded")
        self._event("Normal", "StepSucceeded", f"step {step.name} succeeded")
        self._route(step, failed=False)

    def _fail_step(self, step: Step, error: StepError, *, route: bool = True) -> None:
        s = self._s(step.name)
        s.error = error
        s.next_attempt_at = None
        s.finished_at = self.stamp
        self._step_phase(step.name, StepPhase.FAILED, error.error_class, error.message)
        self._event(
            "Warning",
            "StepFailed",
            f"step {step.name} failed: {error.error_class}: {error.message}",
        )
        if route:
            self._route(step, failed=True)

    def _route(self, step: Step, *, failed: bool) -> None:
        s = self._s(step.name)
        error = s.error.to_wire() if (failed and s.error) else None
        activation = self._activation(
            step.name, output=s.output, error=error, phase=str(s.phase), checks=s.checks or {}
        )
        for index, rule in enumerate(step.next or []):
            if rule.when:
                try:
                    matched = evaluate_bool(
                        rule.when, activation, field=f"{self._field(step.name)}.next[{index}].when"
                    )
                except ExpressionError as exc:
                    if not failed:
                        self._fail_step(
                            step, StepError(error_class="ExpressionError", message=str(exc))
                        )
                        return
                    self._end(WorkflowPhase.FAILED, "ExpressionError", str(exc))
                if not matched:
                    continue
            if rule.goto:
                self._goto(step.name, rule.goto, "Goto")
            elif rule.fail is not None:
                self._end(WorkflowPhase.FAILED, "NextRuleFailed", f"step {step.name}: {rule.fail}")
            elif rule.end:
                self._end_here(step.name, index)
            elif failed:
                s.message = f"failure tolerated by next[{index}] (continue)"
                self._step_phase(step.name, StepPhase.SKIPPED, "FailureTolerated", s.message)
            return
        if failed:
            assert s.error is not None
            self._end(
                WorkflowPhase.FAILED,
                "StepFailed",
                f"step {step.name} failed: {s.error.error_class}: {s.error.message}",
            )

    def _goto(self, source: str, target: str, reason: str) -> None:
        """Jump to ``target``: it and everything after it start over; steps it would have
        waited for, and that have not run, are skipped."""
        assert self.graph is not None
        reset = {target} | self.graph.descendants(target)
        for name in reset:
            s = self._s(name)
            if s.phase == StepPhase.RUNNING:
                self.out.cancel.append(name)
            if s.phase != StepPhase.PENDING:
                s.next_attempt_at = None
                s.sleep_until = None
                self._step_phase(name, StepPhase.PENDING, "Reset", f"reset by goto from {source}")
        for name in self.graph.ancestors(target):
            if self._s(name).phase == StepPhase.PENDING:
                self._skip(name, f"skipped by goto from {source} to {target}")
        self._event("Normal", reason, f"step {source} goes to {target}")
        self._start_visit(self.spec.step(target))

    # -- the workflow as a whole ---------------------------------------------------------

    def _end(self, phase: WorkflowPhase, reason: str, message: str) -> None:
        """Finish the workflow; every unfinished step is cancelled. Ends the reconciliation."""
        st = self.status
        for name, s in st.steps.items():
            if s.phase == StepPhase.RUNNING:
                self.out.cancel.append(name)
            if not s.phase.finished:
                s.finished_at = self.stamp if s.phase != StepPhase.PENDING else None
                s.next_attempt_at = None
                self._step_phase(name, StepPhase.CANCELLED, reason, f"workflow {phase}: {message}")
        st.finished_at = self.stamp
        st.next_wake_at = None
        self._workflow_transition(phase, reason, message)
        self._event(
            "Normal" if phase == WorkflowPhase.SUCCEEDED else "Warning", f"Workflow{phase}", message
        )
        raise _WorkflowEnded

    def _end_here(self, source: str, index: int) -> None:
        """A ``next[].end`` rule: the workflow is done; what has not run never will."""
        why = f"workflow ended by {source}.next[{index}] (end)"
        for name, s in self.status.steps.items():
            if s.phase.finished:
                continue
            running = s.phase == StepPhase.RUNNING
            if running:
                self.out.cancel.append(name)
            s.next_attempt_at = None
            s.sleep_until = None
            s.finished_at = self.stamp
            phase = StepPhase.CANCELLED if running else StepPhase.SKIPPED
            self._step_phase(name, phase, "Ended", why)
        self._end(WorkflowPhase.SUCCEEDED, "Ended", f"step {source}: {why}")

    def _workflow_transition(self, phase: WorkflowPhase, reason: str, message: str) -> None:
        if self.status.phase != phase or reason == "Started":
            self._history(Transition(time=self.stamp, phase=phase, reason=reason, message=message))
        self.status.phase = phase
        self.status.message = message

    def _derive_phase(self) -> None:
        st = self.status
        phases = {s.phase for s in st.steps.values()}
        if phases and all(p.finished for p in phases):
            # An unrouted failure has ended the workflow already, so what is left
            # finished is a success (failures routed by goto were handled).
            try:
                self._end(WorkflowPhase.SUCCEEDED, "Succeeded", "all steps finished")
            except _WorkflowEnded:
                return
        if self.spec.suspend:
            phase, message = WorkflowPhase.SUSPENDED, "suspended: no new step starts"
        elif StepPhase.RUNNING in phases or StepPhase.RETRYING in phases:
            phase, message = WorkflowPhase.RUNNING, "running"
        elif StepPhase.POLLING in phases:
            phase, message = WorkflowPhase.POLLING, "polling"
        elif StepPhase.WAITING_FOR_APPROVAL in phases:
            waiting = [n for n, s in st.steps.items() if s.phase == StepPhase.WAITING_FOR_APPROVAL]
            phase, message = (
                WorkflowPhase.WAITING_FOR_APPROVAL,
                f"waiting for approval of {', '.join(waiting)}",
            )
        elif StepPhase.SLEEPING in phases:
            phase, message = WorkflowPhase.SLEEPING, "sleeping"
        else:
            phase, message = WorkflowPhase.RUNNING, "running"
        if st.phase != phase:
            self._workflow_transition(phase, phase.value, message)
        else:
            st.message = message

    def _set_condition(self) -> None:
        st = self.status
        if st.phase == WorkflowPhase.SUCCEEDED:
            value = "True"
        elif st.phase in (WorkflowPhase.FAILED, WorkflowPhase.CANCELLED):
            value = "False"
        else:
            value = "Unknown"
        reason = st.phase.value
        old = next((c for c in st.conditions or [] if c.type == "Succeeded"), None)
        changed = old is None or old.status != value
        condition = Condition(
            type="Succeeded",
            status=value,
            reason=reason,
            message=st.message or "",
            last_transition_time=self.stamp if changed or old is None else old.last_transition_time,
            observed_generation=self.meta.generation,
        )
        others = [c for c in st.conditions or [] if c.type != "Succeeded"]
        st.conditions = [condition, *others]


def _retries(retry_on: list[str] | None, error: StepError) -> bool:
    if not retry_on:
        return error.retryable
    return "*" in retry_on or error.error_class in retry_on


def _step_deadline(s: StepStatus) -> datetime.datetime | None:
    """The time at which a waiting step must be looked at again."""
    if s.phase == StepPhase.SLEEPING:
        raw = s.sleep_until
    elif s.phase == StepPhase.WAITING_FOR_APPROVAL:
        raw = s.approval.deadline if s.approval else None
    elif s.phase in (StepPhase.POLLING, StepPhase.RETRYING):
        raw = s.next_attempt_at
    else:
        raw = None
    return parse_time(raw) if raw else None
