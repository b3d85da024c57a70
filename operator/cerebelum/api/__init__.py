"""Pydantic models of the Workflow API: the single source of the CRD schema."""

from cerebelum.api.spec import (
    ApprovalSpec,
    NextRule,
    PollSpec,
    RetrySpec,
    SleepSpec,
    Step,
    WorkflowSpec,
)
from cerebelum.api.status import (
    ApprovalStatus,
    Condition,
    StepError,
    StepPhase,
    StepStatus,
    Transition,
    WorkflowPhase,
    WorkflowStatus,
)

GROUP = "cerebelum.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Workflow"
PLURAL = "workflows"

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ApprovalSpec",
    "ApprovalStatus",
    "Condition",
    "NextRule",
    "PollSpec",
    "RetrySpec",
    "SleepSpec",
    "Step",
    "StepError",
    "StepPhase",
    "StepStatus",
    "Transition",
    "WorkflowPhase",
    "WorkflowSpec",
    "WorkflowStatus",
]
