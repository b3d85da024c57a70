"""Who may approve: the pure rules behind the admission webhook.

A decision is an ``cerebelum.io/approve=STEP`` or ``cerebelum.io/reject=STEP`` annotation
that a request adds or changes. The validating webhook refuses it when the step names
approvers and the requesting user is neither one of the users nor in one of the groups.
The mutating webhook stamps ``cerebelum.io/decided-by`` with the authenticated user, so
status can say who decided; a user cannot set that annotation on their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from cerebelum.api.spec import ApprovalSpec, Approvers
from cerebelum.kube.settings import APPROVAL_DATA, APPROVE, CHOICE, CREATED_BY, DECIDED_BY, REJECT


@dataclass(frozen=True)
class Decision:
    step: str
    verb: str  # "approve" or "reject"


def decisions_in(old: Mapping[str, str] | None, new: Mapping[str, str] | None) -> list[Decision]:
    """Approve/reject annotations this request adds or changes (removals are not decisions)."""
    old, new = old or {}, new or {}
    found = []
    for key, verb in ((APPROVE, "approve"), (REJECT, "reject")):
        value = (new.get(key) or "").strip()
        if value and value != (old.get(key) or "").strip():
            found.append(Decision(step=value, verb=verb))
    return found


def _approvers(spec: Mapping[str, Any], step: str) -> tuple[list[str], list[str]] | None:
    """(users, groups) allowed for ``step``; None when the step does not exist."""
    for candidate in [*(spec.get("steps") or []), *(spec.get("finally") or [])]:
        if candidate.get("name") == step:
            approvers = (candidate.get("approval") or {}).get("approvers") or {}
            return list(approvers.get("users") or []), list(approvers.get("groups") or [])
    return None


def data_refusal(old: Mapping[str, str] | None, new: Mapping[str, str] | None) -> str | None:
    """Why the ``approval-data`` this request sets is refused: it must be JSON, since the
    step receives it parsed (a bare word would reach it as a string nobody meant)."""
    raw = (new or {}).get(APPROVAL_DATA)
    if not raw or raw == (old or {}).get(APPROVAL_DATA):
        return None
    try:
        json.loads(raw)
    except json.JSONDecodeError as exc:
        return (
            f"{APPROVAL_DATA} must be JSON ({exc.msg} at character {exc.pos}): quote text as "
            f"'\"text\"', or give an object such as '{{\"ticket\": 42}}'"
        )
    return None


def refusal(
    spec: Mapping[str, Any], decisions: list[Decision], user: str, groups: list[str]
) -> str | None:
    """Why this user may not make these decisions, or None if they may."""
    for decision in decisions:
        allowed = _approvers(spec, decision.step)
        if allowed is None:
            return f"cerebelum.io/{decision.verb}={decision.step}: the workflow has no step named {decision.step!r}"
        users, allowed_groups = allowed
        if Approvers(users=users, groups=allowed_groups).admits(user, groups):
            continue  # listed, or no list: anyone allowed by RBAC to annotate the workflow
        who = []
        if users:
            who.append(f"users {', '.join(users)}")
        if allowed_groups:
            who.append(f"members of {', '.join(allowed_groups)}")
        return f"{user} may not {decision.verb} step {decision.step!r}: only {' or '.join(who)} may"
    return None


def decided_by_patch(
    old: Mapping[str, str] | None, new: Mapping[str, str] | None, user: str
) -> str | None:
    """The value ``cerebelum.io/decided-by`` must have after this request, if it must change.

    With a decision in the request: the requesting user. Without one, a user-set value is
    dropped ("" means remove); removal (the operator consuming a decision) is left alone.
    """
    new = new or {}
    if decisions_in(old, new):
        return user if new.get(DECIDED_BY) != user else None
    set_by_request = new.get(DECIDED_BY) and new.get(DECIDED_BY) != (old or {}).get(DECIDED_BY)
    return "" if set_by_request else None


def gate_refusal(
    spec: Mapping[str, Any], annotations: Mapping[str, str], decisions: list[Decision], user: str
) -> str | None:
    """Why the gate's own rules refuse this approval: the creator approving a gate that
    refuses self-approval, a missing or unknown choice, data the gate's schema refuses."""
    for decision in decisions:
        if decision.verb != "approve":
            continue
        raw = next(
            (
                c.get("approval")
                for c in [*(spec.get("steps") or []), *(spec.get("finally") or [])]
                if c.get("name") == decision.step
            ),
            None,
        )
        if not raw:
            continue
        try:
            gate = ApprovalSpec.model_validate(raw)
        except ValidationError:
            continue  # the spec webhook and the operator report a bad spec
        where = f"step {decision.step!r}"
        if gate.allow_self_approval is False and annotations.get(CREATED_BY) in (None, user):
            if annotations.get(CREATED_BY) is None:
                return f"{where} refuses its creator's approval, and the creator is unknown"
            return f"{user} created this workflow, and {where} refuses self-approval"
        choice = (annotations.get(CHOICE) or "").strip()
        if gate.options and choice not in gate.options:
            return f"{where} needs {CHOICE}=one of {', '.join(gate.options)}"
        data = annotations.get(APPROVAL_DATA)
        if data:
            try:
                problem = gate.data_problem(json.loads(data))
            except json.JSONDecodeError:
                continue  # data_refusal says so
            if problem:
                return f"{where}: {problem}"
    return None


