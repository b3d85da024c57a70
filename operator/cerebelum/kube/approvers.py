"""Who may approve: the pure rules behind the admission webhook.

A decision is an ``cerebelum.io/approve=STEP`` or ``cerebelum.io/reject=STEP`` annotation
that a request adds or changes. The validating webhook refuses it when the step names
approvers and the requesting user is neither one of the users nor in one of the groups.
The mutating webhook stamps ``cerebelum.io/decided-by`` with the authenticated user, so
status can say who decided; a user cannot set that annotation on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cerebelum.kube.settings import APPROVE, DECIDED_BY, REJECT


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
    for candidate in spec.get("steps") or []:
        if candidate.get("name") == step:
            approvers = (candidate.get("approval") or {}).get("approvers") or {}
            return list(approvers.get("users") or []), list(approvers.get("groups") or [])
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
        if not users and not allowed_groups:
            continue  # no list: anyone allowed by RBAC to annotate the workflow
        if user in users or set(groups) & set(allowed_groups):
            continue
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


def webhook_configurations(
    name: str, base_url: str, ca_bundle: str, namespaces: list[str] | None
) -> list[dict[str, Any]]:
    """The Validating- and MutatingWebhookConfiguration for the operator's webhook server.

    Only requests that touch approval annotations reach the webhook (``matchConditions``),
    so when the operator is down, approvals wait but every other edit still goes through.
    """
    condition = " || ".join(
        f"(has(object.metadata.annotations) && '{key}' in object.metadata.annotations)"
        for key in (APPROVE, REJECT, DECIDED_BY)
    )
    namespace_selector: dict[str, Any] = {}
    if namespaces:
        namespace_selector = {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}
            ]
        }

    def webhook(handler_id: str) -> dict[str, Any]:
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
            "webhooks": [webhook("decided-by")],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": meta,
            "webhooks": [webhook("approvers")],
        },
    ]
