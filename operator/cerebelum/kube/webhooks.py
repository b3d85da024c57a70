"""The approver webhooks, loaded only when the operator serves a webhook
(``CEREBELUM_WEBHOOK_PORT``; ``cerebelum operator`` then adds this module).

They are thin: the rules live in ``approvers``. Kopf serves each at ``/<id>`` on its webhook
server; ``approvers.webhook_configurations`` builds the configurations that point there.
"""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from cerebelum.api import GROUP, PLURAL, VERSION
from cerebelum.api.base import describe_errors
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.workflowtemplate import resolve
from cerebelum.kube.approvers import (
    CREATED_BY_WEBHOOK,
    SPEC_WEBHOOK,
    created_by_refusal,
    data_refusal,
    decided_by_patch,
    decisions_in,
    gate_refusal,
    refusal,
)
from cerebelum.kube.settings import CREATED_BY, DECIDED_BY


def _annotations(obj: Any) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("annotations") or {})


@kopf.on.validate(GROUP, VERSION, PLURAL, id="approvers")
def validate_approvers(body: kopf.Body, userinfo: kopf.UserInfo, **kwargs: Any) -> None:
    """Refuse an approve/reject annotation from a user the step's approvers do not list,
    and approval data that is not JSON."""
    old, new = _annotations(kwargs.get("old")), _annotations(body)
    problem = data_refusal(old, new) or created_by_refusal(old if kwargs.get("old") else None, new)
    if problem:
        raise kopf.AdmissionError(problem, code=422)
    decisions = decisions_in(old, new)
    if decisions:
        spec = dict(body.get("spec") or {})
        user = userinfo.get("username", "")
        reason = refusal(spec, decisions, user, list(userinfo.get("groups") or []))
        if reason:
            raise kopf.AdmissionError(reason, code=403)
        reason = gate_refusal(spec, new, decisions, user)
        if reason:
            raise kopf.AdmissionError(reason, code=422)


@kopf.on.mutate(GROUP, VERSION, PLURAL, id="decided-by")
def stamp_decided_by(
    body: kopf.Body, userinfo: kopf.UserInfo, patch: kopf.Patch, **kwargs: Any
) -> None:
    """Record who made a decision; nobody can write that annotation by hand."""
    value = decided_by_patch(
        _annotations(kwargs.get("old")), _annotations(body), userinfo.get("username", "")
    )
    if value is not None:
        patch.metadata.annotations[DECIDED_BY] = value or None


@kopf.on.mutate(GROUP, VERSION, PLURAL, id=CREATED_BY_WEBHOOK, operations=["CREATE"])
def stamp_created_by(body: kopf.Body, userinfo: kopf.UserInfo, patch: kopf.Patch, **_: Any) -> None:
    """Record who created the workflow (a value the user set is overwritten)."""
    user = userinfo.get("username", "")
    if user and _annotations(body).get(CREATED_BY) != user:
        patch.metadata.annotations[CREATED_BY] = user


@kopf.on.validate(GROUP, VERSION, PLURAL, id=SPEC_WEBHOOK)
async def validate_spec(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Refuse a spec the operator would fail at once: what the CRD schema cannot say
    (sizes of templated strings inside free-form fields, expression nesting, durations
    over the limit, the step graph), and inputs a workflow's template refuses."""
    raw = dict(body.get("spec") or {})
    try:
        spec = WorkflowSpec.model_validate(raw)
    except ValidationError as exc:
        problems = describe_errors(exc, "spec.")
        raise kopf.AdmissionError(f"invalid spec: {problems}"[:4000], code=422) from None
    runtime = memo.get("runtime")
    if spec.unresolved and spec.template_ref is not None and runtime is not None:
        namespace = body.get("metadata", {}).get("namespace") or ""
        name = spec.template_ref.name
        template = await runtime.kube.get_template(namespace, name)
        if template is None:
            raise kopf.AdmissionError(
                f"spec.templateRef.name: there is no WorkflowTemplate {name} in namespace "
                f"{namespace}",
                code=422,
            )
        try:
            resolve(template, raw)
        except ValueError as exc:  # InvalidInputs names each field
            raise kopf.AdmissionError(
                f"inputs of WorkflowTemplate {name}: {exc}"[:4000], code=422
            ) from None