def created_by_refusal(old: Mapping[str, str] | None, new: Mapping[str, str] | None) -> str | None:
    """Nobody changes who created a workflow: the webhook stamps it at create."""
    if old is None:
        return None
    if (old or {}).get(CREATED_BY) != (new or {}).get(CREATED_BY):
        return f"{CREATED_BY} is stamped at create and cannot be changed"
    return None


#: The validating webhook that checks a Workflow's spec as the operator will.
SPEC_WEBHOOK = "spec"
#: The mutating webhook that stamps who created a workflow.
CREATED_BY_WEBHOOK = "created-by"
#: Creates, and updates that change the spec (not annotation or label edits).
SPEC_CHANGES = "request.operation == 'CREATE' || object.spec != oldObject.spec"


def webhook_configurations(
    name: str, base_url: str, ca_bundle: str, namespaces: list[str] | None
) -> list[dict[str, Any]]:
    """The Validating- and MutatingWebhookConfiguration for the operator's webhook server.

    Only requests that touch approval annotations reach the approval webhooks
    (``matchConditions``), so when the operator is down, approvals wait but every other edit
    still goes through. The spec webhook sees creates and spec changes and fails open: it
    refuses at ``kubectl apply`` what the operator would fail the workflow for, but an
    operator outage never blocks an apply (the operator then reports it in status).
    """
    condition = " || ".join(
        f"(has(object.metadata.annotations) && '{key}' in object.metadata.annotations)"
        for key in (APPROVE, REJECT, DECIDED_BY, APPROVAL_DATA, CHOICE)
    )

    def created_by(obj: str) -> str:
        return (
            f"(has({obj}.metadata.annotations) && '{CREATED_BY}' in {obj}.metadata.annotations"
            f" ? {obj}.metadata.annotations['{CREATED_BY}'] : '')"
        )

    condition += (
        f" || (request.operation == 'UPDATE' && {created_by('object')} != "
        f"{created_by('oldObject')})"
    )
    namespace_selector: dict[str, Any] = {}
    if namespaces:
        namespace_selector = {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}
            ]
        }

    def webhook(handler_id: str) -> dict[str, Any]:
        if handler_id == CREATED_BY_WEBHOOK:
            # Every create, failing open: an outage never blocks an apply (the creator is
            # then unknown, and a gate that refuses self-approval refuses every approval).
            hook = {**approval_webhook(handler_id), "failurePolicy": "Ignore"}
            hook.pop("matchConditions")
            hook["rules"] = [{**hook["rules"][0], "operations": ["CREATE"]}]
            return hook
        if handler_id == SPEC_WEBHOOK:
            return {
                **approval_webhook(handler_id),
                "matchConditions": [{"name": "spec-changes", "expression": SPEC_CHANGES}],
                "failurePolicy": "Ignore",
            }
        return approval_webhook(handler_id)

    def approval_webhook(handler_id: str) -> dict[str, Any]:
        return {
            "name": f"{handler_id}.cerebelum.io",
            "clientConfig": {"url": f"{base_url.rstrip('/')}/{handler_id}", "caBundle": ca_bundle},
            "rules": [
                {
                    "apiGroups": ["cerebelum.io"],
                    "apiVersions": ["v1alpha1"],
                    "resources": ["workflows"],
                    "operations": ["CREATE", "UPDATE"],
                    "scope": "Namespaced",
                }
            ],
            "matchConditions": [{"name": "touches-approval-annotations", "expression": condition}],
            "namespaceSelector": namespace_selector,
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 10,
            "admissionReviewVersions": ["v1"],
        }

    meta = {"name": name, "labels": {"app.kubernetes.io/name": "cerebelum-operator"}}
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": meta,
            "webhooks": [webhook("decided-by"), webhook(CREATED_BY_WEBHOOK)],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": meta,
            "webhooks": [webhook("approvers"), webhook(SPEC_WEBHOOK)],
        },
    ]
