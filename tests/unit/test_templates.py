"""Template inputs: the one check the webhook, the operator and `cerebelum submit` share."""

from __future__ import annotations

from typing import Any

import pytest

from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.workflowtemplate import InvalidInputs, resolve

TEMPLATE: dict[str, Any] = {
    "metadata": {"name": "deploy", "resourceVersion": "41"},
    "spec": {
        "inputs": {
            "properties": {
                "region": {"type": "string", "enum": ["nyc3", "ams3"], "default": "nyc3"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 5},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                "debug": {"type": "boolean", "default": False},
            },
            "required": ["replicas"],
        },
        "activeDeadline": "1h",
        "steps": [{"name": "a", "noop": {"with": {"r": "${{ inputs.region }}"}}}],
        "finally": [{"name": "z", "noop": {}}],
    },
}


def test_defaults_are_applied_and_the_steps_and_version_are_copied() -> None:
    spec = resolve(TEMPLATE, {"templateRef": {"name": "deploy"}, "inputs": {"replicas": 2}})
    assert spec["inputs"] == {"replicas": 2, "region": "nyc3", "debug": False}
    assert spec["steps"] == TEMPLATE["spec"]["steps"]
    assert spec["finally"] == TEMPLATE["spec"]["finally"]
    assert spec["activeDeadline"] == "1h"
    assert spec["templateRef"] == {"name": "deploy", "resourceVersion": "41"}
    assert not WorkflowSpec.model_validate(spec).unresolved


def test_the_workflows_own_settings_win_over_the_templates() -> None:
    spec = resolve(
        TEMPLATE,
        {"templateRef": {"name": "deploy"}, "inputs": {"replicas": 1}, "activeDeadline": "5m"},
    )
    assert spec["activeDeadline"] == "5m"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "spec.inputs.replicas: required, and not given"),
        ({"replicas": "2"}, "spec.inputs.replicas: must be of type integer, not str '2'"),
        ({"replicas": True}, "spec.inputs.replicas: must be of type integer"),
        ({"replicas": 9}, "spec.inputs.replicas: must be at most 5, not 9"),
        ({"replicas": 0}, "spec.inputs.replicas: must be at least 1, not 0"),
        ({"replicas": 1, "region": "mars"}, "spec.inputs.region: must be one of ['nyc3', 'ams3']"),
        ({"replicas": 1, "name": "Web1"}, "spec.inputs.name: must match '^[a-z]+$'"),
        ({"replicas": 1, "name": "abcdefghij"}, "spec.inputs.name: must be at most 8 characters"),
        ({"replicas": 1, "colour": "red"}, "spec.inputs.colour: the template has no such input"),
    ],
)
def test_a_bad_input_is_refused_naming_the_field(inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputs) as info:
        resolve(TEMPLATE, {"templateRef": {"name": "deploy"}, "inputs": inputs})
    assert message in str(info.value)


def test_every_bad_input_is_named_at_once() -> None:
    with pytest.raises(InvalidInputs) as info:
        resolve(TEMPLATE, {"templateRef": {"name": "deploy"}, "inputs": {"region": 3}})
    assert "spec.inputs.replicas" in str(info.value) and "spec.inputs.region" in str(info.value)


def test_an_invalid_template_is_named() -> None:
    broken = {"metadata": {"name": "bad"}, "spec": {"steps": []}}
    with pytest.raises(ValueError, match="WorkflowTemplate bad is invalid"):
        resolve(broken, {"templateRef": {"name": "bad"}})


def test_a_workflow_needs_steps_or_a_template() -> None:
    with pytest.raises(ValueError, match=r"spec.steps \(at least 1\) or spec.templateRef"):
        WorkflowSpec.model_validate({})
    assert WorkflowSpec.model_validate({"templateRef": {"name": "t"}}).unresolved
