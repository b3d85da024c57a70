"""The ``python`` action: hand one attempt to a ``cerebelum worker`` through a StepRun.

The operator never imports user code. It creates a StepRun named after the attempt (so a
restarted operator finds it instead of creating a second), then waits for the worker's
result to arrive on the operator's own StepRun watch (one watch for all steps, not one per
step). A cancelled attempt (workflow cancelled, step timeout, goto) deletes its StepRun; the
worker notices and drops the result.

Error classes: whatever the function raised (its exception type, retryable), Timeout,
FunctionNotFound (no worker of the queue has it), Invalid, Forbidden, ApiError.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cerebelum.actions.api_retry import api_call
from cerebelum.actions.base import ActionContext, ActionKind, CheckedOutput
from cerebelum.actions.errors import ActionError, transport_error
from cerebelum.actions.owned import api_error, attempt_name, label_value, owner_reference
from cerebelum.api import API_VERSION, GROUP, VERSION
from cerebelum.api.durations import format_time
from cerebelum.api.steprun import (
    DEFAULT_QUEUE,
    LABEL_QUEUE,
    LABEL_STEP,
    LABEL_WORKFLOW,
    STEPRUN_KIND,
    STEPRUN_PLURAL,
    StepRunPause,
    StepRunPhase,
)
from cerebelum.engine.types import Pause

logger = logging.getLogger("cerebelum.actions")

#: How often a waiting attempt re-reads its StepRun in case the watch missed an event.
_RECHECK_SECONDS = 60.0

Key = tuple[str, str]


@dataclass(frozen=True)
class PythonSettings:
    """Settings of the python action."""

    #: Warn (an Event) when no worker has claimed a step's StepRun this long.
    unclaimed_warning_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PythonSettings:
        seconds = env.get("CEREBELUM_UNCLAIMED_WARNING_SECONDS")
        return cls(float(seconds) if seconds else cls.unclaimed_warning_seconds)


class StepRunResults:
    """Finished StepRuns, delivered from the operator's watch to the attempts awaiting them."""

    def __init__(self) -> None:
        self._waiting: dict[Key, asyncio.Future[dict[str, Any]]] = {}

    def expect(self, namespace: str, name: str) -> asyncio.Future[dict[str, Any]]:
        future = self._waiting.get((namespace, name))
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._waiting[(namespace, name)] = future
        return future

    def forget(self, namespace: str, name: str) -> None:
        self._waiting.pop((namespace, name), None)

    def observe(self, body: dict[str, Any]) -> None:
        """A StepRun changed; wake its attempt if it has finished."""
        meta = body.get("metadata") or {}
        future = self._waiting.get((meta.get("namespace", ""), meta.get("name", "")))
        if future is not None and not future.done() and _finished(body):
            future.set_result(body)


def _finished(body: dict[str, Any]) -> bool:
    """Finished under the current claim. A result under an older claim (a worker that lost
    its lease) is refused: the current claimant's result is still to come."""
    status = body.get("status") or {}
    if status.get("phase") not in (StepRunPhase.SUCCEEDED, StepRunPhase.FAILED):
        return False
    token = status.get("resultClaim")
    if token is not None and token != status.get("claims"):
        meta = body.get("metadata") or {}
        logger.warning(
            "steprun %s/%s: ignoring a result written under claim %s; the current claim is %s",
            meta.get("namespace"),
            meta.get("name"),
            token,
            status.get("claims"),
        )
        return False
    return True


def build_steprun(name: str, params: dict[str, Any], context: ActionContext) -> dict[str, Any]:
    queue = params.get("queue") or DEFAULT_QUEUE
    spec: dict[str, Any] = {
        "workflow": context.workflow,
        "step": context.step,
        "function": params["function"],
        "queue": queue,
        "arguments": params.get("arguments") or {},
        "inputs": context.inputs,
        "attempt": context.attempt,
        "visit": context.visit,
        "idempotencyKey": context.idempotency_key,
    }
    if context.approval:
        spec["approval"] = context.approval
    if context.timeout is not None:
        spec["deadline"] = format_time(datetime.datetime.now(datetime.UTC) + context.timeout)
    if params.get("checks"):
        spec["checks"] = list(params["checks"])
    return {
        "apiVersion": API_VERSION,
        "kind": STEPRUN_KIND,
        "metadata": {
            "name": name,
            "namespace": context.namespace,
            "labels": {
                LABEL_QUEUE: queue,
                LABEL_WORKFLOW: label_value(context.workflow),
                LABEL_STEP: label_value(context.step),
            },
            "ownerReferences": [owner_reference(context)],
        },
        "spec": spec,
    }


