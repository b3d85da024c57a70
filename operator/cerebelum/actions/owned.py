"""The objects an attempt creates in the cluster (Jobs, StepRuns): their names, their
owner, and what the API's refusals mean for the step.

Names derive from the attempt's identity, so an operator that restarts mid-attempt finds the
object it created instead of making a second one. The Workflow owns them, so deleting it
deletes them (where a garbage collector runs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from typing import Any

from cerebelum.actions.base import ActionContext
from cerebelum.actions.errors import ActionError
from cerebelum.api import API_VERSION, KIND


def attempt_name(context: ActionContext) -> str:
    """A DNS-1123 name, unique per attempt and the same when the attempt is re-issued."""
    digest = hashlib.sha256(f"{context.idempotency_key}/{context.attempt}".encode()).hexdigest()[:8]
    stem = (
        re.sub(r"[^a-z0-9-]+", "-", f"{context.workflow}-{context.step}".lower())
        .strip("-")[:52]
        .strip("-")
    )
    return f"{stem}-{digest}"


def label_value(value: str) -> str:
    """A string cut to what a label value may hold."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:63].strip("-_.")


def owner_reference(context: ActionContext) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": context.workflow,
        "uid": context.workflow_uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def api_error(exc: Any, what: str) -> ActionError:
    """A refused API call as the step's error: 403 and 400/422 are final, the rest retryable."""
    message = ""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        message = json.loads(exc.body).get("message", "")
    if exc.status == 403:
        return ActionError("Forbidden", f"{what}: {message or 'forbidden'}", retryable=False)
    if exc.status in (400, 422):
        return ActionError("Invalid", f"{what}: {message or 'invalid'}", retryable=False)
    return ActionError("ApiError", f"{what}: HTTP {exc.status}", retryable=True)
