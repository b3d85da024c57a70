"""The callback wait, rule by rule, in the Scenario shape (status in, one input or the clock
passing a deadline, outcome out), and its tokens."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from cerebelum.actions import CATALOG
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import (
    CallbackStatus,
    StepPhase,
    StepStatus,
    WorkflowPhase,
    WorkflowStatus,
)
from cerebelum.api.tokens import CallbackIssuer, TokenClaims, token_hash
from cerebelum.engine import ActionResult, Input, Outcome, WorkflowMeta, reconcile
from cerebelum.engine.repair import load_status
from cerebelum.engine.types import CallbackDelivery, CallbackOutcome

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
META = WorkflowMeta(name="wf", namespace="ns", uid="uid-1")
ISSUER = CallbackIssuer(b"k" * 32, "https://callbacks.example.com")
OK = CallbackOutcome.SUCCEEDED


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def run(
    steps: list[dict[str, Any]], status: WorkflowStatus | None, now: float, *inputs: Input
) -> Outcome:
    return reconcile(
        WorkflowSpec.model_validate({"steps": steps}),
        status,
        META,
        at(now),
        inputs=inputs,
        actions=CATALOG,
        callbacks=ISSUER,
    )


def trigger(**callback: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": "build",
            "http": {
                "method": "POST",
                "url": "http://ci.example/build",
                "body": {"callback": "${{ callback.url }}"},
            },
            "callback": {"timeout": "1h", **callback},
        }
    ]


def waiting(attempt: int = 1, **fields: Any) -> WorkflowStatus:
    token = ISSUER.token(TokenClaims("ns", "wf", "uid-1", "build", 1, attempt))
    cb = CallbackStatus(
        attempt=attempt,
        token_hash=token_hash(token),
        requested_at=T0,
        expires_at=at(3600),
        deadline=at(3600),
    )
    for key, value in fields.items():
        setattr(cb, key, value)
    s = StepStatus(
        phase=StepPhase.WAITING_FOR_CALLBACK,
        visits=1,
        attempts=attempt,
        started_at=T0,
        idempotency_key="uid-1.build.1",
        callback=cb,
    )
    return WorkflowStatus(phase=WorkflowPhase.RUNNING, started_at=T0, steps={"build": s})


def hash_of(attempt: int = 1) -> str:
    return token_hash(ISSUER.token(TokenClaims("ns", "wf", "uid-1", "build", 1, attempt)))


def test_the_action_gets_the_callback_url_and_only_its_hash_is_recorded() -> None:
    out = run(trigger(), None, 0)
    [call] = out.actions
    url = call.params["body"]["callback"]
    assert url.startswith("https://callbacks.example.com/callbacks/v1.")
    token = url.rsplit("/", 1)[1]
    assert ISSUER.verify(token) == TokenClaims("ns", "wf", "uid-1", "build", 1, 1)
    assert call.secrets == (token,), "the token is scrubbed from what the attempt reports"
    s = out.status.steps["build"]
    assert s.callback is not None and s.callback.token_hash == token_hash(token)
    assert token not in out.status.model_dump_json()


def test_after_the_action_the_step_waits_with_the_timeout_as_its_deadline() -> None:
    started = run(trigger(), None, 0)
    out = run(trigger(), started.status, 2, ActionResult("build", 1, 1, ok=True, output={}))
    s = out.status.steps["build"]
    assert s.phase == StepPhase.WAITING_FOR_CALLBACK
    assert out.status.phase == WorkflowPhase.WAITING_FOR_CALLBACK
    assert s.callback is not None and s.callback.expires_at == at(3602)
    assert out.wake_at == at(3602)
    assert [e.reason for e in out.events] == ["CallbackRequested"]


def test_the_payload_becomes_the_output() -> None:
    delivery = CallbackDelivery("build", OK, {"artifact": "a.tgz"}, hash_of(), "http")
    out = run(trigger(), waiting(), 10, delivery)
    s = out.status.steps["build"]
    assert s.phase == StepPhase.SUCCEEDED and s.output == {"artifact": "a.tgz"}
    assert s.callback is not None and s.callback.received_by == "http"
    assert out.status.phase == WorkflowPhase.SUCCEEDED and out.consumed == [delivery]


def test_a_payload_that_breaks_the_schema_is_refused_and_the_step_keeps_waiting() -> None:
    schema = {"type": "object", "required": ["artifact"]}
    delivery = CallbackDelivery("build", OK, {"other": 1}, hash_of())
    out = run(trigger(schema=schema), waiting(), 10, delivery)
    assert out.status.steps["build"].phase == StepPhase.WAITING_FOR_CALLBACK
    [event] = out.events
    assert (
        event.reason == "CallbackRefused" and "'artifact' is a required property" in event.message
    )


def test_a_token_of_an_earlier_attempt_is_ignored() -> None:
    out = run(trigger(), waiting(attempt=2), 10, CallbackDelivery("build", OK, {}, hash_of(1)))
    assert out.status.steps["build"].phase == StepPhase.WAITING_FOR_CALLBACK
    assert "earlier attempt" in out.events[0].message


def test_a_callback_before_the_action_answers_is_applied_when_it_does() -> None:
    started = run(trigger(), None, 0)
    early = run(trigger(), started.status, 1, CallbackDelivery("build", OK, {"n": 1}, hash_of()))
    assert early.status.steps["build"].phase == StepPhase.RUNNING
    out = run(trigger(), early.status, 2, ActionResult("build", 1, 1, ok=True, output={}))
    s = out.status.steps["build"]
    assert s.phase == StepPhase.SUCCEEDED and s.output == {"n": 1}


def test_timeout_fails_or_goes_to_its_target() -> None:
    out = run(trigger(), waiting(), 3600)
    s = out.status.steps["build"]
    assert s.phase == StepPhase.FAILED and s.error is not None
    assert s.error.error_class == "CallbackTimeout"
    steps = [*trigger(onTimeout="Goto", timeoutGoto="fallback"), {"name": "fallback", "noop": {}}]
    status = waiting()
    out = run(steps, status, 3600)
    assert out.status.steps["build"].phase == StepPhase.FAILED
    assert [c.step for c in out.actions] == ["fallback"]


def test_a_missed_heartbeat_fails_the_attempt_and_retry_starts_a_new_one() -> None:
    steps = trigger(heartbeatTimeout="30s")
    steps[0]["retry"] = {"limit": 2, "backoff": {"delay": "1s", "jitter": 0}}
    status = waiting(deadline=at(30))
    beat = run(steps, status, 20, CallbackDelivery("build", CallbackOutcome.HEARTBEAT))
    cb = beat.status.steps["build"].callback
    assert cb is not None and cb.last_heartbeat_at == at(20) and cb.deadline == at(50)
    missed = run(steps, beat.status, 50)
    s = missed.status.steps["build"]
    assert s.phase == StepPhase.RETRYING and s.error is not None
    assert (s.error.error_class, s.error.retryable) == ("HeartbeatTimeout", True)
    again = run(steps, missed.status, 60)
    [call] = again.actions
    assert call.attempt == 2
    new = again.status.steps["build"].callback
    assert new is not None and new.attempt == 2 and new.token_hash == hash_of(2)


def test_a_failure_callback_fails_the_step_with_its_message() -> None:
    failure = CallbackDelivery("build", CallbackOutcome.FAILED, {"message": "tests failed"})
    out = run(trigger(), waiting(), 10, failure)
    s = out.status.steps["build"]
    assert s.phase == StepPhase.FAILED and s.error is not None
    assert (s.error.error_class, s.error.message) == ("CallbackFailed", "tests failed")


def test_a_step_with_only_a_callback_waits_and_a_kubectl_delivery_needs_no_token() -> None:
    steps = [{"name": "build", "callback": {}}]
    out = run(steps, None, 0)
    assert out.status.steps["build"].phase == StepPhase.WAITING_FOR_CALLBACK
    assert out.wake_at is None
    done = run(steps, out.status, 5, CallbackDelivery("build", OK, {"ok": True}, None, "alice"))
    assert done.status.steps["build"].output == {"ok": True}


def test_a_callback_for_a_step_not_waiting_is_ignored_with_a_warning() -> None:
    steps = [{"name": "build", "noop": {}, "callback": {}}, {"name": "later", "callback": {}}]
    out = run(steps, None, 0, CallbackDelivery("later", OK, {}))
    assert out.status.steps["later"].phase == StepPhase.PENDING
    assert any(e.reason == "CallbackIgnored" and "Pending" in e.message for e in out.events)


def test_without_a_key_a_reference_to_the_callback_fails_the_step_saying_why() -> None:
    out = reconcile(
        WorkflowSpec.model_validate({"steps": trigger()}), None, META, at(0), actions=CATALOG
    )
    s = out.status.steps["build"]
    assert s.phase == StepPhase.FAILED and s.error is not None
    assert s.error.error_class == "CallbackUnavailable"
    assert (
        "callbacks.enabled" in s.error.message and "cerebelum.io/callback=build" in s.error.message
    )


def test_a_schema_that_is_not_one_is_refused_at_apply_time() -> None:
    with pytest.raises(ValidationError, match="not a valid JSON Schema"):
        WorkflowSpec.model_validate({"steps": trigger(schema={"type": 12})})


def test_a_lost_callback_status_is_repaired() -> None:
    status = waiting()
    wire = status.to_wire()
    del wire["steps"]["build"]["callback"]
    repaired, notes = load_status(WorkflowSpec.model_validate({"steps": trigger()}), wire, at(5))
    assert repaired is not None
    cb = repaired.steps["build"].callback
    assert cb is not None and cb.deadline == at(3605)
    assert notes


def test_tokens_are_bound_to_their_key_and_refuse_tampering() -> None:
    claims = TokenClaims("ns", "wf", "uid-1", "build", 1, 1)
    token = ISSUER.token(claims)
    assert ISSUER.token(claims) == token, "the same attempt always gets the same token"
    assert CallbackIssuer(b"x" * 32).verify(token) is None
    version, payload, mac = token.split(".")
    assert ISSUER.verify(f"{version}.{payload}.{mac[:-1]}A") is None
    assert ISSUER.verify(f"{version}.{payload[:-2]}.{mac}") is None
    assert ISSUER.verify("garbage") is None and ISSUER.verify("v1." + "a" * 5000) is None
    with pytest.raises(ValueError):
        CallbackIssuer(b"short")
