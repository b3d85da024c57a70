"""The pure workflow engine: a state machine with no I/O and no clock.

``reconcile`` is one pass; ``settle`` (``engine.driver``) is the loop every caller uses.
"""

from cerebelum.engine.driver import Runner, Settled, settle
from cerebelum.engine.machine import reconcile
from cerebelum.engine.types import (
    ActionCall,
    ActionCatalog,
    ActionResult,
    ApprovalDecision,
    EventRecord,
    Input,
    Outcome,
    Pause,
    WorkflowMeta,
)

__all__ = [
    "ActionCall",
    "ActionCatalog",
    "ActionResult",
    "ApprovalDecision",
    "EventRecord",
    "Input",
    "Outcome",
    "Pause",
    "Runner",
    "Settled",
    "WorkflowMeta",
    "reconcile",
    "settle",
]
