"""How a ``@step`` function is called and what it gave is read: one function, so the
worker (on the cluster) and the local runner (``wf.execute``) cannot disagree.

What it returns is read through Cerebelum's envelope (``{"ok": v}`` passes v on,
``{"error": r}`` fails with r); an in-step ``sleep``/``wait_for_approval`` comes back as a
pause, which ``pause_request`` turns into what a StepRun's result carries.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from cerebelum.api.status import StepError
from cerebelum.api.steprun import MAX_PAUSE_MS, StepRunPause
from cerebelum.sdk.context import Context
from cerebelum.sdk.results import ApprovalMarker, SleepMarker, WorkflowMarker, outcome
from cerebelum.sdk.steps import StepDef

_MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class StepOutcome:
    ok: bool
    value: Any = None
    checks: dict[str, bool] | None = None
    error: StepError | None = None
    #: The step ended with ``await sleep(...)``/``await wait_for_approval(...)``.
    pause: WorkflowMarker | None = None
    #: The exception the step raised, for a caller in the same process (the local runner).
    exception: BaseException | None = field(default=None, compare=False)


def _error(
    error_class: str, message: str, *, retryable: bool, exception: BaseException | None = None
) -> StepOutcome:
    return StepOutcome(
        ok=False,
        error=StepError(
            error_class=error_class, message=message[:_MESSAGE_LIMIT], retryable=retryable
        ),
        exception=exception,
    )


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
        return _error(
            type(exc).__name__, str(exc) or type(exc).__name__, retryable=True, exception=exc
        )
    except Exception as exc:
        return _error(
            type(exc).__name__, str(exc) or type(exc).__name__, retryable=True, exception=exc
        )
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
