"""Call one step function, in a daemon thread with an event loop of its own.

Step code is user code: it may call blocking clients (pydo, paramiko) or even ``time.sleep``
inside its ``async def``. On its own thread and loop it holds only that thread; the worker's
loop keeps renewing leases and serving other steps. Daemon threads also let a worker that
is told to stop exit even if a step never returns (its lease then runs out and another
worker takes the step over).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cerebelum.api.status import StepError
from cerebelum.api.steprun import MAX_PAUSE_MS, StepRunPause
from cerebelum.sdk.context import Context
from cerebelum.sdk.results import ApprovalMarker, SleepMarker, WorkflowMarker, outcome
from cerebelum.sdk.steps import StepDef

T = TypeVar("T")

_MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class StepOutcome:
    ok: bool
    value: Any = None
    checks: dict[str, bool] | None = None
    error: StepError | None = None
    #: The step ended with ``await sleep(...)``/``await wait_for_approval(...)``.
    pause: WorkflowMarker | None = None


def _error(error_class: str, message: str, *, retryable: bool) -> StepOutcome:
    return StepOutcome(
        ok=False,
        error=StepError(
            error_class=error_class, message=message[:_MESSAGE_LIMIT], retryable=retryable
        ),
    )


def call_step(
    stepdef: StepDef,
    context: Context,
    arguments: dict[str, Any],
    checks: list[str],
    timeout: float | None,
) -> StepOutcome:
    """Run the step to its end on this thread (with a loop of its own)."""
    return asyncio.run(run_step(stepdef, context, arguments, checks, timeout))


async def run_step(
    stepdef: StepDef,
    context: Context,
    arguments: dict[str, Any],
    checks: list[str],
    timeout: float | None,
) -> StepOutcome:
    """Run the step; every outcome becomes a StepOutcome. What it returns is read through
    Cerebelum's envelope (``{"ok": v}`` passes v on, ``{"error": r}`` fails with r); a
    ``sleep``/``wait_for_approval`` marker comes back as ``pause``, with its data as output.
    The worker and the local runner both call this, so they cannot disagree."""
    assert stepdef.fn is not None
    fn = stepdef.fn
    kwargs = {name: arguments.get(name) for name in stepdef.parameters}
    expired = False

    async def attempt() -> Any:
        nonlocal expired
        if timeout is None:
            return await fn(context, **kwargs)
        async with asyncio.timeout(timeout) as limit:
            try:
                return await fn(context, **kwargs)
            finally:
                expired = limit.expired()

    pause: WorkflowMarker | None = None
    try:
        returned = await attempt()
    except WorkflowMarker as marker:
        pause, returned = marker, marker.data
    except TimeoutError as exc:
        if expired:
            return _error("Timeout", f"step took longer than {timeout:g}s", retryable=True)
        return _error(type(exc).__name__, str(exc) or type(exc).__name__, retryable=True)
    except Exception as exc:
        return _error(type(exc).__name__, str(exc) or type(exc).__name__, retryable=True)
    read = outcome(returned)
    if not read.ok:
        return _error("ReturnedError", read.error or "error", retryable=True)
    value = read.value
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        return _error(
            "OutputNotJSON", f"the step returned {type(value).__name__}: {exc}", retryable=False
        )
    results: dict[str, bool] = {}
    for name in checks:
        condition = stepdef.checks.get(name)
        if condition is None:
            return _error(
                "CheckNotFound",
                f"this worker's {stepdef.function} has no {name} condition (an older version?)",
                retryable=False,
            )
        try:
            results[name] = bool(condition(value))
        except Exception as exc:
            return _error(
                "CheckFailed",
                f"the {name} condition raised {type(exc).__name__}: {exc}",
                retryable=False,
            )
    return StepOutcome(ok=True, value=value, checks=results or None, pause=pause)


def pause_request(marker: WorkflowMarker | None) -> StepRunPause | None:
    """How a step's in-step wait is written into its StepRun's result."""
    if isinstance(marker, SleepMarker):
        return StepRunPause(sleep_ms=min(max(marker.duration_ms, 0), MAX_PAUSE_MS))
    if isinstance(marker, ApprovalMarker):
        timeout = marker.timeout_ms
        return StepRunPause(
            approval_type=str(marker.approval_type)[:63] or "manual",
            approval_timeout_ms=None if timeout is None else min(max(timeout, 0), MAX_PAUSE_MS),
        )
    return None


async def in_daemon_thread(function: Callable[[], T]) -> T:
    """Await ``function()`` run on a new daemon thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def target() -> None:
        setter: Callable[[Any], None]
        value: Any
        try:
            setter, value = future.set_result, function()
        except BaseException as exc:  # delivered to the awaiting side, not lost in a thread
            setter, value = future.set_exception, exc
        with contextlib.suppress(RuntimeError):  # the worker's loop is gone: nobody waits
            loop.call_soon_threadsafe(deliver, setter, value)

    threading.Thread(target=target, name="cerebelum-step", daemon=True).start()
    return await future
