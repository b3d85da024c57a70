"""The worker's pure parts: who may claim a StepRun, and how one step call turns out."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

from cerebelum import Context, poll, step
from cerebelum.api.durations import format_time
from cerebelum.api.steprun import StepRunPhase, StepRunStatus
from cerebelum.worker import lease
from cerebelum.worker.runner import call_step, in_daemon_thread

NOW = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=datetime.UTC)
LEASE = datetime.timedelta(seconds=15)
CONTEXT = Context(workflow_name="w", step_name="s", attempt=3)


@step
async def returns(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": inputs, "attempt": context.attempt}


@step
async def raises(context: Context) -> None:
    raise ConnectionError("refused by 10.0.0.1:22")


@step
async def raises_timeout(context: Context) -> None:
    raise TimeoutError("droplet IP not ready after 90s")


@step
async def sleeps(context: Context) -> None:
    await asyncio.sleep(5)


@step
async def returns_a_set(context: Context) -> set[int]:
    return {1}


@step
@poll(condition=lambda r: r["n"] > 2, interval=1, max_attempts=5)
async def counts(context: Context) -> dict[str, Any]:
    return {"n": context.attempt}


@step
@poll(condition=lambda r: r["missing"], interval=1, max_attempts=5)
async def bad_condition(context: Context) -> dict[str, Any]:
    return {}


def test_pending_is_claimable_and_a_live_lease_is_not() -> None:
    assert lease.claimable(StepRunStatus(), NOW)
    claimed = lease.claim(StepRunStatus(), "w1", NOW, LEASE)
    assert claimed.phase == StepRunPhase.RUNNING and claimed.claims == 1
    assert claimed.lease_expires_at == format_time(NOW + LEASE)
    assert not lease.claimable(claimed, NOW + LEASE - datetime.timedelta(seconds=1))
    assert lease.claimable(claimed, NOW + LEASE)


def test_a_takeover_counts_and_the_old_holder_no_longer_holds() -> None:
    first = lease.claim(StepRunStatus(), "w1", NOW, LEASE)
    second = lease.claim(first, "w2", NOW + LEASE, LEASE)
    assert second.claims == 2 and "after the lease of w1 ran out" in (second.message or "")
    assert lease.holds(second, "w2", 2)
    assert not lease.holds(second, "w1", 1)
    renewed = lease.renew(second, NOW + 2 * LEASE, LEASE)
    assert renewed.lease_expires_at == format_time(NOW + 3 * LEASE) and lease.holds(
        renewed, "w2", 2
    )


def test_finished_steps_are_never_claimable() -> None:
    running = lease.claim(StepRunStatus(), "w1", NOW, LEASE)
    done = lease.succeeded(running, {"ok": 1}, None, NOW)
    assert done.result == {"ok": {"ok": 1}} and not lease.claimable(done, NOW + 10 * LEASE)
    failed = lease.failed(running, raises_error(), NOW)
    assert failed.result == {"error": "boom"} and not lease.claimable(failed, NOW + 10 * LEASE)


def raises_error() -> Any:
    from cerebelum.api.status import StepError

    return StepError(error_class="X", message="boom")


def test_a_return_value_is_the_output_and_the_attempt_is_passed() -> None:
    outcome = call_step(returns, CONTEXT, {"inputs": {"a": 1}}, [], None)
    assert outcome.ok and outcome.value == {"inputs": {"a": 1}, "attempt": 3}


def test_an_exception_becomes_a_retryable_error_of_its_type() -> None:
    outcome = call_step(raises, CONTEXT, {}, [], None)
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.error_class == "ConnectionError" and outcome.error.retryable
    assert outcome.error.message == "refused by 10.0.0.1:22"


def test_a_timeout_is_told_apart_from_a_timeout_error_the_step_raised() -> None:
    own = call_step(raises_timeout, CONTEXT, {}, [], 5)
    assert own.error is not None and own.error.error_class == "TimeoutError"
    limited = call_step(sleeps, CONTEXT, {}, [], 0.05)
    assert limited.error is not None and limited.error.error_class == "Timeout"
    assert limited.error.message == "step took longer than 0.05s"


def test_output_must_be_json() -> None:
    outcome = call_step(returns_a_set, CONTEXT, {}, [], None)
    assert outcome.error is not None and outcome.error.error_class == "OutputNotJSON"
    assert not outcome.error.retryable


def test_python_conditions_are_evaluated_on_the_output() -> None:
    early = call_step(
        counts, Context(workflow_name="w", step_name="s", attempt=1), {}, ["poll"], None
    )
    assert early.ok and early.checks == {"poll": False}
    later = call_step(counts, CONTEXT, {}, ["poll"], None)
    assert later.checks == {"poll": True}
    missing = call_step(counts, CONTEXT, {}, ["branch"], None)
    assert missing.error is not None and missing.error.error_class == "CheckNotFound"
    broken = call_step(bad_condition, CONTEXT, {}, ["poll"], None)
    assert broken.error is not None and broken.error.error_class == "CheckFailed"
    assert "KeyError" in broken.error.message


async def test_a_blocking_step_does_not_block_the_callers_loop() -> None:
    started = time.monotonic()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())

    def blocking() -> str:
        time.sleep(0.3)
        return "done"

    result = await in_daemon_thread(blocking)
    ticker.cancel()
    assert result == "done" and time.monotonic() - started >= 0.3
    assert ticks >= 10  # the loop kept running while the thread blocked


def test_a_result_carries_its_claim_and_one_under_an_older_claim_is_stale() -> None:
    from cerebelum.actions.python import StepRunResults, _finished

    first = lease.claim(StepRunStatus(), "a", NOW, LEASE)
    second = lease.claim(first, "b", NOW + 2 * LEASE, LEASE)  # a's lease ran out: b took over
    late = lease.succeeded(first, {"from": "a"}, None, NOW + 3 * LEASE)
    assert late.result_claim == 1
    # Had a's late write landed on b's claim, it would be stale: the operator ignores it,
    # and b still holds the claim and may write the real result.
    landed = late.model_copy(update={"claims": second.claims, "claimed_by": "b"})
    assert lease.stale_result(landed)
    assert lease.holds(landed, "b", 2) and not lease.holds(landed, "a", 1)
    body = {"metadata": {"namespace": "ns", "name": "r"}, "status": landed.to_wire()}
    assert not _finished(body)
    good = lease.succeeded(second, {"from": "b"}, None, NOW + 3 * LEASE)
    assert good.result_claim == 2 and not lease.stale_result(good)

    async def deliver() -> Any:
        hub = StepRunResults()
        future = hub.expect("ns", "r")
        hub.observe(body)
        assert not future.done()
        hub.observe({**body, "status": good.to_wire()})
        return (await future)["status"]["result"]

    assert asyncio.run(deliver()) == {"ok": {"from": "b"}}
