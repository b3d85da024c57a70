"""The workflow state machine: (spec, status, inputs, now) -> outcome.

Pure: no I/O, no clock, no randomness, no Kubernetes and no action names. The caller (the
operator's shell, the local runner, the tests; all through ``engine.driver``) passes what
it knows and carries out the effects in the outcome. Calling it twice with the same input
gives the same answer, which is what makes restarts safe.

One reconciliation: start the workflow if new, end it if cancelled or past its deadline,
hand each input to the module of its type, restart lost attempts, fire due deadlines, start
every step whose dependencies are done; then derive the workflow's phase and the next time
to look again. What each step kind does lives in its own module (``engine.kinds``).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Sequence

from cerebelum.api.durations import format_time, parse_duration, to_millis
from cerebelum.api.spec import DEFAULT_FINALLY_DEADLINE, WorkflowSpec
from cerebelum.api.status import (
    STEP_PHASES,
    Condition,
    StepPhase,
    StepStatus,
    WorkflowPhase,
    WorkflowStatus,
    failed_status,
)
from cerebelum.api.tokens import NO_CALLBACKS, CallbackIssuer
from cerebelum.engine import notify
from cerebelum.engine.graph import Graph, InvalidSpec
from cerebelum.engine.kinds import KINDS
from cerebelum.engine.launch import resume_lost_attempts
from cerebelum.engine.run import MainEnded, Run, WorkflowEnded
from cerebelum.engine.types import (
    ActionCatalog,
    ActionResult,
    EventRecord,
    Input,
    NoActionChecks,
    Outcome,
    WorkflowMeta,
)
from cerebelum.engine.visit import skip, start_visit


def reconcile(
    spec: WorkflowSpec,
    status: WorkflowStatus | None,
    meta: WorkflowMeta,
    now: datetime.datetime,
    *,
    inputs: Sequence[Input] = (),
    in_flight: frozenset[str] = frozenset(),
    actions: ActionCatalog | None = None,
    callbacks: CallbackIssuer = NO_CALLBACKS,
) -> Outcome:
    """Advance the workflow as far as it can go at ``now``.

    ``in_flight`` names steps whose action the caller is running; a Running step not in it
    has lost its runner (an operator restart) and its attempt is issued again. ``actions``
    says which action kinds are local and checks their parameters; ``callbacks`` issues
    the tokens of callback waits.
    """
    catalog = actions or NoActionChecks()
    run = Run(
        spec,
        status,
        meta,
        now,
        kinds=KINDS,
        actions=catalog,
        in_flight=in_flight,
        callbacks=callbacks,
    )
    try:
        with contextlib.suppress(WorkflowEnded):
            _advance(run, inputs)
        return _finish(run)
    except Exception as exc:
        # Deterministic: the same input would fail the same way on every retry, so looping
        # on it would only hide it. The workflow fails and says why.
        return _engine_fault(spec, status, meta, now, catalog, exc)


def _engine_fault(
    spec: WorkflowSpec,
    status: WorkflowStatus | None,
    meta: WorkflowMeta,
    now: datetime.datetime,
    catalog: ActionCatalog,
    exc: Exception,
) -> Outcome:
    message = f"the engine cannot go on with this workflow: {type(exc).__name__}: {exc}"[:1024]
    run = Run(spec, status, meta, now, kinds=KINDS, actions=catalog)
    try:
        with contextlib.suppress(WorkflowEnded):
            try:
                run.end(WorkflowPhase.FAILED, "EngineError", message)
            except MainEnded:
                # Cleanup matters most when something went wrong: the finally steps get
                # their chance (a fault in them ends the workflow outright).
                run.graph = _graphs(spec)[1]
                for step in spec.finally_ or []:
                    run.status.steps.setdefault(step.name, StepStatus())
                _run_part(run, [])
        return _finish(run)
    except Exception:
        stamp = to_millis(now)
        failed = failed_status(
            "EngineError", message, stamp, started_at=stamp, generation=meta.generation
        )
        return Outcome(status=failed, events=[EventRecord("Warning", "WorkflowFailed", message)])


def _advance(run: Run, inputs: Sequence[Input]) -> None:
    st = run.status
    for sent in [i for i in inputs if notify.is_result(i)]:  # finished or not
        notify.on_result(run, sent)
    inputs = [i for i in inputs if not notify.is_result(i)]
    if st.phase.finished:
        # Nothing can use what arrives from outside any more: its source goes.
        run.out.consumed.extend(i for i in inputs if not isinstance(i, ActionResult))
        return
    st.observed_generation = run.meta.generation
    if st.started_at is None:
        st.started_at = run.now
        run.workflow_phase(WorkflowPhase.RUNNING, "Started", "workflow started")
    try:
        main, final = _graphs(run.spec)
    except InvalidSpec as exc:
        run.end(WorkflowPhase.FAILED, "InvalidSpec", str(exc), run_finally=False)
    names = [s.name for s in run.spec.all_steps()]  # steps added appear Pending; removed go
    st.steps = {n: st.steps.get(n) or StepStatus() for n in names}
    if st.main is None:
        run.graph = main
        try:
            _run_part(run, inputs)
            return
        except MainEnded:
            inputs = []  # the finally steps have not run: nothing can have come for them
    run.graph = final
    _run_part(run, inputs)


def _graphs(spec: WorkflowSpec) -> tuple[Graph, Graph]:
    """The graphs of the main and the finally steps; checked before anything runs, so a
    finally part that cannot run fails the workflow at its start, not at its end."""
    if not spec.steps:
        raise InvalidSpec(
            "spec.steps is empty: a workflow made from spec.templateRef gets its steps from "
            "the operator when it starts"
        )
    main = Graph(spec.steps)
    final = Graph(spec.finally_ or [], "finally")
    both = sorted(set(main.order) & set(final.order))
    if both:
        raise InvalidSpec(f"finally steps {both} have the names of spec.steps")
    return main, final


def _run_part(run: Run, inputs: Sequence[Input]) -> None:
    """Advance the part that runs now (the main steps, or the finally steps), and end it
    once all its steps have finished."""
    main = run.status.main
    if main is None:
        if run.spec.cancel or run.meta.cancel_requested:
            run.end(WorkflowPhase.CANCELLED, "Cancelled", "cancelled by request")
        deadline = _workflow_deadline(run)
        if deadline is not None and run.now >= deadline:
            run.end(
                WorkflowPhase.FAILED,
                "DeadlineExceeded",
                f"activeDeadline {run.spec.active_deadline} passed at {format_time(deadline)}",
            )
    elif run.now >= main.finally_deadline:
        bound = run.spec.finally_deadline or DEFAULT_FINALLY_DEADLINE
        run.end(
            WorkflowPhase.FAILED,
            "FinallyDeadlineExceeded",
            f"finallyDeadline {bound} passed at {format_time(main.finally_deadline)}",
        )
    for item in inputs:
        run.kinds.inputs[type(item)](run, item)
    if not run.spec.suspend:
        resume_lost_attempts(run)
        _fire_deadlines(run)
        _start_ready_steps(run)
    if all(run.s(n).phase.finished for n in run.part()):
        # An unrouted failure has ended the part already, so what is left finished is a
        # success (failures routed by goto were handled).
        run.end(WorkflowPhase.SUCCEEDED, "Succeeded", "all steps finished")


def _workflow_deadline(run: Run) -> datetime.datetime | None:
    if not (run.spec.active_deadline and run.status.started_at):
        return None
    return to_millis(run.status.started_at + parse_duration(run.spec.active_deadline))


def _fire_deadlines(run: Run) -> None:
    for name in list(run.status.steps):
        s = run.s(name)
        wait = run.kinds.waits.get(s.phase)
        if wait is None:
            continue
        step = run.spec_step(name)
        due = wait.deadline(step, s)
        if due is not None and run.now >= due:
            wait.on_deadline(run, step)


def _next_deadline(run: Run) -> datetime.datetime | None:
    times = []
    for name, s in run.status.steps.items():
        wait = run.kinds.waits.get(s.phase)
        if wait is not None and (due := wait.deadline(run.spec_step(name), s)) is not None:
            times.append(due)
    main = run.status.main
    deadline = _workflow_deadline(run) if main is None else main.finally_deadline
    if deadline is not None:
        times.append(deadline)
    return min(times) if times else None


def _start_ready_steps(run: Run) -> None:
    assert run.graph is not None
    progressed = True
    while progressed:
        progressed = False
        for name in run.graph.order:
            if run.s(name).phase != StepPhase.PENDING:
                continue
            deps = run.graph.deps[name]
            blocker = next(
                (d for d in deps if run.s(d).phase.finished and not run.s(d).phase.done), None
            )
            if blocker is not None:
                skip(run, name, f"dependency {blocker} did not succeed")
                progressed = True
            elif all(run.s(d).phase.done for d in deps):
                start_visit(run, run.spec_step(name))
                progressed = True


def _finish(run: Run) -> Outcome:
    st = run.status
    if not st.phase.finished:
        _derive_phase(run)
    active = [
        n for n, s in st.steps.items() if not s.phase.finished and s.phase != StepPhase.PENDING
    ]
    st.current_steps = active or None
    st.current_step = active[0] if active else None
    done = sum(1 for s in st.steps.values() if s.phase.done)
    st.progress = f"{done}/{len(st.steps)}"
    notify.open_notices(run)
    notify.issue(run)
    expiry = _expiry(run)
    if expiry is not None and run.now >= expiry:
        run.out.delete = True
    times = [
        notify.next_deadline(run),
        None if st.phase.finished else _next_deadline(run),
        expiry,
    ]
    run.out.wake_at = min((t for t in times if t is not None), default=None)
    st.next_wake_at = run.out.wake_at
    _set_condition(run)
    return run.out


def _expiry(run: Run) -> datetime.datetime | None:
    """When a finished workflow is to be deleted (ttlAfterFinished), or None."""
    st = run.status
    if not st.phase.finished or st.finished_at is None:
        return None
    ttl = run.spec.ttl_after_finished
    keep = parse_duration(ttl) if ttl else run.meta.default_ttl
    return None if keep is None else to_millis(st.finished_at + keep)


def _derive_phase(run: Run) -> None:
    """The phase of a workflow that has not finished, from its steps' phases, as the phase
    table ranks them."""
    st = run.status
    phases = {s.phase for s in st.steps.values()}
    phase, steps = WorkflowPhase.RUNNING, []
    if run.spec.suspend:
        phase = WorkflowPhase.SUSPENDED
    else:
        ranked = [p for p in phases if STEP_PHASES[p].workflow is not None]
        if ranked:
            top = min(ranked, key=lambda p: STEP_PHASES[p].rank)
            phase = STEP_PHASES[top].workflow or WorkflowPhase.RUNNING
            steps = [n for n, s in st.steps.items() if s.phase == top]
    message = phase.info.message.format(steps=", ".join(steps))
    if st.main is not None and phase == WorkflowPhase.RUNNING:
        message = f"the finally steps run (the main steps ended {st.main.phase}: {st.main.reason})"
    if st.phase != phase:
        run.workflow_phase(phase, phase.value, message)
    else:
        st.message = message


def _set_condition(run: Run) -> None:
    st = run.status
    succeeded = st.phase.info.succeeded
    value = "Unknown" if succeeded is None else str(succeeded)
    old = next((c for c in st.conditions or [] if c.type == "Succeeded"), None)
    changed = old is None or old.status != value
    condition = Condition(
        type="Succeeded",
        status=value,
        reason=st.phase.value,
        message=st.message or "",
        last_transition_time=run.now if changed or old is None else old.last_transition_time,
        observed_generation=run.meta.generation,
    )
    others = [c for c in st.conditions or [] if c.type != "Succeeded"]
    st.conditions = [condition, *others]
