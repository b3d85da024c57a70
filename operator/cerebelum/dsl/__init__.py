"""``cerebelum.dsl``: the module Cerebelum's users import the DSL from, with its names.

Everything here is the SDK of ``cerebelum.sdk``, under Cerebelum's names where they differ
(``StepMetadata`` is our ``StepDef``, ``WorkflowMetadata`` our ``WorkflowDef``,
``DSLError`` our ``DefinitionError``). The README's SDK table says, for each name, whether
it is identical to Cerebelum's or a superset.
"""

from cerebelum.sdk import (
    Context,
    DefinitionError,
    DSLLocalExecutor,
    ExecutionError,
    ParallelStepGroup,
    ProgressReporter,
    StepComposition,
    StepDef,
    StepDefinitionError,
    StepRegistry,
    ValidationReport,
    WorkflowBuilder,
    WorkflowDef,
    WorkflowDefinitionError,
    WorkflowRegistry,
    poll,
    retry,
    sleep,
    step,
    wait_for_approval,
    workflow,
)
from cerebelum.sdk.serializer import DSLSerializer, WorkflowDefinition
from cerebelum.sdk.steps import DependencyError, StepExecutionError
from cerebelum.sdk.workflow import BranchRule, DivergeRule, WorkflowValidator

StepMetadata = StepDef
WorkflowMetadata = WorkflowDef
DSLError = DefinitionError

__all__ = [
    "BranchRule",
    "Context",
    "DSLError",
    "DSLLocalExecutor",
    "DSLSerializer",
    "DependencyError",
    "DivergeRule",
    "ExecutionError",
    "ParallelStepGroup",
    "ProgressReporter",
    "StepComposition",
    "StepDefinitionError",
    "StepExecutionError",
    "StepMetadata",
    "StepRegistry",
    "ValidationReport",
    "WorkflowBuilder",
    "WorkflowDefinition",
    "WorkflowDefinitionError",
    "WorkflowMetadata",
    "WorkflowRegistry",
    "WorkflowValidator",
    "poll",
    "retry",
    "sleep",
    "step",
    "wait_for_approval",
    "workflow",
]
