"""Cerebelum's ``DSLSerializer``: a workflow's structure as plain data, and as JSON.

Cerebelum serializes to a blueprint for its Core; here the serialized form that matters is
the Workflow manifest, so ``serialize_to_json`` gives that, and ``to_workflow_definition``
gives the structure Cerebelum's tests read (ids, timeline, steps by name).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cerebelum.sdk.steps import StepDef
from cerebelum.sdk.workflow import WorkflowBuilder, WorkflowDef


@dataclass(frozen=True)
class WorkflowDefinition:
    id: str
    #: Every step name in timeline order.
    timeline: list[str]
    #: The timeline with parallel groups as lists of names.
    timeline_structure: list[str | list[str]]
    #: Every step (timeline and handlers) by name.
    steps_metadata: dict[str, StepDef]
    inputs: dict[str, Any] = field(default_factory=dict)


class DSLSerializer:
    @staticmethod
    def to_workflow_definition(workflow_name: str, builder: WorkflowBuilder) -> WorkflowDefinition:
        line = builder.line
        groups = line.groups if line is not None else []
        steps = [s for g in groups for s in g] + [s for h in builder.handlers for s in h]
        return WorkflowDefinition(
            id=workflow_name,
            timeline=[s.name for g in groups for s in g],
            timeline_structure=[g[0].name if len(g) == 1 else [s.name for s in g] for g in groups],
            steps_metadata={s.name: s for s in steps},
        )

    @staticmethod
    def to_manifest(wf: WorkflowDef, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        return wf.render(inputs)

    @staticmethod
    def serialize_to_json(workflow: WorkflowDef | str, builder: Any = None) -> str:
        """The Workflow manifest as JSON: ``serialize_to_json(wf)``; Cerebelum's
        ``(name, builder)`` form gives the structure instead (there is no manifest without
        the @workflow)."""
        if isinstance(workflow, WorkflowDef):
            return json.dumps(workflow.render(), indent=2)
        definition = DSLSerializer.to_workflow_definition(workflow, builder)
        return json.dumps(
            {
                "id": definition.id,
                "timeline": definition.timeline,
                "timeline_structure": definition.timeline_structure,
                "steps": {n: s.dependencies for n, s in definition.steps_metadata.items()},
            },
            indent=2,
        )
