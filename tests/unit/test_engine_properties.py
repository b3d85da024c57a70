"""Properties of the engine over random specs and random orders of events."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cerebelum.api.durations import parse_time
from cerebelum.api.status import StepError, StepPhase, WorkflowPhase, WorkflowStatus
from cerebelum.engine.graph import Graph
from tests.unit.engine_driver import Driver


@st.composite
def specs(draw: st.DrawFn, allow_goto: bool = True) -> dict[str, Any]:
    count = draw(st.integers(min_value=1, max_value=6))
    names = [f"s{i}" for i in range(count)]
    steps = []
    for i, name in enumerate(names):
        step: dict[str, Any] = {"name": name}
        kind = draw(st.sampled_from(["noop", "fail", "sleep", "approval", "poll"]))
        if kind == "noop":
            step["noop"] = {"with": {"i": i}}
        elif kind == "fail":
            step["fail"] = {
                "times": draw(st.none() | st.integers(0, 3)),
                "retryable": draw(st.booleans()),
            }
        elif kind == "sleep":
            step["sleep"] = {"duration": f"{draw(st.integers(1, 30))}s"}
        elif kind == "approval":
            approval: dict[str, Any] = {}
            if draw(st.booleans()):
                approval["timeout"] = f"{draw(st.integers(1, 60))}s"
                approval["onTimeout"] = draw(st.sampled_from(["Fail", "Approve"]))
            step["approval"] = approval
        else:
            step["noop"] = {"with": {"n": "${{ step.attempt }}"}}
            step["poll"] = {
                "until": f"output.n >= {draw(st.integers(1, 4))}",
                "interval": f"{draw(st.integers(1, 5))}s",
                "maxAttempts": draw(st.integers(1, 4)),
            }
        if ("noop" in step or "fail" in step) and draw(st.booleans()):
            step["retry"] = {
                "limit": draw(st.integers(0, 3)),
                "backoff": {"delay": "1s", "jitter": 0.3},
            }
        if i > 0 and draw(st.booleans()):
            step["dependsOn"] = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=i))
        if draw(st.integers(0, 4)) == 0:
            step["when"] = draw(st.sampled_from(["true", "false", "inputs.flag"]))
        if allow_goto and draw(st.integers(0, 3)) == 0:
            step["next"] = [{"when": "step.visit < 3", "goto": draw(st.sampled_from(names))}]
        steps.append(step)
    spec: dict[str, Any] = {
        "inputs": {"flag": draw(st.booleans())},
        "steps": steps,
        "maxStepVisits": 200,
    }
    if draw(st.booleans()):
        spec["activeDeadline"] = f"{draw(st.integers(5, 600))}s"
    return spec


events = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(min_value=0, max_value=40)),
        st.tuples(st.just("approve"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("complete"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("restart"), st.just(0)),
        st.tuples(st.just("cancel"), st.just(0)),
    ),
    max_size=40,
)

#: CEREBELUM_PROPERTY_EXAMPLES=3000 for a long run (the suite runs a tenth of that).
_EXAMPLES = int(os.environ.get("CEREBELUM_PROPERTY_EXAMPLES", "300"))
_settings = settings(
    max_examples=_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def play(d: Driver, op: tuple[Any, ...]) -> None:
    kind = op[0]
    names = [s.name for s in d.spec.steps]
    if kind == "advance":
        d.at(
            (d.now - d.now.replace(hour=12, minute=0, second=0, microsecond=0)).total_seconds()
            + op[1]
        )
    elif kind == "approve":
        d.approve(names[op[1] % len(names)], approve=op[2], decided_by="tester")
    elif kind == "complete" and d.in_flight:
        step = sorted(d.in_flight)[op[1] % len(d.in_flight)]
        if op[2]:
            d.complete(step, output={"n": 99, "i": 0})
        else:
            d.complete(
                step,
                ok=False,
                error=StepError(error_class="Transient", message="x", retryable=True),
            )
    elif kind == "restart":
        d.in_flight.clear()
        d.tick()
    elif kind == "cancel":
        d.spec.cancel = True
        d.tick()


@given(spec=specs(), ops=events, defer=st.booleans())
@_settings
def test_random_events_never_crash_and_a_finished_workflow_never_moves(
    spec: dict[str, Any], ops: list[tuple[Any, ...]], defer: bool
) -> None:
    d = Driver(spec, defer=defer)
    d.tick()
    frozen = d.status if d.finished else None
    for op in ops:
        play(d, op)
        assert d.status is not None
        if frozen is not None:
            assert d.status == frozen, "a finished workflow moved"
        elif d.finished:
            frozen = d.status
            assert d.status.finished_at is not None
            assert all(
                s.phase.finished or s.phase == StepPhase.PENDING for s in d.status.steps.values()
            )
    assert d.status is not None
    done, total = d.status.progress.split("/")  # type: ignore[union-attr]
    assert 0 <= int(done) <= int(total) == len(spec["steps"])


@given(spec=specs(allow_goto=False), ops=events, defer=st.booleans())
@_settings
def test_no_step_starts_before_its_dependencies(
    spec: dict[str, Any], ops: list[tuple[Any, ...]], defer: bool
) -> None:
    d = Driver(spec, defer=defer)
    graph = Graph(d.spec.steps)

    def check() -> None:
        assert d.status is not None
        for name, s in d.status.steps.items():
            if s.visits > 0:
                for dep in graph.deps[name]:
                    assert d.status.steps[dep].phase.done, f"{name} started before {dep} was done"
        for call in d.calls:
            assert all(d.status.steps[dep].phase.done for dep in graph.deps[call.step])

    d.tick()
    check()
    for op in ops:
        if op[0] == "cancel":
            continue
        play(d, op)
        check()


@given(spec=specs(), defer=st.just(False))
@_settings
def test_without_people_every_workflow_settles(spec: dict[str, Any], defer: bool) -> None:
    """Run to the end by jumping between deadlines: it finishes or waits on an approval."""
    d = Driver(spec, defer=defer)
    out = d.run_to_end()
    assert d.status is not None
    if not d.finished:
        assert out.wake_at is None
        assert any(s.phase == StepPhase.WAITING_FOR_APPROVAL for s in d.status.steps.values())


# -- status edited by hand: anyone with workflows/status permission can write anything -----

_GARBAGE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.text(max_size=12),
    st.sampled_from(
        [
            "not-a-time",
            "2026-13-45T99:99:99Z",
            "2026-01-01T12:00:00",  # no timezone
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "Running",
            "Succeeded",
            "Sleeping",
            "WaitingForApproval",
            "Polling",
            "Retrying",
            "Bogus",
            "Sleep",
            "Approval",
        ]
    ),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["a", "phase"]), st.integers(), max_size=2),
)
_STEP_FIELDS = [
    "phase",
    "visits",
    "attempts",
    "startedAt",
    "finishedAt",
    "lastAttemptAt",
    "nextAttemptAt",
    "pollStartedAt",
    "sleepUntil",
    "idempotencyKey",
    "approval",
    "output",
    "error",
    "checks",
    "paused",
]
_WORKFLOW_FIELDS = [
    "phase",
    "startedAt",
    "finishedAt",
    "nextWakeAt",
    "totalVisits",
    "conditions",
    "steps",
    "history",
]

edits = st.lists(
    st.one_of(
        st.tuples(st.just("step"), st.integers(0, 5), st.sampled_from(_STEP_FIELDS), _GARBAGE),
        st.tuples(st.just("drop"), st.integers(0, 5), st.sampled_from(_STEP_FIELDS), st.none()),
        st.tuples(st.just("workflow"), st.just(0), st.sampled_from(_WORKFLOW_FIELDS), _GARBAGE),
        st.tuples(
            st.just("approval"),
            st.integers(0, 5),
            st.sampled_from(["requestedAt", "deadline", "decidedAt", "decision"]),
            _GARBAGE,
        ),
    ),
    min_size=1,
    max_size=4,
)


def _edit(wire: dict[str, Any], edit: tuple[Any, ...]) -> None:
    kind, index, field, value = edit
    steps = wire.get("steps")
    if kind == "workflow":
        wire[field] = value
        return
    if not isinstance(steps, dict) or not steps:
        return
    entry = steps[sorted(steps)[index % len(steps)]]
    if not isinstance(entry, dict):
        return
    if kind == "step":
        entry[field] = value
    elif kind == "drop":
        entry.pop(field, None)
    elif isinstance(entry.get("approval"), dict):
        entry["approval"][field] = value
    else:
        entry["approval"] = {field: value}


@given(spec=specs(), ops=events, changes=st.lists(edits, min_size=1, max_size=3))
@settings(
    max_examples=_EXAMPLES * 4 // 3, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
def test_random_status_edits_never_crash_and_every_outcome_is_a_valid_status(
    spec: dict[str, Any], ops: list[tuple[Any, ...]], changes: list[list[tuple[Any, ...]]]
) -> None:
    d = Driver(spec)
    d.tick()
    for round_, change in enumerate(changes):
        for op in ops[round_ * 5 : round_ * 5 + 5]:
            play(d, op)
        assert d.status is not None

        def edit(wire: dict[str, Any], change: list[tuple[Any, ...]] = change) -> None:
            for e in change:
                _edit(wire, e)

        repairs = d.edit_status(edit)
        assert all(isinstance(r, str) and r for r in repairs)
        out = d.tick()
        status = out.status
        # A valid status: it round-trips through the model, as the API server would store it.
        again = WorkflowStatus.model_validate(status.to_wire())
        assert again == status
        names = {s["name"] for s in spec["steps"]}
        if status.phase.finished:  # a finished workflow is not run again to rebuild entries
            assert set(status.steps) <= names
        else:
            assert set(status.steps) == names
        if status.phase == WorkflowPhase.SUCCEEDED:
            assert all(s.phase.finished for s in status.steps.values()), "success by hand"
        if status.phase.finished:
            assert out.wake_at is None and status.finished_at is not None
        for moment in (status.next_wake_at, status.started_at, status.finished_at):
            if moment is not None:
                parse_time(moment)
    # It can still run to a settled state from whatever the edits left.
    d.run_to_end()
