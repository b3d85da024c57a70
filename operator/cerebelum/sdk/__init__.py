"""The Python DSL: Cerebelum-compatible ``@step``/``@workflow``, with ``@sleep``, ``@poll``,
``@approval`` and ``@retry``, rendered to Workflow manifests. Python steps run in
``cerebelum worker`` processes, never in the operator."""

from cerebelum.sdk.context import Context
from cerebelum.sdk.declarative import (
    approval_step,
    digitalocean_step,
    http_step,
    job_step,
    output_step,
    sleep_step,
    tcp_step,
)
from cerebelum.sdk.steps import (
    FUNCTIONS,
    DefinitionError,
    StepDef,
    Timeline,
    approval,
    poll,
    retry,
    sleep,
    step,
)
from cerebelum.sdk.workflow import (
    WorkflowBuilder,
    WorkflowDef,
    back_to,
    cel,
    skip_to,
    workflow,
)

__all__ = [
    "FUNCTIONS",
    "Context",
    "DefinitionError",
    "StepDef",
    "Timeline",
    "WorkflowBuilder",
    "WorkflowDef",
    "approval",
    "approval_step",
    "back_to",
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
    "step",
    "tcp_step",
    "workflow",
]
