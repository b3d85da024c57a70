"""Generate the CustomResourceDefinitions (Workflow, StepRun, WorkflowTemplate, CronWorkflow) from the pydantic models.

``python -m cerebelum.api.crd`` writes ``crds/`` and the Helm chart's ``crds/``; a test fails
when either is stale.
Pydantic emits JSON Schema; the API server wants a *structural* OpenAPI v3 schema, so refs
are inlined, ``Optional`` unions collapse to their type, and free-form fields are marked
``x-kubernetes-preserve-unknown-fields``.

The Workflow is written four times in its life by the operator (each a status write) for
each time a user writes it, so its CRD is shaped for the API server's cost of a status
write (``bench/status_cost.py`` measures it):

- the spec's cross-field rules (the ``rules(...)`` of the models) are not in the CRD, where
  the API server would evaluate every one of them on every status write, but in a
  ValidatingAdmissionPolicy beside it (``build_policy``), which the API server applies to
  creates and spec changes only, with the same messages and field paths;
- the status is typed at its top level only: what lies below (each step's status, the
  history, notices) is one documented opaque value per field, its fields listed in the
  description ``kubectl explain`` prints. Only the operator writes status, and it reads it
  back through its own models.

Together with status writes that leave the spec out, a status write costs the API server
about 40 % less CPU. WorkflowTemplates and CronWorkflows, seldom written by the operator,
keep the rules in their CRDs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cerebelum.api import GROUP, KIND, PLURAL, VERSION
from cerebelum.api.base import ApiModel
from cerebelum.api.cronworkflow import (
    CRON_KIND,
    CRON_PLURAL,
    CronWorkflowSpec,
    CronWorkflowStatus,
)
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import WorkflowStatus
from cerebelum.api.steprun import STEPRUN_KIND, STEPRUN_PLURAL, StepRunSpec, StepRunStatus
from cerebelum.api.workflowtemplate import TEMPLATE_KIND, TEMPLATE_PLURAL, WorkflowTemplateSpec

#: Short names no built-in kind and no common workflow CRD uses (Argo's CronWorkflow is
#: ``cwf``, CertificateSigningRequest ``csr``): ``kubectl get cbwf`` is never ambiguous.
WORKFLOW_SHORT_NAME = "cbwf"
STEPRUN_SHORT_NAME = "cbsr"
TEMPLATE_SHORT_NAME = "cbwt"
CRON_SHORT_NAME = "cbcron"
CRD_FILE = f"{PLURAL}.{GROUP}.yaml"
STEPRUN_CRD_FILE = f"{STEPRUN_PLURAL}.{GROUP}.yaml"
TEMPLATE_CRD_FILE = f"{TEMPLATE_PLURAL}.{GROUP}.yaml"
CRON_CRD_FILE = f"{CRON_PLURAL}.{GROUP}.yaml"
#: The Workflow's cross-field rules: a ValidatingAdmissionPolicy and its binding.
POLICY_NAME = f"{PLURAL}.{GROUP}"
POLICY_FILE = f"{PLURAL}.{GROUP}.policy.yaml"
_DROP = {"title", "default"}
#: Status fields kept typed below the top level: Kubernetes' own Condition shape, which
#: tools read by convention.
_TYPED_STATUS = frozenset({"conditions"})


def _plain(text: str) -> str:
    """Docstrings to explain-friendly text: paragraphs kept, line breaks and RST quotes not."""
    text = re.sub(r"(?<!\n)\n(?!\n)", " ", text.replace("``", ""))
    return re.sub(r" {2,}", " ", text).strip()


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Inline refs, collapse Optional, drop keys a CRD cannot carry."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        merged = {**target, **node}
        # Both texts teach: the field's role first, then what the type means.
        if node.get("description") and target.get("description"):
            merged["description"] = f"{node['description']}\n\n{target['description']}"
        return _structural(merged, defs)
    if "anyOf" in node and node.get("x-kubernetes-int-or-string"):
        node.pop("anyOf")  # the marker alone says "integer or string"
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express union {options} in a structural schema")
        return _structural({**options[0], **node}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "description":
            out[key] = _plain(value)
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "additionalProperties":
            if isinstance(value, dict) and value:
                out[key] = _structural(value, defs)
        else:
            out[key] = _structural(value, defs)
    if out.get("x-kubernetes-preserve-unknown-fields") and "properties" not in out:
        out.pop("additionalProperties", None)
        if out.get("type") not in (None, "object"):
            out.pop("type")
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _schema_of(model: type[ApiModel], mode: str) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode=mode)  # type: ignore[arg-type]
    defs = raw.pop("$defs", {})
    schema = _structural(raw, defs)
    assert isinstance(schema, dict)
    return schema


def _object_schema(
    spec_model: type[ApiModel], status_model: type[ApiModel] | None, description: str
) -> dict[str, Any]:
    spec = _schema_of(spec_model, "validation")
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string", "description": "APIVersion of this object."},
        "kind": {"type": "string", "description": "Kind of this object."},
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if status_model is not None:
        status = _schema_of(status_model, "serialization")
        status.pop("required", None)  # status is written by its controller, field by field
        # One writer (the operator, or a worker for a StepRun) replaces the status whole, so
        # server-side apply's field tracking has nothing to merge: as one atomic field it
        # costs the API server a fifth less CPU per status write (bench/status_cost.py),
        # and the schema stays whole for validation and kubectl explain.
        status["x-kubernetes-map-type"] = "atomic"
        properties["status"] = status
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": ["spec"],
    }


def _type_word(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "integer or string"
    kind = str(node.get("type") or "any")
    if kind == "array" and isinstance(node.get("items"), dict):
        return f"list of {_type_word(node['items'])}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type_word(node['additionalProperties'])}"
    return kind


def _field_lines(node: dict[str, Any], prefix: str = "") -> list[str]:
    """One line per field below ``node`` (nested ones dotted), for a lean field's text."""
    lines = []
    for name, child in (node.get("properties") or {}).items():
        path = f"{prefix}{name}"
        text = str(child.get("description") or "").replace("\n\n", " ")
        if child.get("enum"):
            text += f" One of: {', '.join(map(str, child['enum']))}."
        lines.append(f"- {path} ({_type_word(child)}): {text}".rstrip())
        below = child.get("items") if child.get("type") == "array" else child
        if isinstance(child.get("additionalProperties"), dict):
            below = child["additionalProperties"]
        if isinstance(below, dict) and below.get("properties"):
            lines += _field_lines(below, f"{path}[]." if below is not child else f"{path}.")
    return lines


