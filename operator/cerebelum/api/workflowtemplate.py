"""WorkflowTemplate: a workflow's steps with a schema of its inputs, and the one pure
function that makes a Workflow's spec from it (``resolve``).

The webhook (``kubectl apply`` refuses bad inputs), the operator (which copies the steps
into the Workflow at its start, so later edits of the template never reach a running
workflow) and ``cerebelum submit`` all check inputs here, so they say the same thing.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import Field, ValidationError, model_validator

from cerebelum.api.base import ApiModel, describe_errors
from cerebelum.api.spec import BODY_FIELDS, BODY_RULES, WorkflowBody, WorkflowSpec, rules

TEMPLATE_KIND = "WorkflowTemplate"
TEMPLATE_PLURAL = "workflowtemplates"


class InputType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    OBJECT = "object"
    ARRAY = "array"


class InputProperty(ApiModel):
    """One input: a JSON Schema subset (type, enum, bounds, pattern, default)."""

    type: InputType | None = Field(default=None, description="The JSON type (unset: any).")
    description: str | None = Field(default=None, max_length=1024, description="What it is for.")
    default: Any = Field(
        default=None,
        description="The value when the workflow gives none (checked like a given value).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    enum: list[Any] | None = Field(
        default=None,
        max_length=100,
        description="The allowed values.",
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    minimum: float | None = Field(default=None, description="Least number allowed.")
    maximum: float | None = Field(default=None, description="Greatest number allowed.")
    min_length: int | None = Field(default=None, ge=0, description="Shortest string allowed.")
    max_length: int | None = Field(default=None, ge=0, description="Longest string allowed.")
    pattern: str | None = Field(
        default=None, max_length=1024, description="A regular expression strings must match."
    )


class InputsSchema(ApiModel):
    """The inputs a template takes, as a JSON Schema object."""

    properties: dict[str, InputProperty] = Field(
        default_factory=dict, description="Each input, by name."
    )
    required: list[str] | None = Field(default=None, description="Inputs a workflow must give.")
    additional_properties: bool | None = Field(
        default=None,
        description="Accept inputs the schema does not name (default false: refused).",
    )


class WorkflowTemplateSpec(
    WorkflowBody,
    json_schema_extra=rules(
        *BODY_RULES,
        ("has(self.steps) && size(self.steps) > 0", "a template needs at least 1 step", ".steps"),
    ),
):
    """Steps to run many times, with a schema of their inputs."""

    inputs: InputsSchema | None = Field(
        default=None, description="The inputs a Workflow made from this template may give."
    )

    @model_validator(mode="after")
    def _has_steps(self) -> WorkflowTemplateSpec:
        if not self.steps:
            raise ValueError("a template needs at least 1 step")
        return self


class InvalidInputs(ValueError):
    """The inputs do not match the template's schema; the message names each field."""


_JSON_TYPES: dict[InputType, tuple[type, ...]] = {
    InputType.STRING: (str,),
    InputType.INTEGER: (int,),
    InputType.NUMBER: (int, float),
    InputType.BOOLEAN: (bool,),
    InputType.OBJECT: (dict,),
    InputType.ARRAY: (list,),
}


def _value_problem(prop: InputProperty, value: Any) -> str | None:
    if prop.type is not None:
        is_bool = isinstance(value, bool)
        wanted = _JSON_TYPES[prop.type]
        if not isinstance(value, wanted) or (is_bool and prop.type != InputType.BOOLEAN):
            return f"must be of type {prop.type}, not {type(value).__name__} {value!r}"[:300]
    if prop.enum is not None and value not in prop.enum:
        return f"must be one of {prop.enum}, not {value!r}"[:300]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if prop.minimum is not None and value < prop.minimum:
            return f"must be at least {prop.minimum:g}, not {value}"
        if prop.maximum is not None and value > prop.maximum:
            return f"must be at most {prop.maximum:g}, not {value}"
    if isinstance(value, str):
        if prop.min_length is not None and len(value) < prop.min_length:
            return f"must be at least {prop.min_length} characters long"
        if prop.max_length is not None and len(value) > prop.max_length:
            return f"must be at most {prop.max_length} characters long"
        if prop.pattern is not None:
            try:
                matched = re.search(prop.pattern, value) is not None
            except re.error as exc:
                return f"the template's pattern {prop.pattern!r} is not a valid regex: {exc}"
            if not matched:
                return f"must match {prop.pattern!r}"
    return None


def check_inputs(schema: InputsSchema | None, given: dict[str, Any] | None) -> dict[str, Any]:
    """The inputs with the schema's defaults applied; raises ``InvalidInputs`` naming every
    field that is wrong (``spec.inputs.size: must be one of [...]``)."""
    schema = schema or InputsSchema(additional_properties=True)
    values = dict(given or {})
    problems = []
    for name, defined in schema.properties.items():
        if name not in values and defined.default is not None:
            values[name] = defined.default
    for name in schema.required or []:
        if name not in values:
            problems.append(f"spec.inputs.{name}: required, and not given")
    for name, value in values.items():
        prop: InputProperty | None = schema.properties.get(name)
        if prop is None:
            if not schema.additional_properties:
                known = ", ".join(schema.properties) or "none"
                problems.append(f"spec.inputs.{name}: the template has no such input ({known})")
            continue
        problem = _value_problem(prop, value)
        if problem:
            problems.append(f"spec.inputs.{name}: {problem}")
    if problems:
        raise InvalidInputs("; ".join(problems))
    return values


def resolve(template: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The spec of a Workflow made from ``template`` (a WorkflowTemplate object): its own
    fields (inputs, suspend, cancel...) kept, the template's steps and settings copied in
    unless the workflow sets them, the inputs checked and defaulted, and
    ``templateRef.resourceVersion`` recording the version copied.

    Raises ``InvalidInputs`` for inputs the schema refuses, ``ValueError`` for a template
    that is not valid itself.
    """
    try:
        body = WorkflowTemplateSpec.model_validate(template.get("spec") or {})
    except ValidationError as exc:
        name = (template.get("metadata") or {}).get("name")
        raise ValueError(
            f"WorkflowTemplate {name} is invalid: {describe_errors(exc, 'spec.')}"
        ) from None
    wire = body.to_wire()
    resolved = {k: v for k, v in spec.items() if k != "inputs" and v not in (None, [])}
    for field in BODY_FIELDS:
        if field in wire and field not in resolved:
            resolved[field] = wire[field]
    inputs = check_inputs(body.inputs, spec.get("inputs"))
    if inputs:
        resolved["inputs"] = inputs
    ref = dict(resolved.get("templateRef") or {})
    ref["resourceVersion"] = str((template.get("metadata") or {}).get("resourceVersion", ""))
    resolved["templateRef"] = ref
    WorkflowSpec.model_validate(resolved)  # what is written must be a spec the engine runs
    return resolved
