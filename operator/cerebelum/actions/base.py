"""The action interface every action kind implements.

An action is an async callable. It gets its interpolated parameters and an ``ActionContext``,
and returns a JSON-able output or raises ``ActionError``, saying whether a retry could help.
It must be cancellable: the operator cancels it when a workflow is cancelled or a goto moves
on. Non-idempotent actions use ``idempotency_key``: it is the same for every attempt of one
visit of a step, so a retry or a restart can find what an earlier attempt did.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cerebelum.actions.errors import ActionError, transport_error
from cerebelum.actions.secrets import NoSecrets, SecretSource, scrub
from cerebelum.api.status import StepError
from cerebelum.engine.types import ActionCall, ActionResult, Pause

logger = logging.getLogger("cerebelum.actions")


@dataclass(frozen=True)
class ActionContext:
    """Who is calling: enough to name resources and to deduplicate side effects."""

    namespace: str
    workflow: str
    workflow_uid: str
    step: str
    visit: int
    attempt: int
    idempotency_key: str
    #: Where actions read Secrets; its revealed values are scrubbed from results.
    secrets: SecretSource = field(default_factory=NoSecrets)
    #: This action kind's own settings (the ``settings`` type its ``ActionKind`` names).
    settings: Any = None
    #: The operator's typed Kubernetes API client, for job and python steps: awaited, it
    #: gives a kubernetes_asyncio ApiClient (imported on first use, not at the start).
    kube: Callable[[], Awaitable[Any]] | None = None
    #: The workflow's inputs (handed to Python steps as context.inputs).
    inputs: dict[str, Any] = field(default_factory=dict)
    #: The step's approval record, if it has a gate (context.approval of Python steps).
    approval: dict[str, Any] | None = None
    #: The limit for this attempt (the step's timeout), if any.
    timeout: datetime.timedelta | None = None
    #: Where finished StepRuns arrive from the operator's watch (python steps).
    stepruns: Any = None
    #: What earlier steps pinned for the rest of the workflow (``status.pins``).
    pins: Mapping[str, str] = field(default_factory=dict)
    #: Post a Warning Event on the workflow: (reason, message).
    warn: Callable[[str, str], Awaitable[None]] | None = None


@dataclass(frozen=True)
class CheckedOutput:
    """An output together with conditions evaluated on it elsewhere (by a worker)."""

    value: Any
    checks: dict[str, bool] | None = None
    #: The step asked the workflow to wait after it (a Python step's in-step wait).
    pause: Pause | None = None
    #: Values to keep for the rest of the workflow (``status.pins``).
    pins: dict[str, str] | None = None


class Action(Protocol):
    async def __call__(self, params: dict[str, Any], context: ActionContext) -> Any: ...


#: Why interpolated parameters cannot be used: (raw as written, interpolated) -> problem.
Check = Callable[[dict[str, Any], dict[str, Any]], str | None]


@dataclass(frozen=True)
class ActionKind:
    """One action kind, as its module declares it: everything else reads it from here."""

    name: str
    run: Action
    #: Completes at once without I/O, so it may run inside a reconciliation.
    local: bool = False
    #: Checked before the attempt is issued: a problem fails the step, never retried.
    check: Check | None = None
    #: The kind's settings (a frozen dataclass with ``from_env(environ)``), if it has any.
    settings: Any = None


def source(raw: Any) -> str:
    """How a problem names where a bad value came from: `` (from '${{ ... }}')``."""
    return f" (from {raw!r})" if isinstance(raw, str) and "${{" in raw else ""


async def execute(action: Action, call: ActionCall, context: ActionContext) -> ActionResult:
    """Run one attempt and return its result with every revealed secret scrubbed out."""
    result, trace = await _attempt(action, call, context)
    secrets = context.secrets.revealed | frozenset(call.secrets)
    if trace is not None:  # a bug, not a user error: the one place its traceback is logged
        logger.error(
            "step %s of %s/%s: the %s action raised unexpectedly\n%s",
            call.step,
            context.namespace,
            context.workflow,
            call.kind,
            scrub(trace, secrets),
        )
    if not secrets:
        return result
    error = result.error
    if error is not None:
        error = error.model_copy(
            update={
                "message": scrub(error.message, secrets),
                "details": scrub(error.details, secrets),
            }
        )
    return replace(result, output=scrub(result.output, secrets), error=error)


async def _attempt(
    action: Action, call: ActionCall, context: ActionContext
) -> tuple[ActionResult, str | None]:
    """Run one attempt with its timeout and turn every outcome into an ``ActionResult``.

    Connection problems of any client are retryable. Other unexpected exceptions become a
    non-retryable ``InternalError`` naming only the exception type (their text may carry
    request details); their traceback comes back for the caller to log, scrubbed.
    """

    def failed(
        error: StepError,
        retry_after: datetime.timedelta | None = None,
        pins: dict[str, str] | None = None,
    ) -> ActionResult:
        return ActionResult(
            step=call.step,
            visit=call.visit,
            attempt=call.attempt,
            ok=False,
            error=error,
            retry_after=retry_after,
            pins=pins,
        )

    def from_error(exc: ActionError) -> ActionResult:
        error = StepError(
            error_class=exc.error_class,
            message=exc.message,
            retryable=exc.retryable,
            details=exc.details,
        )
        return failed(error, exc.retry_after, exc.pins)

    try:
        if call.timeout is not None:
            output = await asyncio.wait_for(
                action(call.params, context), call.timeout.total_seconds()
            )
        else:
            output = await action(call.params, context)
    except TimeoutError:
        seconds = call.timeout.total_seconds() if call.timeout else 0
        return failed(
            StepError(
                error_class="Timeout",
                message=f"attempt took longer than {seconds:g}s",
                retryable=True,
            )
        ), None
    except ActionError as exc:
        return from_error(exc), None
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        transport = transport_error(exc)
        if transport is not None:
            return from_error(transport), None
        error = StepError(
            error_class="InternalError",
            message=f"the {call.kind} action raised {type(exc).__name__}",
            retryable=False,
        )
        return failed(error), "".join(traceback.format_exception(exc))
    checks = pause = pins = None
    if isinstance(output, CheckedOutput):
        output, checks, pause, pins = output.value, output.checks, output.pause, output.pins
    return ActionResult(
        step=call.step,
        visit=call.visit,
        attempt=call.attempt,
        ok=True,
        output=output,
        checks=checks,
        pause=pause,
        pins=pins,
    ), None