def outcome(body: dict[str, Any]) -> Any:
    """The attempt's output from a finished StepRun, or the ActionError it ended with."""
    status = body.get("status") or {}
    if status.get("phase") == StepRunPhase.SUCCEEDED:
        value = (status.get("result") or {}).get("ok")
        checks = status.get("checks")
        pause = pause_from_wire(status.get("pause"))
        if checks or pause:
            return CheckedOutput(value, dict(checks) if checks else None, pause)
        return value
    error = status.get("error") or {}
    raise ActionError(
        error.get("errorClass") or "Error",
        error.get("message") or "the function failed",
        retryable=bool(error.get("retryable", True)),
    )


def pause_from_wire(raw: Any) -> Pause | None:
    """The in-step wait a worker wrote with the result (validated: a worker is not trusted
    to write sane numbers)."""
    if not isinstance(raw, dict):
        return None
    try:
        request = StepRunPause.model_validate(raw)
    except ValueError:
        return None
    if request.approval_type is not None:
        timeout = request.approval_timeout_ms
        return Pause(
            approval=True,
            approval_type=request.approval_type,
            approval_timeout=None if timeout is None else datetime.timedelta(milliseconds=timeout),
        )
    if request.sleep_ms is not None:
        return Pause(sleep=datetime.timedelta(milliseconds=request.sleep_ms))
    return None


async def _look(custom: Any, hub: StepRunResults, namespace: str, name: str) -> dict[str, Any]:
    """Read the StepRun once, in case its result came before anyone waited (or a watch
    event was missed). A list by name: the verb the operator's watch needs anyway."""
    found = await custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, STEPRUN_PLURAL, field_selector=f"metadata.name={name}"
    )
    if not found.get("items"):
        raise ActionError(
            "StepRunDeleted", f"steprun {name} was deleted before it finished", retryable=True
        )
    item: dict[str, Any] = found["items"][0]
    item.setdefault("metadata", {}).setdefault("namespace", namespace)
    hub.observe(item)
    return item


async def python(params: dict[str, Any], context: ActionContext) -> Any:
    if context.kube is None or context.stepruns is None:
        raise ActionError(
            "Invalid", "python steps need the operator's Kubernetes client", retryable=False
        )
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    custom = client.CustomObjectsApi(await context.kube())
    hub: StepRunResults = context.stepruns
    name = attempt_name(context)
    ns = context.namespace
    arrived = hub.expect(ns, name)  # before the create: the result may come back at once
    body = build_steprun(name, params, context)
    try:
        try:
            # Repeated through API outages under the same name: a create that landed before
            # the connection broke is found (409), so one attempt never makes two StepRuns.
            await api_call(
                lambda: custom.create_namespaced_custom_object(
                    GROUP, VERSION, ns, STEPRUN_PLURAL, body
                ),
                f"creating steprun {ns}/{name}",
            )
        except ApiException as exc:
            if exc.status != 409:  # 409: this attempt's StepRun exists (operator restart)
                raise api_error(exc, f"creating steprun {name}") from None
            await api_call(lambda: _look(custom, hub, ns, name), f"reading steprun {ns}/{name}")
        settings = context.settings if isinstance(context.settings, PythonSettings) else None
        warn_after = (
            datetime.timedelta(seconds=settings.unclaimed_warning_seconds) if settings else None
        )
        while True:
            limit = warn_after.total_seconds() if warn_after is not None else _RECHECK_SECONDS
            try:
                body = await asyncio.wait_for(asyncio.shield(arrived), limit)
                break
            except TimeoutError:
                try:
                    item = await _look(custom, hub, ns, name)
                except Exception as exc:
                    if transport_error(exc) is None:
                        raise
                    continue  # the API server is away: the StepRun is still there; wait on
            phase = (item.get("status") or {}).get("phase") or StepRunPhase.PENDING
            if warn_after is not None and phase == StepRunPhase.PENDING and context.warn:
                queue = params.get("queue") or DEFAULT_QUEUE
                await context.warn(
                    "NoWorker",
                    f"step {context.step}: no worker of queue {queue} has claimed steprun {name} "
                    f"in {limit:g}s; run one: cerebelum worker --queue {queue} MODULE",
                )
            warn_after = None  # once: then only the periodic re-check
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.shield(
                custom.delete_namespaced_custom_object(GROUP, VERSION, ns, STEPRUN_PLURAL, name)
            )
        raise
    except ApiException as exc:
        raise api_error(exc, f"reading steprun {name}") from None
    finally:
        hub.forget(ns, name)
    return outcome(body)


KIND = ActionKind("python", python, settings=PythonSettings)
