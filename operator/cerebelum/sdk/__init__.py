"""The Python DSL: Cerebelum-compatible ``@step``/``@workflow``, with ``@sleep``, ``@poll``,
``@approval`` and ``@retry``, rendered to Workflow manifests. Python steps run in
``cerebelum worker`` processes, never in the operator; ``wf.execute()`` runs a workflow
locally on the same engine with a virtual clock."""

from cerebelum.sdk.client import (
    ApprovalInfo,
    ExecutionClient,
    ExecutionState,
    ExecutionStatus,
    SleepInfo,
    StepStatus,
)
from cerebelum.sdk.context import Context
from cerebelum.sdk.declarative import (
    approval_step,
    callback_step,
    digitalocean_step,
    http_step,
    job_step,
    output_step,
    sleep_step,
    ssh_step,
    tcp_step,
)
from cerebelum.sdk.helpers import ProgressReporter, poll, retry, sleep, wait_for_approval
from cerebelum.sdk.local import ExecutionError, ExecutionResult
from cerebelum.sdk.registry import StepRegistry, WorkflowRegistry
from cerebelum.sdk.results import ApprovalMarker, SleepMarker, WorkflowMarker
from cerebelum.sdk.steps import (
    FUNCTIONS,
    DefinitionError,
    ParallelStepGroup,
    StepComposition,
    StepDef,
    StepDefinitionError,
    Timeline,
    WorkflowDefinitionError,
    approval,
    callback,
    step,
)
from cerebelum.sdk.workflow import (
    DSLLocalExecutor,
    ValidationReport,
    WorkflowBuilder,
    WorkflowDef,
    back_to,
    cel,
    skip_to,
    workflow,
)

__all__ = [
    "FUNCTIONS",
    "ApprovalInfo",
    "ApprovalMarker",
    "Context",
    "DSLLocalExecutor",
    "DefinitionError",
    "ExecutionClient",
    "ExecutionError",
    "ExecutionResult",
    "ExecutionState",
    "ExecutionStatus",
    "ParallelStepGroup",
    "ProgressReporter",
    "SleepInfo",
    "SleepMarker",
    "StepComposition",
    "StepDef",
    "StepDefinitionError",
    "StepRegistry",
    "StepStatus",
    "Timeline",
    "ValidationReport",
    "WorkflowBuilder",
    "WorkflowDef",
    "WorkflowDefinitionError",
    "WorkflowMarker",
    "WorkflowRegistry",
    "approval",
    "approval_step",
    "back_to",
    "callback",
    "callback_step",
    "cel",
    "digitalocean_step",
    "http_step",
    "job_step",
    "output_step",
    "poll",
    "retry",
    "skip_to",
    "sleep",
    "sleep_step",
    "ssh_step",
    "step",
    "tcp_step",
    "wait_for_approval",
    "workflow",
]
