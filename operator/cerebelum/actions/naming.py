"""Names of the objects an attempt creates (Jobs, StepRuns).

Derived from the attempt's identity, so an operator that restarts mid-attempt finds the
object it created instead of making a second one.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cerebelum.actions.base import ActionContext


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
