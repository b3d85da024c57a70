"""Actions that complete at once without I/O: ``noop`` and ``fail``."""

from __future__ import annotations

from typing import Any

from cerebelum.actions.base import ActionContext, ActionKind
from cerebelum.actions.errors import ActionError


async def noop(params: dict[str, Any], context: ActionContext) -> Any:
    """Return ``with`` (already interpolated) as the output."""
    return params.get("with") or {}


async def fail(params: dict[str, Any], context: ActionContext) -> Any:
    """Fail with the configured error; with ``times``, only that many attempts per visit."""
    times = params.get("times")
    if times is not None and context.attempt > int(times):
        return {"attempt": context.attempt, "recovered": True}
    raise ActionError(
        str(params.get("errorClass", "Transient")),
        str(params.get("message", "failed on purpose")),
        retryable=bool(params.get("retryable", True)),
    )


NOOP = ActionKind("noop", noop, local=True)
FAIL = ActionKind("fail", fail, local=True)
