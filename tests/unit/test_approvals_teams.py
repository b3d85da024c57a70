"""Approvals as teams use them: N of M, no self-approval, a schema for the data, a choice
of branch, defaults on timeout. The engine's rules, then the webhook's, which refuse the
same at kubectl annotate."""

from __future__ import annotations

import datetime
import json
from typing import Any

from cerebelum.actions import CATALOG
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import StepPhase, WorkflowStatus
from cerebelum.engine import ApprovalDecision, Input, Outcome, WorkflowMeta, reconcile
from cerebelum.kube.approvers import Decision, created_by_refusal, gate_refusal

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def gate(**approval: Any) -> list[dict[str, Any]]:
    return [
        {"name": "go", "approval": approval},
        {
            "name": "canary",
            "noop": {},
            "dependsOn": ["go"],
            "when": "steps.go.output.choice == 'canary'",
        },
    ]


def run(
    steps: list[dict[str, Any]],
    status: WorkflowStatus | None,
    now: float,
    *inputs: Input,
    created_by: str | None = "carol",
) -> Outcome:
    meta = WorkflowMeta(name="wf", namespace="ns", uid="u", created_by=created_by)
    spec = WorkflowSpec.model_validate({"steps": steps})
    return reconcile(spec, status, meta, at(now), inputs=inputs, actions=CATALOG)


def vote(by: str, approve: bool = True, **fields: Any) -> ApprovalDecision:
    return ApprovalDecision("go", approve, decided_by=by, **fields)


def test_two_of_three_the_first_vote_leaves_it_open_and_a_person_counts_once() -> None:
    steps = gate(required=2)
    out = run(steps, None, 0)
    first = run(steps, out.status, 1, vote("alice"))
    s = first.status.steps["go"]
    assert s.phase == StepPhase.WAITING_FOR_APPROVAL and s.message == "1 of 2 approvals"
    again = run(steps, first.status, 2, vote("alice"))
    assert again.status.steps["go"].phase == StepPhase.WAITING_FOR_APPROVAL
    assert "approved already" in again.events[0].message
    second = run(steps, again.status, 3, vote("bob"))
    s = second.status.steps["go"]
    assert s.phase == StepPhase.SUCCEEDED and s.approval is not None
    assert [(v.by, v.decision) for v in s.approval.votes or []] == [
        ("alice", "Approved"),
        ("bob", "Approved"),
    ]
    assert s.approval.decided_by == "bob" and (s.approval.votes or [])[0].at == at(1)


def test_one_rejection_ends_the_gate() -> None:
    steps = gate(required=2)
    first = run(steps, run(steps, None, 0).status, 1, vote("alice"))
    out = run(steps, first.status, 2, vote("bob", approve=False, reason="not today"))
    s = out.status.steps["go"]
    assert s.phase == StepPhase.FAILED and s.error is not None and s.error.error_class == "Rejected"


def test_the_creator_may_not_approve_a_gate_that_refuses_self_approval() -> None:
    steps = gate(allowSelfApproval=False)
    out = run(steps, run(steps, None, 0).status, 1, vote("carol"))
    assert out.status.steps["go"].phase == StepPhase.WAITING_FOR_APPROVAL
    assert "created the workflow" in out.events[0].message
    unknown = run(
        steps, run(steps, None, 0, created_by=None).status, 1, vote("dave"), created_by=None
    )
    assert "the creator is unknown" in unknown.events[0].message
    ok = run(steps, run(steps, None, 0).status, 1, vote("dave"))
    assert ok.status.steps["go"].phase == StepPhase.SUCCEEDED


def test_options_route_by_the_choice_and_a_missing_choice_is_refused() -> None:
    steps = gate(options=["canary", "full"])
    waiting = run(steps, None, 0)
    missing = run(steps, waiting.status, 1, vote("alice"))
    assert "pick one of canary, full" in missing.events[0].message
    chose = run(steps, waiting.status, 1, vote("alice", choice="canary", data={"ticket": 7}))
    go = chose.status.steps["go"]
    assert go.output == {"ticket": 7, "choice": "canary"}
    assert go.approval is not None and go.approval.choice == "canary"
    assert chose.status.steps["canary"].phase == StepPhase.RUNNING
    full = run(steps, waiting.status, 1, vote("alice", choice="full"))
    assert full.status.steps["canary"].phase == StepPhase.SKIPPED


def test_data_that_breaks_the_schema_is_refused_and_a_timeout_approval_applies_defaults() -> None:
    schema = {
        "type": "object",
        "required": ["percent"],
        "properties": {"percent": {"type": "integer", "default": 10}, "note": {"type": "string"}},
    }
    steps = gate(schema=schema, timeout="1m", onTimeout="Approve", options=["canary", "full"])
    waiting = run(steps, None, 0)
    bad = run(steps, waiting.status, 1, vote("alice", choice="full", data={"percent": "all"}))
    assert bad.status.steps["go"].phase == StepPhase.WAITING_FOR_APPROVAL
    assert "does not match the schema at percent" in bad.events[0].message
    timed_out = run(steps, waiting.status, 60)
    assert timed_out.status.steps["go"].output == {"percent": 10, "choice": "canary"}


def test_the_webhook_refuses_the_same_at_kubectl_annotate() -> None:
    spec = {
        "steps": gate(
            allowSelfApproval=False,
            options=["canary", "full"],
            schema={"type": "object", "required": ["ticket"]},
        )
    }
    approve = [Decision(step="go", verb="approve")]
    base = {"cerebelum.io/created-by": "carol", "cerebelum.io/approve": "go"}
    assert "refuses self-approval" in (gate_refusal(spec, base, approve, "carol") or "")
    assert "needs cerebelum.io/choice=one of canary, full" in (
        gate_refusal(spec, base, approve, "dave") or ""
    )
    data = {
        **base,
        "cerebelum.io/choice": "full",
        "cerebelum.io/approval-data": json.dumps({"x": 1}),
    }
    assert "'ticket' is a required property" in (gate_refusal(spec, data, approve, "dave") or "")
    good = {**data, "cerebelum.io/approval-data": json.dumps({"ticket": 1})}
    assert gate_refusal(spec, good, approve, "dave") is None
    assert created_by_refusal(
        {"cerebelum.io/created-by": "carol"}, {"cerebelum.io/created-by": "eve"}
    )
    assert (
        created_by_refusal(
            {"cerebelum.io/created-by": "carol"}, {"cerebelum.io/created-by": "carol"}
        )
        is None
    )