def _lean(node: dict[str, Any]) -> dict[str, Any]:
    """A status field as one opaque value whose description lists what it holds: the API
    server then neither validates nor prunes inside it on each status write."""
    inner = node
    shape = ""
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        inner, shape = node["items"], "Each item has"
    elif isinstance(node.get("additionalProperties"), dict):
        inner, shape = node["additionalProperties"], "Each value has"
    elif node.get("properties"):
        shape = "It has"
    if not inner.get("properties"):
        return node
    text = str(node.get("description") or "")
    if inner is not node and inner.get("description"):
        text += f"\n\n{inner['description']}"
    text += f"\n\n{shape} these fields:\n" + "\n".join(_field_lines(inner))
    opaque = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if node.get("type") == "array":
        item = str(inner.get("description") or "One item: its fields are listed above.")
        return {"type": "array", "description": text, "items": {**opaque, "description": item}}
    return {**opaque, "description": text}


def _lean_status(status: dict[str, Any]) -> dict[str, Any]:
    props = {
        name: node if name in _TYPED_STATUS else _lean(node)
        for name, node in status.get("properties", {}).items()
    }
    return {**status, "properties": props}


_SELF = re.compile(r"\bself\b")
#: A step of a rule's place: a property's name, or None for "each item of a list".
Segment = str | None


def _take_rules(
    node: dict[str, Any], at: tuple[Segment, ...]
) -> list[tuple[tuple[Segment, ...], dict[str, str]]]:
    """Remove every ``x-kubernetes-validations`` rule at or below ``node``; return each with
    its place."""
    taken = [(at, rule) for rule in node.pop("x-kubernetes-validations", [])]
    for name, child in (node.get("properties") or {}).items():
        taken += _take_rules(child, (*at, name))
    if isinstance(node.get("items"), dict):
        taken += _take_rules(node["items"], (*at, None))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and "x-kubernetes-validations" in json.dumps(extra):
        raise ValueError("a rule below a map's values has no place in the policy")
    return taken


def _holds(base: str, at: tuple[Segment, ...], rule: str, depth: int = 0) -> str:
    """CEL, true when ``rule`` (written on ``self``) holds at every place ``at`` reaches from
    ``base``; absent places hold, as absent fields do in a CRD."""
    if not at:
        return f"({_SELF.sub(base, rule)})"
    head, rest = at[0], at[1:]
    if head is None:
        item = f"e{depth}"
        return f"{base}.all({item}, {_holds(item, rest, rule, depth + 1)})"
    child = f"{base}.{head}"
    return f"(!has({child}) || {_holds(child, rest, rule, depth)})"


