"""Hostile input to the pure parts: oversized expressions, out-of-range values, hand-edited
status. Each case must end in a clear message and a usable status, never an exception."""

from __future__ import annotations

import datetime
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from cerebelum.actions import params_problem
from cerebelum.actions.errors import transport_error
from cerebelum.api.durations import parse_duration
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import StepPhase
from cerebelum.expressions import ExpressionError, evaluate, interpolate
from cerebelum.kube.failures import FailureBackoff, describe_failure
from cerebelum.kube.settings import BackoffSettings
from tests.unit.engine_driver import Driver, seconds_after_t0

HUGE = "${{ " + " + ".join(["1"] * 15000) + " }}"


def test_an_expression_that_would_crash_the_parser_is_refused_in_a_child_process() -> None:
    """The native CEL parser dies (SIGSEGV) on ~15,000 terms: the bounds must stop it first.
    Run in a child so that, were the guard broken, the test fails instead of the run."""
    code = (
        "from cerebelum.expressions import interpolate, ExpressionError\n"
        "big = '${{ ' + ' + '.join(['1'] * 15000) + ' }}'\n"
        "try:\n"
        "    interpolate({'x': big}, {}, field='spec.steps[0].noop.with')\n"
        "except ExpressionError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "refused: spec.steps[0].noop.with.x" in done.stdout
    assert "over the limit" in done.stdout
    assert len(done.stdout) < 600, "the message quotes a preview, not 60 KB of expression"


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        (" + ".join(["1"] * 600), "characters long, over the limit of 1024"),
        ("(" * 40 + "1" + ")" * 40, "nests brackets 40 deep, over the limit of 32"),
    ],
)
def test_oversized_conditions_are_refused_before_parsing(expression: str, problem: str) -> None:
    with pytest.raises(ExpressionError, match="over the limit") as caught:
        evaluate(expression, {}, field="spec.steps[0].when")
    assert problem in str(caught.value)
    assert str(caught.value).startswith("spec.steps[0].when: ")


def test_brackets_inside_string_literals_do_not_count_as_nesting() -> None:
    assert evaluate("'" + "(" * 100 + "' == '" + "(" * 100 + "'", {}, field="f") is True


def test_many_templates_in_one_string_are_refused() -> None:
    text = " ".join(["${{ 1 }}"] * 40)
    with pytest.raises(ExpressionError, match="40 \\$\\{\\{ \\}\\} expressions"):
        interpolate(text, {}, field="f")
    assert interpolate(" ".join(["${{ 1 }}"] * 3), {}, field="f") == "1 1 1"


