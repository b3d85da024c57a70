"""Notices, rule by rule (engine.notify), and what a person reads in one (kube.notify)."""

from __future__ import annotations

import datetime
from typing import Any

from cerebelum.actions import CATALOG
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import StepPhase, WorkflowPhase, WorkflowStatus
from cerebelum.engine import ActionResult, Input, Outcome, WorkflowMeta, reconcile
from cerebelum.engine.notify import NOTIFY_KIND
from cerebelum.kube.notify import body

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
META = WorkflowMeta(name="release", namespace="prod", uid="uid-1")
TARGET = {"name": "chat", "urlSecretRef": {"name": "hook", "key": "url"}, "format": "Slack"}


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def spec(**target: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "notify": [{**TARGET, **target}],
            "steps": [
                {
                    "name": "go_live",
                    "approval": {
                        "timeout": "1h",
                        "message": "ship 1.4?",
                        "approvers": {"groups": ["ops"]},
                    },
                }
            ],
        }
    )


def run(
    sp: WorkflowSpec,
    status: WorkflowStatus | None,
    now: float,
    *inputs: Input,
    in_flight: frozenset[str] = frozenset(),
) -> Outcome:
    return reconcile(sp, status, META, at(now), inputs=inputs, actions=CATALOG, in_flight=in_flight)


def sent(out: Outcome, ok: bool = True, **fields: Any) -> ActionResult:
    [call] = [c for c in out.actions if c.kind == NOTIFY_KIND]
    return ActionResult(call.step, call.visit, call.attempt, ok=ok, **fields)


def test_a_gate_opens_one_notice_per_target_sent_after_the_write_with_a_stable_key() -> None:
    out = run(spec(), None, 0)
    assert out.status.steps["go_live"].phase == StepPhase.WAITING_FOR_APPROVAL
    [notice] = out.status.notifications or []
    assert (notice.key, notice.event, notice.sending, notice.attempts) == (
        "uid-1.go_live.1.approval",
        "ApprovalRequested",
        True,
        1,
    )
    [call] = out.actions
    assert call.kind == NOTIFY_KIND and call.idempotency_key == "uid-1.go_live.1.approval"
    assert not call.local, "a notice is I/O: sent only after the write that records it"
    done = run(spec(), out.status, 1, sent(out))
    [notice] = done.status.notifications or []
    assert notice.sent_at == at(1) and not notice.sending and done.actions == []
    again = run(spec(), done.status, 2)
    assert len(again.status.notifications or []) == 1 and again.actions == [], "one per visit"


def test_a_send_lost_in_a_restart_is_sent_again_with_the_same_key() -> None:
    out = run(spec(), None, 0)
    resumed = run(spec(), out.status, 5)  # nobody is sending it (in_flight is empty)
    [call] = resumed.actions
    assert call.idempotency_key == "uid-1.go_live.1.approval" and call.attempt == 1
    running = run(spec(), out.status, 5, in_flight=frozenset({call.step}))
    assert running.actions == []


def test_a_failed_send_is_retried_with_backoff_and_never_holds_the_workflow() -> None:
    from cerebelum.api.status import StepError

    out = run(spec(), None, 0)
    failed = run(
        spec(), out.status, 1, sent(out, ok=False, error=StepError(error_class="X", message="down"))
    )
    [notice] = failed.status.notifications or []
    assert notice.last_error == "down" and notice.next_attempt_at == at(3)
    assert failed.wake_at == at(3) and failed.status.phase == WorkflowPhase.WAITING_FOR_APPROVAL
    assert [e.reason for e in failed.events] == ["NotificationFailed"]
    retry = run(spec(), failed.status, 3)
    [call] = retry.actions
    assert call.attempt == 2 and call.idempotency_key == notice.key


def test_the_end_is_notified_and_a_finished_workflow_still_wakes_for_the_retry() -> None:
    from cerebelum.api.status import StepError
    from cerebelum.engine import ApprovalDecision

    sp = spec(on=["End"])
    waiting = run(sp, None, 0)
    assert waiting.status.notifications is None, "the target asked for the end only"
    ended = run(sp, waiting.status, 1, ApprovalDecision("go_live", True))
    assert ended.status.phase == WorkflowPhase.SUCCEEDED
    [notice] = ended.status.notifications or []
    assert notice.key == "uid-1.end" and notice.event == "Succeeded"
    failed = run(
        sp, ended.status, 2, sent(ended, ok=False, error=StepError(error_class="X", message="503"))
    )
    assert failed.wake_at == at(4)
    assert len(run(sp, failed.status, 4).actions) == 1


def test_a_slack_notice_says_what_waits_until_when_who_decides_and_how() -> None:
    out = run(spec(), None, 0)
    [call] = out.actions
    slack = body(call.params)
    assert slack["text"].startswith(
        "Workflow prod/release: step go_live waits for approval: ship 1.4?"
    )
    assert "until 2026-01-01T13:00:00.000Z" in slack["text"] and "group ops" in slack["text"]
    commands = slack["blocks"][1]["text"]["text"]
    assert "kubectl -n prod annotate workflow release cerebelum.io/approve=go_live" in commands
    assert "cerebelum -n prod approve release go_live" in commands
    generic = body({**call.params, "target": {**TARGET, "format": "Generic"}})
    assert (
        generic["dedupeKey"] == "uid-1.go_live.1.approval"
        and generic["whoMayDecide"] == "group ops"
    )


def test_with_a_ui_a_notice_links_to_the_workflows_page() -> None:
    out = run(spec(), None, 0)
    [call] = out.actions
    generic = body(
        {**call.params, "target": {**TARGET, "format": "Generic"}}, "https://ui.example/"
    )
    assert generic["link"] == "https://ui.example/#/wf/prod/release"
    assert generic["how"][0] == "open https://ui.example/#/wf/prod/release"
    assert body({**call.params, "target": {**TARGET, "format": "Generic"}})["link"] is None