def _where(base: str, at: tuple[Segment, ...], rule: str, depth: int = 0) -> list[str]:
    """CEL string parts naming the first place where ``rule`` fails: list indices as the
    API server writes them for a CRD's rules (``spec.steps[0].next[1]``)."""
    if not at:
        return []
    head, rest = at[0], at[1:]
    if head is None:
        item = f"e{depth}"
        index = f"{base}.map({item}, {_holds(item, rest, rule, depth + 1)}).indexOf(false)"
        return [
            '"["',
            f"string({index})",
            '"]"',
            *_where(f"{base}[{index}]", rest, rule, depth + 1),
        ]
    return [json.dumps(f".{head}"), *_where(f"{base}.{head}", rest, rule, depth)]


def _failure(at: tuple[Segment, ...], rule: dict[str, str]) -> str:
    """CEL: the rule's message at the first place it fails ("" where it holds everywhere)."""
    tail = f"{rule.get('fieldPath', '')}: {rule['message']}"
    where = " + ".join(['"spec"', *_where("object.spec", at, rule["rule"]), json.dumps(tail)])
    return f'({_holds("object.spec", at, rule["rule"])} ? "" : {where})'


def _group(at: tuple[Segment, ...]) -> tuple[Segment, ...]:
    """Rules are checked together per list they sit under (up to its first ``[*]``)."""
    return at[: at.index(None) + 1] if None in at else ()


def _validations(rules: list[tuple[tuple[Segment, ...], dict[str, str]]]) -> list[dict[str, str]]:
    """One validation per group of rules: the API server walks the list once and evaluates
    one program for the group, instead of one program and one walk per rule (47 of them
    cost it 1.4 ms per create). Only when it fails does the message expression find every
    rule broken, each at the first place it fails; the API server evaluates it even when the
    check passed, so it starts with the check."""
    groups: dict[tuple[Segment, ...], list[tuple[tuple[Segment, ...], dict[str, str]]]] = {}
    for at, rule in rules:
        groups.setdefault(_group(at), []).append((at, rule))
    out = []
    for prefix, members in groups.items():
        if prefix:
            inner = " && ".join(
                _holds("e0", at[len(prefix) :], rule["rule"], 1) for at, rule in members
            )
            expression = _holds("object.spec", prefix[:-1], f"self.all(e0, {inner})")
        else:
            expression = " && ".join(_holds("object.spec", at, r["rule"]) for at, r in members)
        pattern = "".join("[*]" if seg is None else f".{seg}" for seg in prefix)
        failures = ", ".join(_failure(at, rule) for at, rule in members)
        out.append(
            {
                "expression": expression,
                # The API server evaluates message expressions for every request, passed
                # or not: this one is the group's check again until that fails.
                "messageExpression": (
                    f'({expression}) ? "" : [{failures}].filter(m, m != "").join("; ")'
                ),
                # Used only if the messageExpression cannot be evaluated.
                "message": f"spec{pattern} breaks a rule of the policy {POLICY_NAME}",
            }
        )
    return out


def build_policy(
    rules: list[tuple[tuple[Segment, ...], dict[str, str]]] | None = None,
) -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy (and its binding, every namespace) that checks a
    Workflow's spec against the models' cross-field rules when it is created or its spec
    changes. It matches ``workflows`` only, so the operator's status writes
    (``workflows/status``) never pay for it."""
    if rules is None:
        rules = _workflow_schema()[1]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [PLURAL],
                    }
                ]
            },
            "matchConditions": [
                {
                    "name": "spec-written",
                    "expression": "oldObject == null || object.spec != oldObject.spec",
                }
            ],
            "validations": _validations(rules),
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME},
        "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def _column(name: str, path: str, type_: str = "string", priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


def _crd(
    kind: str, plural: str, short_name: str, schema: dict[str, Any], columns: list[dict[str, Any]]
) -> dict[str, Any]:
    """A namespaced CRD of the group; with a status, a status subresource and a selectable
    phase."""
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True}
    if "status" in schema["properties"]:
        version["subresources"] = {"status": {}}
        if "phase" in schema["properties"]["status"].get("properties", {}):
            version["selectableFields"] = [{"jsonPath": ".status.phase"}]
    version["additionalPrinterColumns"] = [
        *columns,
        _column("Age", ".metadata.creationTimestamp", "date"),
    ]
    version["schema"] = {"openAPIV3Schema": schema}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": ["cerebelum"],
            },
            "versions": [version],
        },
    }


def _workflow_schema() -> tuple[dict[str, Any], list[tuple[tuple[Segment, ...], dict[str, str]]]]:
    """The Workflow's schema as the CRD carries it, and the rules taken out of its spec."""
    schema = _object_schema(
        WorkflowSpec,
        WorkflowStatus,
        "A durable workflow: steps run by the Cerebelum operator. Its status is the polling "
        "API. Cross-field rules of the spec are checked by the ValidatingAdmissionPolicy "
        f"{POLICY_NAME}, installed with this CRD.",
    )
    rules = _take_rules(schema["properties"]["spec"], ())
    schema["properties"]["status"] = _lean_status(schema["properties"]["status"])
    return schema, rules


