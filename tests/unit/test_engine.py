"""The engine's rules, one behaviour per test, with fake time."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from cerebelum.api.status import StepError, StepPhase
from cerebelum.engine import ActionResult, Pause, WorkflowMeta
from cerebelum.engine.run import OUTPUT_LIMIT_BYTES, OUTPUTS_LIMIT_BYTES
from tests.unit.engine_driver import T0, Driver, seconds_after_t0


def noop(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "noop": {"with": {"from": name}}, **extra}


# -- timeline and data flow ------------------------------------------------------------


def test_timeline_runs_in_order_and_passes_outputs() -> None:
    d = Driver(
        {
            "inputs": {"base": 40},
            "steps": [
                {"name": "a", "noop": {"with": {"v": "${{ inputs.base + 1 }}"}}},
                {
                    "name": "b",
                    "noop": {
                        "with": {
                            "v": "${{ steps.a.output.v + 1 }}",
                            "s": "n=${{ steps.a.output.v }}",
                        }
                    },
                },
            ],
        }
    )
    d.tick()
    assert d.phase == "Succeeded"
    assert d.step("a").output == {"v": 41}
    assert d.step("b").output == {"v": 42, "s": "n=41"}
    assert [c.step for c in d.calls] == ["a", "b"]
    assert d.status is not None
    assert d.status.progress == "2/2"
    condition = d.status.conditions[0]  # type: ignore[index]
    assert (condition.type, condition.status, condition.reason) == (
        "Succeeded",
        "True",
        "Succeeded",
    )


def test_steps_wait_for_the_previous_step_when_actions_take_time() -> None:
    d = Driver({"steps": [noop("a"), noop("b")]}, defer=True)
    d.tick()
    assert [c.step for c in d.calls] == ["a"]
    assert d.phase == "Running" and d.status is not None and d.status.current_step == "a"
    d.complete("a", output={"x": 1})
    assert [c.step for c in d.calls] == ["a", "b"]
    d.complete("b", output={})
    assert d.phase == "Succeeded"


def test_independent_steps_run_in_parallel_and_join() -> None:
    d = Driver(
        {
            "steps": [
                noop("a"),
                noop("b", dependsOn=["a"]),
                noop("c", dependsOn=["a"]),
                noop("d", dependsOn=["b", "c"]),
            ]
        },
        defer=True,
    )
    d.tick()
    d.complete("a", output={})
    assert sorted(c.step for c in d.calls) == ["a", "b", "c"]
    assert d.status is not None and d.status.current_steps == ["b", "c"]
    d.complete("b", output={})
    assert "d" not in [c.step for c in d.calls], "d must wait for c as well"
    d.complete("c", output={})
    assert d.calls[-1].step == "d"


def test_steps_with_no_dependencies_start_together() -> None:
    d = Driver({"steps": [noop("a", dependsOn=[]), noop("b", dependsOn=[])]}, defer=True)
    d.tick()
    assert sorted(c.step for c in d.calls) == ["a", "b"]


# -- sleep ------------------------------------------------------------------------------


def test_sleep_is_a_deadline_not_a_wait() -> None:
    d = Driver({"steps": [{"name": "nap", "sleep": {"duration": "10s"}}, noop("after")]})
    out = d.tick()
    assert d.phase == "Sleeping"
    assert d.step_phase("nap") == StepPhase.SLEEPING
    assert seconds_after_t0(d.step("nap").sleep_until) == 10
    assert out.wake_at == T0.replace(second=10)
    assert d.status is not None and seconds_after_t0(d.status.next_wake_at) == 10
    d.at(9.999)
    assert d.step_phase("nap") == StepPhase.SLEEPING
    d.at(10)
    assert d.phase == "Succeeded"


def test_sleep_until_a_timestamp_and_one_in_the_past() -> None:
    d = Driver({"steps": [{"name": "s", "sleep": {"until": "2026-01-01T12:01:00Z"}}]})
    d.tick()
    assert seconds_after_t0(d.step("s").sleep_until) == 60
    past = Driver({"steps": [{"name": "s", "sleep": {"until": "2025-01-01T00:00:00Z"}}]})
    past.tick()
    assert past.phase == "Succeeded"


def test_sleep_before_an_action() -> None:
    d = Driver(
        {"steps": [{"name": "s", "sleep": {"duration": "1m"}, "noop": {"with": {"ok": True}}}]}
    )
    d.tick()
    assert d.calls == []
    d.at(60)
    assert d.step("s").output == {"ok": True} and d.phase == "Succeeded"


def test_sleep_until_with_a_bad_timestamp_fails_the_step_clearly() -> None:
    d = Driver({"steps": [{"name": "s", "sleep": {"until": "tomorrow"}}]})
    d.tick()
    assert d.phase == "Failed"
    assert d.step("s").error.error_class == "InvalidSleep"
    assert "tomorrow" in d.step("s").error.message


# -- poll ------------------------------------------------------------------------------


def polling_step(**poll: object) -> dict[str, object]:
    return {
        "name": "p",
        "noop": {"with": {"n": "${{ step.attempt }}"}},
        "poll": {"until": "output.n >= 3", "interval": "5s", **poll},
    }


def test_poll_succeeds_on_attempt_n_without_blocking() -> None:
    d = Driver({"steps": [polling_step(maxAttempts=5)]})
    out = d.tick()
    assert d.phase == "Polling" and d.step("p").attempts == 1
    assert seconds_after_t0(d.step("p").next_attempt_at) == 5 and out.wake_at is not None
    d.at(4)
    assert d.step("p").attempts == 1
    d.at(5)
    assert d.step("p").attempts == 2 and d.step("p").output == {"n": 2}
    d.at(10)
    assert d.phase == "Succeeded"
    assert d.step("p").attempts == 3
    assert d.step("p").output == {"n": 3}
    assert seconds_after_t0(d.step("p").last_attempt_at) == 10


def test_poll_gives_up_after_max_attempts() -> None:
    d = Driver({"steps": [polling_step(maxAttempts=2)]})
    d.run_to_end()
    assert d.phase == "Failed"
    assert d.step("p").attempts == 2
    assert d.step("p").error.error_class == "PollTimeout"
    assert "maxAttempts=2" in d.step("p").error.message


def test_poll_gives_up_after_its_timeout() -> None:
    d = Driver({"steps": [polling_step(until="false", timeout="12s")]})
    d.run_to_end()
    assert d.phase == "Failed"
    assert d.step("p").error.error_class == "PollTimeout"
    # attempts at 0, 5, 10; the next one would be at 15, past the 12s timeout.
    assert d.step("p").attempts == 3
    assert seconds_after_t0(d.step("p").finished_at) == 12


def test_poll_timeout_can_go_to_another_step() -> None:
    d = Driver(
        {
            "steps": [
                polling_step(maxAttempts=1, onTimeout="Goto", timeoutGoto="cleanup"),
                noop("configure"),
                noop("cleanup"),
            ]
        }
    )
    d.run_to_end()
    assert d.step_phase("p") == StepPhase.FAILED
    assert d.step_phase("configure") == StepPhase.SKIPPED
    assert d.step_phase("cleanup") == StepPhase.SUCCEEDED
    assert d.phase == "Succeeded"


def test_poll_interval_backoff_is_capped() -> None:
    d = Driver(
        {
            "steps": [
                polling_step(
                    until="false", maxAttempts=5, interval="1s", backoffFactor=2, maxInterval="3s"
                )
            ]
        }
    )
    starts = []
    out = d.tick()
    while not d.finished:
        starts.append(seconds_after_t0(d.step("p").last_attempt_at))
        assert out.wake_at is not None
        d.now = out.wake_at
        out = d.tick()
    starts.append(seconds_after_t0(d.step("p").last_attempt_at))
    assert starts == [0, 1, 3, 6, 9]


def test_a_transient_failure_does_not_end_a_poll() -> None:
    d = Driver(
        {
            "steps": [
                {
                    "name": "p",
                    "noop": {},
                    "poll": {"until": "true", "interval": "1s", "maxAttempts": 3},
                }
            ]
        },
        defer=True,
    )
    d.tick()
    d.complete(
        "p", ok=False, error=StepError(error_class="Transport", message="refused", retryable=True)
    )
    assert d.step_phase("p") == StepPhase.POLLING
    d.at(1)
    d.complete("p", output={"ready": True})
    assert d.phase == "Succeeded" and d.step("p").attempts == 2


def test_poll_condition_error_fails_the_step_naming_the_field() -> None:
    d = Driver(
        {
            "steps": [
                {
                    "name": "p",
                    "noop": {},
                    "poll": {"until": "output.missing == 1", "interval": "1s", "maxAttempts": 3},
                }
            ]
        }
    )
    d.tick()
    error = d.step("p").error
    assert d.phase == "Failed" and error.error_class == "ExpressionError"
    assert "spec.steps[0].poll.until" in error.message and "missing" in error.message


# -- approval --------------------------------------------------------------------------


def test_approval_waits_and_approve_moves_on_with_the_payload() -> None:
    d = Driver(
        {
            "inputs": {"v": "1.2"},
            "steps": [
                {
                    "name": "go_live",
                    "approval": {"timeout": "1h", "message": "ship ${{ inputs.v }}?"},
                },
                noop("after"),
            ],
        }
    )
    d.tick()
    assert d.phase == "WaitingForApproval"
    assert d.step("go_live").approval.message == "ship 1.2?"
    approval = d.step("go_live").approval
    assert (
        seconds_after_t0(approval.requested_at) == 0 and seconds_after_t0(approval.deadline) == 3600
    )
    assert "ApprovalRequested" in d.event_reasons()
    d.at(30, decisions=())
    d.approve("go_live", reason="looks good", data={"ticket": 7}, decided_by="alice")
    assert d.step("go_live").output == {"ticket": 7}
    approval = d.step("go_live").approval
    assert (approval.decision, approval.decided_by, approval.reason) == (
        "Approved",
        "alice",
        "looks good",
    )
    assert seconds_after_t0(approval.decided_at) == 30
    assert d.phase == "Succeeded"
    assert [c.step for c in d.consumed] == ["go_live"]


def test_approval_gates_an_action() -> None:
    d = Driver({"steps": [{"name": "deploy", "approval": {}, "noop": {"with": {"done": True}}}]})
    d.tick()
    assert d.calls == []
    d.approve("deploy")
    assert d.step("deploy").output == {"done": True}


def test_reject_fails_the_workflow() -> None:
    d = Driver({"steps": [{"name": "gate", "approval": {}}, noop("after")]})
    d.tick()
    d.approve("gate", approve=False, reason="not today", decided_by="bob")
    assert d.phase == "Failed"
    assert d.step("gate").approval.decision == "Rejected"
    assert d.step_phase("after") == StepPhase.CANCELLED
    assert d.status is not None and "not today" in (d.status.message or "")


def test_reject_can_route_elsewhere() -> None:
    d = Driver(
        {
            "steps": [
                {"name": "gate", "approval": {"onReject": "Goto", "rejectGoto": "rollback"}},
                noop("ship"),
                noop("rollback", dependsOn=[]),
            ]
        },
        defer=True,
    )
    d.tick()
    d.complete("rollback", output={})  # rollback ran once at the start (no dependencies)
    d.approve("gate", approve=False)
    assert d.step_phase("ship") == StepPhase.SKIPPED
    assert d.step("rollback").visits == 2
    d.complete("rollback", output={})
    assert d.phase == "Succeeded"


@pytest.mark.parametrize(
    ("on_timeout", "extra", "phase", "gate_phase"),
    [
        ("Fail", {}, "Failed", StepPhase.FAILED),
        ("Approve", {}, "Succeeded", StepPhase.SUCCEEDED),
        ("Goto", {"timeoutGoto": "escalate"}, "Succeeded", StepPhase.FAILED),
    ],
)
def test_approval_timeout_follows_on_timeout(
    on_timeout: str, extra: dict[str, str], phase: str, gate_phase: StepPhase
) -> None:
    d = Driver(
        {
            "steps": [
                {"name": "gate", "approval": {"timeout": "10m", "onTimeout": on_timeout, **extra}},
                noop("escalate"),
            ]
        }
    )
    d.tick()
    d.at(599)
    assert d.phase == "WaitingForApproval"
    d.at(600)
    assert d.phase == phase
    assert d.step_phase("gate") == gate_phase
    assert d.step("gate").approval.decision == "TimedOut"


def test_a_decision_for_a_step_that_is_not_waiting_is_refused_and_consumed() -> None:
    d = Driver({"steps": [{"name": "gate", "sleep": {"duration": "1m"}, "approval": {}}]})
    d.tick()
    d.approve("gate")
    assert d.step_phase("gate") == StepPhase.SLEEPING
    assert d.events[-1].type == "Warning" and "not waiting for approval" in d.events[-1].message
    assert [c.step for c in d.consumed] == ["gate"]
    d.at(60)
    assert d.phase == "WaitingForApproval", "the early approval must not count"


# -- retry -----------------------------------------------------------------------------


def flaky(times: int | None, **retry: object) -> dict[str, object]:
    fail: dict[str, object] = {"errorClass": "Transient", "message": "boom"}
    if times is not None:
        fail["times"] = times
    return {"name": "f", "fail": fail, "retry": retry}


def test_retry_with_backoff_ends_in_success() -> None:
    d = Driver({"steps": [flaky(2, limit=3, backoff={"delay": "1s", "factor": 2})]})
    d.tick()
    assert d.step_phase("f") == StepPhase.RETRYING and d.phase == "Running"
    assert seconds_after_t0(d.step("f").next_attempt_at) == 1, "the first retry waits delay"
    d.at(1)
    assert seconds_after_t0(d.step("f").next_attempt_at) == 3
    d.at(3)
    assert d.phase == "Succeeded"
    assert d.step("f").attempts == 3
    assert d.step("f").output == {"attempt": 3, "recovered": True}


def test_retry_limit_counts_retries_not_attempts() -> None:
    d = Driver({"steps": [flaky(None, limit=2, backoff={"delay": "1s"})]})
    d.run_to_end()
    assert d.phase == "Failed"
    assert d.step("f").attempts == 3
    assert d.step("f").error.message == "boom"


def test_retry_only_on_listed_error_classes() -> None:
    d = Driver({"steps": [flaky(None, limit=5, retryOn=["Timeout"])]})
    d.tick()
    assert d.phase == "Failed" and d.step("f").attempts == 1


def test_non_retryable_errors_are_not_retried_by_default() -> None:
    d = Driver(
        {
            "steps": [
                {
                    "name": "f",
                    "fail": {"retryable": False, "errorClass": "BadRequest"},
                    "retry": {"limit": 5},
                }
            ]
        }
    )
    d.tick()
    assert d.phase == "Failed" and d.step("f").attempts == 1
    star = Driver(
        {
            "steps": [
                {
                    "name": "f",
                    "fail": {"retryable": False, "times": 1},
                    "retry": {"limit": 5, "retryOn": ["*"]},
                }
            ]
        }
    )
    star.run_to_end()
    assert star.phase == "Succeeded"


def test_retry_delay_is_capped_and_jitter_is_bounded_and_stable() -> None:
    spec = {
        "steps": [
            flaky(
                None,
                limit=6,
                backoff={"delay": "1s", "factor": 10, "maxDelay": "20s", "jitter": 0.5},
            )
        ]
    }
    waits = []
    d = Driver(spec)
    out = d.tick()
    while not d.finished:
        assert out.wake_at is not None
        waits.append((out.wake_at - d.now).total_seconds())
        d.now = out.wake_at
        out = d.tick()
    assert len(waits) == 6
    for base, wait in zip([1, 10, 20, 20, 20, 20], waits, strict=True):
        assert base * 0.5 <= wait <= base * 1.5
    assert len(set(waits)) > 2, "jitter spreads the waits"
    again = Driver(spec)
    again.run_to_end()
    assert again.status == d.status, "the same attempt always gets the same jitter"


def test_retry_after_from_the_action_is_respected() -> None:
    d = Driver(
        {"steps": [{"name": "f", "noop": {}, "retry": {"limit": 1, "backoff": {"delay": "1s"}}}]},
        defer=True,
    )
    d.tick()
    d.complete(
        "f",
        ok=False,
        error=StepError(error_class="RateLimited", message="429", retryable=True),
        retry_after=__import__("datetime").timedelta(seconds=30),
    )
    assert seconds_after_t0(d.step("f").next_attempt_at) == 30


def test_step_timeout_is_passed_to_each_attempt() -> None:
    d = Driver({"steps": [{"name": "f", "noop": {}, "timeout": "2s"}]}, defer=True)
    d.tick()
    assert d.calls[0].timeout is not None and d.calls[0].timeout.total_seconds() == 2


# -- diverge / branch ------------------------------------------------------------------


def test_next_goto_loops_until_a_condition_then_continues() -> None:
    d = Driver(
        {
            "steps": [
                {"name": "count", "noop": {"with": {"n": "${{ step.visit }}"}}},
                {
                    "name": "check",
                    "noop": {"with": {"n": "${{ steps.count.output.n }}"}},
                    "next": [{"when": "output.n < 3", "goto": "count"}],
                },
                noop("done"),
            ]
        }
    )
    d.tick()
    assert d.phase == "Succeeded"
    assert (
        d.step("count").visits == 3 and d.step("check").visits == 3 and d.step("done").visits == 1
    )
    assert d.step("check").output == {"n": 3}


def test_an_end_rule_finishes_the_workflow_and_skips_the_handlers_after_it() -> None:
    """How the SDK renders handlers off the main line: the line ends with `end`, and a
    failure routed to a handler ends after it; the workflow succeeds, the failure handled."""
    spec: dict[str, list[dict[str, Any]]] = {
        "steps": [
            {
                "name": "check",
                "fail": {"message": "too young", "errorClass": "TooYoung"},
                "next": [
                    {"when": "error != null && error.errorClass == 'TooYoung'", "goto": "reject"},
                    {"when": "error == null", "end": True},
                ],
            },
            noop("accept", next=[{"end": True}]),
            noop("reject", next=[{"end": True}]),
            noop("other", next=[{"end": True}]),
        ]
    }
    d = Driver(spec)
    d.tick()
    assert d.phase == "Succeeded"
    assert d.step_phase("check") == StepPhase.FAILED
    assert d.step_phase("accept") == StepPhase.SKIPPED
    assert d.step_phase("reject") == StepPhase.SUCCEEDED
    assert d.step_phase("other") == StepPhase.SKIPPED
    assert "ended by reject.next[0]" in (d.status.message or "")  # type: ignore[union-attr]

    passing = {k: v for k, v in spec["steps"][0].items() if k != "fail"}
    d = Driver({"steps": [{**passing, "noop": {}}, *spec["steps"][1:]]})
    d.tick()
    assert d.phase == "Succeeded"
    assert [d.step_phase(n) for n in ("check", "accept", "reject", "other")] == [
        StepPhase.SUCCEEDED,
        StepPhase.SKIPPED,
        StepPhase.SKIPPED,
        StepPhase.SKIPPED,
    ]


def test_an_end_rule_cancels_a_parallel_step_still_running() -> None:
    d = Driver(
        {
            "steps": [
                {"name": "slow", "http": {"url": "http://127.0.0.1:1/x"}, "dependsOn": []},
                noop("quick", dependsOn=[], next=[{"end": True}]),
            ]
        },
        defer=True,
    )
    out = d.tick()
    assert d.step_phase("slow") == StepPhase.RUNNING
    out = d.complete("quick")
    assert d.phase == "Succeeded" and d.step_phase("slow") == StepPhase.CANCELLED
    assert "slow" in out.cancel


# -- in-step waits: the action ends, the step waits, then succeeds with the output ------

PYTHON_CHAIN = {
    "steps": [
        {"name": "ask", "python": {"function": "m:ask"}},
        {"name": "after", "noop": {"with": {"got": "${{ steps.ask.output }}"}}},
    ]
}


def test_an_in_step_sleep_pauses_the_step_then_it_succeeds_with_its_output() -> None:
    d = Driver(PYTHON_CHAIN, defer=True)
    d.tick()
    d.complete("ask", output={"n": 1}, pause=Pause(sleep=datetime.timedelta(hours=6)))
    s = d.step("ask")
    assert (s.phase, s.paused, seconds_after_t0(s.sleep_until)) == ("Sleeping", "Sleep", 21600)
    assert d.phase == "Sleeping" and "after" not in d.in_flight
    out = d.at(21599)
    assert d.step("ask").phase == "Sleeping" and out.wake_at is not None
    d.at(21600)
    d.complete("after", output={"got": {"n": 1}})
    assert d.phase == "Succeeded" and d.step("ask").output == {"n": 1}
    assert d.step("ask").paused is None


@pytest.mark.parametrize(
    ("decide", "phase", "error"),
    [
        (lambda d: d.approve("ask", data={"ok": 1}), "Succeeded", None),
        (lambda d: d.approve("ask", approve=False, reason="no"), "Failed", "Rejected"),
        (lambda d: d.at(3600), "Failed", "ApprovalTimeout"),
    ],
)
def test_an_in_step_approval_waits_for_a_decision_or_its_timeout(
    decide: object, phase: str, error: str | None
) -> None:
    d = Driver(PYTHON_CHAIN, defer=True)
    d.tick()
    pause = Pause(approval=True, approval_timeout=datetime.timedelta(hours=1))
    d.complete("ask", output={"doc": 7}, pause=pause)
    s = d.step("ask")
    assert (s.phase, s.paused, seconds_after_t0(s.approval.deadline)) == (
        "WaitingForApproval",
        "Approval",
        3600,
    )
    decide(d)  # type: ignore[operator]
    if phase == "Succeeded":
        assert d.step("ask").phase == "Succeeded" and d.step("ask").output == {"doc": 7}
        d.complete("after", output={})
    assert d.phase == phase
    assert (d.step("ask").error.error_class if d.step("ask").error else None) == error


def test_a_paused_step_edited_out_of_its_wait_loses_the_pause() -> None:
    d = Driver(PYTHON_CHAIN, defer=True)
    d.tick()
    d.complete("ask", output={}, pause=Pause(sleep=datetime.timedelta(hours=1)))

    def edit(wire: dict[str, object]) -> None:
        wire["steps"]["ask"]["sleepUntil"] = None  # type: ignore[index]

    assert d.edit_status(edit) == ["step ask sleeps after its action with no end: it wakes now"]
    d.tick()
    assert d.step("ask").phase == "Succeeded"


def test_the_visit_cap_stops_a_runaway_loop() -> None:
    d = Driver(
        {
            "maxStepVisits": 50,
            "steps": [noop("a"), {"name": "b", "noop": {}, "next": [{"goto": "a"}]}],
        }
    )
    d.tick()
    assert d.phase == "Failed"
    assert d.status is not None and d.status.total_visits == 50
    assert "maxStepVisits=50" in (d.status.message or "")
    assert d.status.conditions[0].reason == "Failed"  # type: ignore[index]


def test_default_visit_cap_is_1000() -> None:
    d = Driver({"steps": [{"name": "a", "noop": {}, "next": [{"goto": "a"}]}]})
    d.tick()
    assert d.phase == "Failed" and d.status is not None and d.status.total_visits == 1000


def test_next_fail_rule_fails_the_workflow_with_its_message() -> None:
    d = Driver(
        {
            "steps": [
                {
                    "name": "a",
                    "noop": {"with": {"status": "degraded"}},
                    "next": [{"when": "output.status == 'degraded'", "fail": "service degraded"}],
                }
            ]
        }
    )
    d.tick()
    assert d.phase == "Failed" and "service degraded" in (d.status.message or "")  # type: ignore[union-attr]


def test_next_rules_route_on_errors_and_continue_tolerates_them() -> None:
    d = Driver(
        {
            "steps": [
                {
                    "name": "a",
                    "fail": {"errorClass": "Flaky"},
                    "next": [{"when": "error.errorClass == 'Flaky'", "continue": True}],
                },
                noop("b"),
            ]
        }
    )
    d.tick()
    assert d.phase == "Succeeded"
    assert d.step("a").error.error_class == "Flaky"
    assert d.step_phase("b") == StepPhase.SUCCEEDED


def test_first_matching_rule_wins() -> None:
    d = Driver(
        {
            "steps": [
                {
                    "name": "a",
                    "noop": {"with": {"x": 1}},
                    "next": [
                        {"when": "output.x == 1", "goto": "c"},
                        {"when": "true", "fail": "no"},
                    ],
                },
                noop("b"),
                noop("c", dependsOn=[]),
            ]
        }
    )
    d.tick()
    assert d.phase == "Succeeded"
    assert d.step("c").visits == 2


def test_when_false_skips_a_step_and_dependents_go_on() -> None:
    d = Driver(
        {
            "inputs": {"env": "dev"},
            "steps": [
                {"name": "prod_only", "when": "inputs.env == 'prod'", "noop": {}},
                noop("after"),
            ],
        }
    )
    d.tick()
    assert d.step_phase("prod_only") == StepPhase.SKIPPED
    assert d.step_phase("after") == StepPhase.SUCCEEDED
    assert d.phase == "Succeeded"


# -- the workflow as a whole -----------------------------------------------------------


def test_active_deadline_fails_the_workflow_and_cancels_running_steps() -> None:
    d = Driver({"activeDeadline": "1m", "steps": [noop("slow")]}, defer=True)
    out = d.tick()
    assert out.wake_at == T0.replace(minute=1)
    d.at(60)
    assert d.phase == "Failed"
    assert d.step_phase("slow") == StepPhase.CANCELLED
    assert d.cancelled == ["slow"]
    assert d.status is not None and d.status.conditions[0].reason == "Failed"  # type: ignore[index]
    assert "activeDeadline" in (d.status.message or "")


@pytest.mark.parametrize("how", ["spec", "annotation"])
def test_cancel_stops_waiting_steps_at_once(how: str) -> None:
    spec = {"steps": [{"name": "nap", "sleep": {"duration": "1h"}}, noop("b")]}
    d = Driver(spec)
    d.tick()
    if how == "spec":
        d.spec.cancel = True
    else:
        d.meta = WorkflowMeta(name="wf", namespace="ns", uid="uid-1", cancel_requested=True)
    out = d.at(1)
    assert d.phase == "Cancelled"
    assert d.step_phase("nap") == StepPhase.CANCELLED and d.step_phase("b") == StepPhase.CANCELLED
    assert out.wake_at is None and d.status is not None and d.status.next_wake_at is None


def test_suspend_holds_new_steps_and_resume_continues() -> None:
    d = Driver({"steps": [{"name": "nap", "sleep": {"duration": "10s"}}, noop("b")]})
    d.tick()
    d.spec.suspend = True
    d.at(20)
    assert d.phase == "Suspended" and d.calls == []
    d.spec.suspend = False
    d.at(21)
    assert d.phase == "Succeeded"


def test_output_over_the_limit_fails_the_step() -> None:
    d = Driver({"steps": [noop("big")]}, defer=True)
    d.tick()
    d.complete("big", output={"blob": "x" * (OUTPUT_LIMIT_BYTES + 1)})
    assert d.phase == "Failed"
    assert d.step("big").error.error_class == "OutputTooLarge"
    assert d.step("big").output is None


def test_outputs_together_over_the_workflows_budget_fail_the_step_that_crosses_it() -> None:
    """A hundred steps with 16 KiB outputs each would make status too large for etcd, and
    every write of it would fail: the step that would cross the budget fails instead."""
    blob = "x" * 16 * 1024
    steps = [{"name": f"s{i}", "noop": {"with": {"blob": blob}}} for i in range(100)]
    d = Driver({"steps": steps})
    d.tick()
    assert d.phase == "Failed" and d.status is not None
    succeeded = [n for n in d.status.steps if d.step(n).phase == "Succeeded"]
    assert 25 <= len(succeeded) < 40
    crossing = d.step(f"s{len(succeeded)}")
    assert crossing.error.error_class == "StatusTooLarge"
    assert "budget for outputs" in crossing.error.message
    assert "The largest: s0 (16396 bytes), s1 (16396 bytes)" in crossing.error.message
    # What is written stays far below etcd's 1.5 MiB request limit.
    assert OUTPUTS_LIMIT_BYTES < len(json.dumps(d.status.to_wire())) < 768 * 1024


def test_expression_errors_fail_the_step_and_name_the_field() -> None:
    d = Driver(
        {"steps": [noop("a"), {"name": "b", "noop": {"with": {"x": "${{ steps.nope.output }}"}}}]}
    )
    d.tick()
    assert d.phase == "Failed"
    error = d.step("b").error
    assert error.error_class == "ExpressionError"
    assert "spec.steps[1].noop.with.x" in error.message and "nope" in error.message


def test_restart_reissues_a_lost_attempt_with_the_same_key() -> None:
    d = Driver({"steps": [noop("a")]}, defer=True)
    d.tick()
    first = d.calls[0]
    # The operator restarts: nothing is in flight any more.
    d.in_flight.clear()
    d.tick()
    again = d.calls[-1]
    assert again.resumed and not first.resumed
    assert (again.attempt, again.visit, again.idempotency_key) == (
        first.attempt,
        first.visit,
        first.idempotency_key,
    )
    # While it is in flight, nothing more is issued.
    d.tick()
    assert len(d.calls) == 2


def test_stale_results_are_ignored() -> None:
    d = Driver({"steps": [{"name": "a", "noop": {}, "retry": {"limit": 2}}]}, defer=True)
    d.tick()
    stale = ActionResult(
        step="a", visit=1, attempt=7, ok=False, error=StepError(error_class="X", message="old")
    )
    d.tick(results=(stale,))
    assert d.step_phase("a") == StepPhase.RUNNING


def test_a_finished_workflow_never_moves() -> None:
    d = Driver({"steps": [noop("a")]})
    d.tick()
    before = d.status
    d.at(3600)
    d.approve("a")
    assert d.status == before
    assert [c.step for c in d.consumed] == ["a"]


def test_reconciling_again_without_news_changes_nothing() -> None:
    d = Driver({"steps": [{"name": "gate", "approval": {"timeout": "1h"}}]})
    d.tick()
    before = d.status
    d.at(5)
    assert d.status == before


def test_history_is_bounded() -> None:
    d = Driver({"steps": [{"name": "a", "noop": {}, "next": [{"goto": "a"}]}]})
    d.tick()
    assert d.status is not None and d.status.history is not None
    assert len(d.status.history) == 100
    assert d.status.history[-1].phase == "Failed"


def test_a_cycle_in_depends_on_fails_with_a_clear_reason() -> None:
    d = Driver({"steps": [noop("a", dependsOn=["b"]), noop("b", dependsOn=["a"])]})
    d.tick()
    assert d.phase == "Failed"
    assert "cycle" in (d.status.message or "")  # type: ignore[union-attr]


PYTHON_STEP = {"function": "deploy:wait_for_ip", "queue": "droplets", "checks": ["poll"]}


def test_a_python_poll_ends_when_the_workers_check_holds() -> None:
    d = Driver(
        {
            "steps": [
                {
                    "name": "wait",
                    "python": PYTHON_STEP,
                    "poll": {"until": "checks.poll", "interval": "3s", "maxAttempts": 5},
                }
            ]
        },
        defer=True,
    )
    d.tick()
    [call] = d.calls_for("wait")
    assert call.kind == "python" and not call.local and call.params["queue"] == "droplets"
    d.complete("wait", output={"ip": None}, checks={"poll": False})
    assert d.phase == "Polling" and d.step("wait").checks == {"poll": False}
    d.at(3)
    d.complete("wait", output={"ip": "10.0.0.1"}, checks={"poll": True})
    assert d.phase == "Succeeded" and d.step("wait").output == {"ip": "10.0.0.1"}
    assert d.step("wait").attempts == 2


def test_a_branch_rule_reads_checks_and_the_step_sees_its_approval() -> None:
    d = Driver(
        {
            "steps": [
                {
                    "name": "inspect",
                    "python": {**PYTHON_STEP, "checks": ["branch"]},
                    "next": [
                        {"when": "error == null && (checks.branch)", "continue": True},
                        {"when": "error == null", "goto": "last"},
                    ],
                },
                {
                    "name": "gated",
                    "approval": {},
                    "noop": {"with": {"by": "${{ step.approval.decidedBy }}"}},
                },
                {"name": "last", "noop": {"with": {}}},
            ]
        },
    )
    d.tick()
    d.complete("inspect", output={}, checks={"branch": True})
    assert d.phase == "WaitingForApproval"
    d.approve("gated", decided_by="alice", data={"ticket": 7})
    assert d.step("gated").output == {"by": "alice"}
    assert d.step("gated").approval.data == {"ticket": 7}
    assert d.phase == "Succeeded"

    skipped = Driver({"steps": d.spec.to_wire()["steps"]})
    skipped.tick()
    skipped.complete("inspect", output={}, checks={"branch": False})
    assert skipped.step_phase("gated") == "Skipped" and skipped.phase == "Succeeded"
