"""The pure workflow engine: a state machine with no I/O and no clock."""

from cerebelum.engine.machine import reconcile
from cerebelum.engine.types import (
    ActionCall,
    ActionResult,
    ApprovalDecision,
    EventRecord,
    Outcome,
    Pause,
    WorkflowMeta,
)

__all__ = [
    "ActionCall",
    "ActionResult",
    "ApprovalDecision",
    "EventRecord",
    "Outcome",
    "Pause",
    "WorkflowMeta",
    "reconcile",
]