def build_crd() -> dict[str, Any]:
    schema = _workflow_schema()[0]
    columns = [
        _column("Phase", ".status.phase"),
        _column("Step", ".status.currentStep"),
        _column("Progress", ".status.progress"),
        _column("Wake", ".status.nextWakeAt", priority=1),
        _column("Message", ".status.message", priority=1),
    ]
    return _crd(KIND, PLURAL, WORKFLOW_SHORT_NAME, schema, columns)


def build_steprun_crd() -> dict[str, Any]:
    schema = _object_schema(
        StepRunSpec,
        StepRunStatus,
        "One attempt of a Python step, created by the operator and run by a cerebelum worker.",
    )
    columns = [
        _column("Workflow", ".spec.workflow"),
        _column("Step", ".spec.step"),
        _column("Queue", ".spec.queue"),
        _column("Attempt", ".spec.attempt", "integer"),
        _column("Phase", ".status.phase"),
        _column("Worker", ".status.claimedBy"),
        _column("Function", ".spec.function", priority=1),
    ]
    return _crd(STEPRUN_KIND, STEPRUN_PLURAL, STEPRUN_SHORT_NAME, schema, columns)


def build_template_crd() -> dict[str, Any]:
    schema = _object_schema(
        WorkflowTemplateSpec,
        None,
        "Steps and an inputs schema that Workflows run with spec.templateRef (or `cerebelum "
        "submit --from template/NAME`). A running workflow keeps the version it started with.",
    )
    columns = [_column("Required inputs", ".spec.inputs.required")]
    return _crd(TEMPLATE_KIND, TEMPLATE_PLURAL, TEMPLATE_SHORT_NAME, schema, columns)


def build_cron_crd() -> dict[str, Any]:
    schema = _object_schema(
        CronWorkflowSpec,
        CronWorkflowStatus,
        "Starts a Workflow on a schedule, with CronJob's semantics: one Workflow per "
        "scheduled time, named after it; after downtime only the most recent missed run.",
    )
    columns = [
        _column("Schedule", ".spec.schedule"),
        _column("Suspend", ".spec.suspend", "boolean"),
        _column("Last", ".status.lastScheduleTime", "date"),
        _column("Next", ".status.nextScheduleTime"),
        _column("Policy", ".spec.concurrencyPolicy", priority=1),
        _column("Message", ".status.message", priority=1),
    ]
    return _crd(CRON_KIND, CRON_PLURAL, CRON_SHORT_NAME, schema, columns)


_HEADER = "# Generated by `python -m cerebelum.api.crd` from cerebelum/api; do not edit.\n"


def render_all() -> dict[str, str]:
    """File name -> text of every CRD, and of the Workflow's policy."""
    policy = "---\n".join(yaml.safe_dump(o, sort_keys=False, width=100) for o in build_policy())
    return {
        CRD_FILE: _HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=100),
        POLICY_FILE: _HEADER + policy,
        STEPRUN_CRD_FILE: _HEADER + yaml.safe_dump(build_steprun_crd(), sort_keys=False, width=100),
        CRON_CRD_FILE: _HEADER + yaml.safe_dump(build_cron_crd(), sort_keys=False, width=100),
        TEMPLATE_CRD_FILE: _HEADER
        + yaml.safe_dump(build_template_crd(), sort_keys=False, width=100),
    }


def render() -> str:
    return "---\n".join(render_all().values())


#: Where the CRD is written: the repository's crds/ and the Helm chart's crds/.
OUTPUTS = ("crds", "charts/cerebelum-operator/crds")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cerebelum.api.crd", description=__doc__)
    parser.add_argument("--root", default=".", help="repository root (default: .)")
    parser.add_argument("--stdout", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    if args.stdout:
        sys.stdout.write(render())
        return 0
    for folder in OUTPUTS:
        out = Path(args.root) / folder
        out.mkdir(parents=True, exist_ok=True)
        for name, text in render_all().items():
            (out / name).write_text(text)
            print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
