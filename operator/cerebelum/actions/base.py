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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from cerebelum.api.status import StepError
from cerebelum.engine.types import ActionCall, ActionResult, Pause

if TYPE_CHECKING:
    from cerebelum.actions.secrets import SecretSource

logger = logging.getLogger("cerebelum.actions")


def _no_secrets() -> SecretSource:
    from cerebelum.actions.secrets import NoSecrets

    return NoSecrets()


class ActionError(Exception):
    """A failed attempt. ``error_class`` is what retry.retryOn and next[].when match."""

    def __init__(
        self,
        error_class: str,
        message: str,
        *,
        retryable: bool,
        retry_after: datetime.timedelta | None = None,
    ) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


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
    secrets: SecretSource = field(default_factory=lambda: _no_secrets())
    #: Endpoint of the DigitalOcean API (or a compatible one).
    digitalocean_endpoint: str = "https://api.digitalocean.com"
    #: The operator's Kubernetes API client (a kubernetes_asyncio ApiClient), for job steps.
    kube: Any = None
    #: The workflow's inputs (handed to Python steps as context.inputs).
    inputs: dict[str, Any] = field(default_factory=dict)
    #: The step's approval record, if it has a gate (context.approval of Python steps).
    approval: dict[str, Any] | None = None
    #: The limit for this attempt (the step's timeout), if any.
    timeout: datetime.timedelta | None = None
    #: Where finished StepRuns arrive from the operator's watch (python steps).
    stepruns: Any = None
    #: Post a Warning Event on the workflow: (reason, message).
    warn: Callable[[str, str], Awaitable[None]] | None = None
    #: Warn when a python step's StepRun is still unclaimed after this long.
    unclaimed_warning: datetime.timedelta | None = None


@dataclass(frozen=True)
class CheckedOutput:
    """An output together with conditions evaluated on it elsewhere (by a worker)."""

    value: Any
    checks: dict[str, bool] | None = None
    #: The step asked the workflow to wait after it (a Python step's in-step wait).
    pause: Pause | None = None


class Action(Protocol):
    async def __call__(self, params: dict[str, Any], context: ActionContext) -> Any: ...


async def execute(action: Action, call: ActionCall, context: ActionContext) -> ActionResult:
    """Run one attempt and return its result with every revealed secret scrubbed out."""
    from cerebelum.actions.secrets import scrub

    result, trace = await _attempt(action, call, context)
    secrets = context.secrets.revealed
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
        error = error.model_copy(update={"message": scrub(error.message, secrets)})
    return replace(result, output=scrub(result.output, secrets), error=error)


def transport_error(exc: BaseException) -> ActionError | None:
    """The retryable error a connection problem is, whichever client raised it (aiohttp,
    sockets, pydo's azure-core pipeline, the Kubernetes client), or None if it is not one.

    A connection that fails says nothing about the request, so a retry can always help.
    """
    import aiohttp

    name = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionError):
        return ActionError("ConnectionFailed", f"cannot connect ({name})", retryable=True)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ActionError("Transport", f"the connection failed ({name})", retryable=True)
    for cls in type(exc).__mro__:
        if cls.__module__.startswith("azure.core") and cls.__name__ in (
            "ServiceRequestError",
            "ServiceResponseError",
        ):
            return ActionError("Transport", f"the connection failed ({name})", retryable=True)
        if cls.__name__ == "ApiException" and cls.__module__.startswith("kubernetes_asyncio"):
            status = int(getattr(exc, "status", 0) or 0)
            if status in (0, 429) or status >= 500:
                return ActionError(
                    "ApiError", f"the Kubernetes API answered HTTP {status}", retryable=True
                )
    return None


async def _attempt(
    action: Action, call: ActionCall, context: ActionContext
) -> tuple[ActionResult, str | None]:
    """Run one attempt with its timeout and turn every outcome into an ``ActionResult``.

    Connection problems of any client are retryable. Other unexpected exceptions become a
    non-retryable ``InternalError`` naming only the exception type (their text may carry
    request details); their traceback comes back for the caller to log, scrubbed.
    """

    def failed(error: StepError, retry_after: datetime.timedelta | None = None) -> ActionResult:
        return ActionResult(
            step=call.step,
            visit=call.visit,
            attempt=call.attempt,
            ok=False,
            error=error,
            retry_after=retry_after,
        )

    def from_error(exc: ActionError) -> ActionResult:
        error = StepError(error_class=exc.error_class, message=exc.message, retryable=exc.retryable)
        return failed(error, exc.retry_after)

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
    checks = None
    pause = None
    if isinstance(output, CheckedOutput):
        output, checks, pause = output.value, output.checks, output.pause
    return ActionResult(
        step=call.step,
        visit=call.visit,
        attempt=call.attempt,
        ok=True,
        output=output,
        checks=checks,
        pause=pause,
    ), None
