"""What a step's return value means, as Cerebelum defines it, and the markers of in-step waits.

Cerebelum wraps what a step returns in an envelope: ``{"ok": value}`` is a success with
``value``, ``{"error": reason}`` a failure with ``reason``, anything else a success with
itself. The worker, the local runner and a direct call all read results through
``outcome()``, so the three can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class WorkflowMarker(Exception):
    """Raised by ``await sleep(...)`` or ``await wait_for_approval(...)`` inside a step: the
    step ends there with ``data`` as its output, and the workflow waits before going on."""

    data: Any = None


class SleepMarker(WorkflowMarker):
    def __init__(self, duration_ms: int, data: Any = None) -> None:
        self.duration_ms = duration_ms
        self.data = {} if data is None else data
        super().__init__(f"Sleep requested for {duration_ms}ms")


class ApprovalMarker(WorkflowMarker):
    def __init__(
        self, approval_type: str = "manual", data: Any = None, timeout_ms: int | None = None
    ) -> None:
        self.approval_type = approval_type
        self.data = {} if data is None else data
        self.timeout_ms = timeout_ms
        super().__init__(f"Approval requested: {approval_type}")


@dataclass(frozen=True)
class Outcome:
    """A step's result read through the envelope: the output passed on, or the error."""

    ok: bool
    value: Any = None
    error: str | None = None


def outcome(returned: Any) -> Outcome:
    """``{"error": r}`` (r not None) fails with ``str(r)``; ``{"ok": v}`` succeeds with v;
    any other value succeeds with itself (Cerebelum checks "error" first, then "ok")."""
    if isinstance(returned, dict):
        if returned.get("error") is not None:
            error = returned["error"]
            return Outcome(ok=False, error=str(error))
        if "ok" in returned:
            return Outcome(ok=True, value=returned["ok"])
    return Outcome(ok=True, value=returned)


def envelope(returned: Any) -> Any:
    """The value as Cerebelum's wrapper returns it: an envelope stays, anything else is
    wrapped in ``{"ok": ...}``."""
    if isinstance(returned, dict) and ("ok" in returned or "error" in returned):
        return returned
    return {"ok": returned}
