"""The ``job`` action: run a container as a Kubernetes Job and wait for it.

The Job's name is derived from the workflow, the step and the attempt's identity, so an
operator that restarts mid-attempt finds the Job it created instead of making a second one.
Waiting is a watch on that one Job. A cancelled attempt (workflow cancelled, attempt timed
out) deletes its Job, so nothing keeps running for nobody.

Error classes: JobFailed (the Job failed; not retryable unless retry.retryOn names it),
Invalid (the API refused the Job), Forbidden, ApiError (retryable).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from cerebelum.actions.api_retry import api_call
from cerebelum.actions.base import ActionContext, ActionKind
from cerebelum.actions.errors import ActionError, transport_error
from cerebelum.actions.owned import api_error, attempt_name, label_value, owner_reference

_WATCH_SECONDS = 60
_LABEL_WORKFLOW = "cerebelum.io/workflow"
_LABEL_STEP = "cerebelum.io/step"


def job_name(context: ActionContext) -> str:
    return attempt_name(context)


def build_job(name: str, params: dict[str, Any], context: ActionContext) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": k, "value": str(v)} for k, v in (params.get("env") or {}).items()
    ]
    env += [
        {
            "name": e["name"],
            "valueFrom": {
                "secretKeyRef": {"name": e["secretKeyRef"]["name"], "key": e["secretKeyRef"]["key"]}
            },
        }
        for e in params.get("envFromSecrets") or []
    ]
    container: dict[str, Any] = {
        "name": "step",
        "image": params["image"],
        "env": env,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    for key in ("command", "args", "resources"):
        if params.get(key):
            container[key] = params[key]
    labels = {
        _LABEL_WORKFLOW: label_value(context.workflow),
        _LABEL_STEP: label_value(context.step),
        "cerebelum.io/visit": str(context.visit),
        "cerebelum.io/attempt": str(context.attempt),
    }
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if params.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = params["serviceAccountName"]
    spec: dict[str, Any] = {
        "backoffLimit": params.get("backoffLimit", 0),
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if params.get("activeDeadlineSeconds"):
        spec["activeDeadlineSeconds"] = params["activeDeadlineSeconds"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": context.namespace,
            "labels": labels,
            "annotations": {"cerebelum.io/idempotency-key": context.idempotency_key},
            "ownerReferences": [owner_reference(context)],
        },
        "spec": spec,
    }


def _finished(job: Any) -> tuple[str, str] | None:
    """("Complete"|"Failed", detail) once the Job has ended."""
    for condition in job.status.conditions if job.status and job.status.conditions else []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            detail = ": ".join(p for p in (condition.reason, condition.message) if p)
            return condition.type, detail
    return None


async def _wait(batch: Any, namespace: str, name: str) -> tuple[str, str]:
    from kubernetes_asyncio import watch

    while True:
        job = await api_call(
            lambda: batch.read_namespaced_job(name, namespace), f"reading job {namespace}/{name}"
        )
        outcome = _finished(job)
        if outcome:
            return outcome
        try:
            async with watch.Watch() as stream:  # the context closes its connection and session
                async for event in stream.stream(
                    batch.list_namespaced_job,
                    namespace,
                    field_selector=f"metadata.name={name}",
                    resource_version=job.metadata.resource_version,
                    timeout_seconds=_WATCH_SECONDS,
                ):
                    outcome = _finished(event["object"])
                    if outcome:
                        return outcome
        except Exception as exc:
            if transport_error(exc) is None:
                raise
            await asyncio.sleep(1.0)  # the API server is away; the Job runs on: read again


async def _termination_output(core: Any, namespace: str, name: str) -> Any:
    pods = await core.list_namespaced_pod(namespace, label_selector=f"job-name={name}")
    for pod in pods.items:
        for status in (pod.status.container_statuses or []) if pod.status else []:
            terminated = status.state.terminated if status.state else None
            if terminated and terminated.exit_code == 0 and terminated.message:
                with contextlib.suppress(ValueError):
                    return json.loads(terminated.message)
    return None


async def job(params: dict[str, Any], context: ActionContext) -> Any:
    if context.kube is None:
        raise ActionError(
            "Invalid", "job steps need the operator's Kubernetes client", retryable=False
        )
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    api = await context.kube()
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    name = job_name(context)
    try:
        body: Any = build_job(name, params, context)  # a plain dict is sent as is
        await api_call(
            lambda: batch.create_namespaced_job(context.namespace, body),
            f"creating job {context.namespace}/{name}",
        )
    except ApiException as exc:
        if exc.status != 409:  # 409: this attempt's Job exists already (operator restart)
            raise api_error(exc, f"creating job {name}") from None
    try:
        kind, detail = await _wait(batch, context.namespace, name)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.shield(
                batch.delete_namespaced_job(
                    name, context.namespace, propagation_policy="Background"
                )
            )
        raise
    except ApiException as exc:
        raise api_error(exc, f"watching job {name}") from None
    if kind == "Failed":
        raise ActionError(
            "JobFailed", f"job {name} failed: {detail or 'no reason given'}", retryable=False
        )
    output = await _termination_output(core, context.namespace, name)
    return output if output is not None else {"job": name, "succeeded": True}


KIND = ActionKind("job", job)