def _invalid(spec: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        WorkflowSpec.model_validate(spec)
    return str(caught.value)


def test_the_models_refuse_what_the_engine_would_refuse() -> None:
    assert "over the limit of 16384" in _invalid(
        {"steps": [{"name": "a", "noop": {"with": {"x": HUGE}}}]}
    )
    assert "http.body.deep[0]" in _invalid(
        {
            "steps": [
                {
                    "name": "a",
                    "http": {"url": "http://x", "body": {"deep": [" ".join(["${{ 1 }}"] * 40)]}},
                }
            ]
        }
    )
    many = {f"k{i}": "${{ '" + "x" * 1000 + "' }}" for i in range(70)}
    assert "add up to" in _invalid({"steps": [{"name": "a", "noop": {"with": many}}]})
    assert "nests brackets" in _invalid(
        {"steps": [{"name": "a", "when": "(" * 40 + "true" + ")" * 40, "noop": {}}]}
    )


@pytest.mark.parametrize("field", ["sleep", "activeDeadline"])
def test_durations_over_a_year_are_refused(field: str) -> None:
    spec: dict[str, Any] = {"steps": [{"name": "a", "sleep": {"duration": "1s"}}]}
    if field == "sleep":
        spec["steps"][0]["sleep"]["duration"] = "3000000d"
    else:
        spec["activeDeadline"] = "3000000d"
    assert "'3000000d' is longer than the limit of 366d" in _invalid(spec)
    assert parse_duration("366d") == datetime.timedelta(days=366)
    with pytest.raises(ValueError, match="limit"):
        parse_duration("367d")


def test_tcp_port_and_http_url_are_checked_after_interpolation() -> None:
    assert params_problem("tcp", {"port": "${{ inputs.p }}"}, {"port": "abc"}) == (
        "tcp.port: 'abc' (from '${{ inputs.p }}') is not a port number"
    )
    assert "is not between 1 and 65535" in (params_problem("tcp", {}, {"port": 70000}) or "")
    assert params_problem("tcp", {}, {"port": "22"}) is None
    assert "only http and https" in (params_problem("http", {}, {"url": "ftp://h/x"}) or "")
    assert params_problem("http", {}, {"url": "https://h/x"}) is None


def test_a_port_expression_that_is_not_a_number_fails_the_step_naming_it() -> None:
    driver = Driver(
        {
            "inputs": {"port": "abc"},
            "steps": [{"name": "ssh", "tcp": {"host": "h", "port": "${{ inputs.port }}"}}],
        }
    )
    driver.tick()
    assert driver.phase == "Failed"
    error = driver.step("ssh").error
    assert error.error_class == "InvalidAction" and not error.retryable
    assert error.message == (
        "spec.steps[0].tcp.port: 'abc' (from '${{ inputs.port }}') is not a port number"
    )


def test_an_ftp_url_fails_at_once_without_retries() -> None:
    driver = Driver(
        {"steps": [{"name": "get", "http": {"url": "ftp://h/f"}, "retry": {"limit": 5}}]}
    )
    driver.tick()
    assert driver.phase == "Failed"
    assert driver.step("get").error.error_class == "InvalidAction"
    assert driver.calls == []


# -- status edited by hand ----------------------------------------------------------------


def test_an_unreadable_sleep_until_is_recomputed_from_the_visit_start() -> None:
    driver = Driver({"steps": [{"name": "nap", "sleep": {"duration": "60s"}}]})
    driver.tick()
    repairs = driver.edit_status(lambda w: w["steps"]["nap"].update(sleepUntil="not-a-time"))
    assert any("sleepUntil recomputed" in r for r in repairs)
    assert seconds_after_t0(driver.step("nap").sleep_until) == 60
    assert driver.at(59).wake_at is not None and driver.phase == "Sleeping"
    driver.at(60)
    assert driver.phase == "Succeeded"


def test_a_removed_sleep_until_is_recomputed_not_slept_forever() -> None:
    driver = Driver({"steps": [{"name": "nap", "sleep": {"duration": "60s"}}]})
    driver.tick()
    driver.edit_status(lambda w: w["steps"]["nap"].pop("sleepUntil"))
    assert driver.run_to_end() and driver.phase == "Succeeded"
    assert seconds_after_t0(driver.status.finished_at) == 60  # type: ignore[union-attr]


def test_a_sleep_only_step_set_to_running_starts_its_visit_again() -> None:
    driver = Driver({"steps": [{"name": "nap", "sleep": {"duration": "10s"}}]})
    driver.tick()
    repairs = driver.edit_status(lambda w: w["steps"]["nap"].update(phase="Running"))
    assert repairs == ["step nap is Running but has no action: its visit starts again"]
    driver.at(5)
    assert driver.step_phase("nap") == StepPhase.SLEEPING
    driver.run_to_end()
    assert driver.phase == "Succeeded"


def test_succeeded_written_by_hand_does_not_end_a_workflow_whose_steps_never_ran() -> None:
    driver = Driver({"steps": [{"name": "gate", "approval": {}}, {"name": "after", "noop": {}}]})
    driver.tick()
    repairs = driver.edit_status(lambda w: w.update(phase="Succeeded"))
    assert repairs and "did not finish" in repairs[0]
    driver.tick()
    assert driver.phase == "WaitingForApproval"
    condition = driver.status.conditions[0]  # type: ignore[union-attr,index]
    assert (condition.type, condition.status) == ("Succeeded", "Unknown")
    driver.approve("gate")
    assert driver.phase == "Succeeded" and driver.step("after").phase == StepPhase.SUCCEEDED


def test_a_value_the_model_refuses_is_dropped_and_said() -> None:
    driver = Driver({"steps": [{"name": "a", "approval": {}}]})
    driver.tick()
    repairs = driver.edit_status(lambda w: w["steps"]["a"].update(attempts="many"))
    assert repairs and repairs[0].startswith("status.steps.a.attempts")
    driver.approve("a")
    assert driver.phase == "Succeeded"


def test_the_engine_fails_the_workflow_instead_of_raising() -> None:
    driver = Driver({"steps": [{"name": "a", "sleep": {"duration": "10s"}}]})
    driver.tick()
    # Bypass the repair: the engine alone must still not raise on what it cannot use.
    assert driver.status is not None
    driver.status.steps["a"].sleep_until = "garbage"  # type: ignore[assignment]
    driver.at(1)
    assert driver.phase == "Failed"
    assert (driver.status.message or "").startswith(
        "the engine cannot go on with this workflow: ValueError"
    )
    assert driver.status.history[-1].reason == "EngineError"  # type: ignore[index]


# -- the shell's error taxonomy and backoff -------------------------------------------------


def test_connection_errors_of_every_client_are_retryable() -> None:
    from azure.core.exceptions import ServiceRequestError
    from kubernetes_asyncio.client.exceptions import ApiException

    for exc in (
        aiohttp.ClientConnectionError("reset"),
        ConnectionRefusedError(),
        ServiceRequestError("no route"),
        ApiException(status=503),
        ApiException(status=0),
    ):
        error = transport_error(exc)
        assert error is not None and error.retryable, exc
    assert transport_error(ApiException(status=403)) is None
    assert transport_error(KeyError("x")) is None
    assert "unreachable" in describe_failure(aiohttp.ClientConnectionError())


def test_reconcile_retries_back_off_exponentially_with_jitter_up_to_a_cap() -> None:
    runtime = FailureBackoff(BackoffSettings(retry_base_seconds=0.5, retry_max_seconds=60))
    waits = [[runtime.backoff(n).total_seconds() for n in range(1, 12)] for _ in range(50)]
    for n, ceiling in enumerate([0.5, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60]):
        column = [w[n] for w in waits]
        assert all(ceiling / 2 <= w <= ceiling for w in column), (n, column)
        assert len(set(column)) > 1, "jittered"
