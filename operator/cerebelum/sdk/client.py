"""``ExecutionClient``: Cerebelum's status client, reading Workflow objects instead of Core.

Code that polls Cerebelum's status API ports by changing the constructor:
``ExecutionClient(core_url=...)`` becomes ``ExecutionClient(namespace="prod")`` (kubeconfig
and context as kubectl finds them). An execution id is a Workflow's ``namespace/name`` (or
its name, in the client's namespace). The shapes (``ExecutionStatus``, ``StepStatus``,
``SleepInfo``, ``ApprovalInfo``, ``ExecutionState``) are Cerebelum's; ``execution_status``
builds one from a Workflow object and is pure, so it is tested without a cluster.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cerebelum.api.durations import parse_time
from cerebelum.api.status import StepPhase, WorkflowPhase, workflow_phase_info


class ExecutionState(Enum):
    UNSPECIFIED = "EXECUTION_STATE_UNSPECIFIED"
    RUNNING = "EXECUTION_RUNNING"
    COMPLETED = "EXECUTION_COMPLETED"
    FAILED = "EXECUTION_FAILED"
    SLEEPING = "EXECUTION_SLEEPING"
    WAITING_FOR_APPROVAL = "EXECUTION_WAITING_FOR_APPROVAL"
    PAUSED = "EXECUTION_PAUSED"


#: Cerebelum's own waiting states; every other phase is read from the phase table: a final
#: one is COMPLETED or FAILED, any other RUNNING, so a new phase is never UNSPECIFIED.
_WAITING_STATES = {
    WorkflowPhase.SLEEPING: ExecutionState.SLEEPING,
    WorkflowPhase.WAITING_FOR_APPROVAL: ExecutionState.WAITING_FOR_APPROVAL,
    WorkflowPhase.SUSPENDED: ExecutionState.PAUSED,
}
_STEP_STATES = {
    StepPhase.SUCCEEDED: "completed",
    StepPhase.FAILED: "failed",
    StepPhase.SKIPPED: "skipped",
}


def state_of(phase: Any) -> ExecutionState:
    """Cerebelum's state for a workflow phase as read from the wire."""
    info = workflow_phase_info(phase)
    if info is None:
        return ExecutionState.UNSPECIFIED
    if info.final:
        return ExecutionState.COMPLETED if info.succeeded else ExecutionState.FAILED
    return _WAITING_STATES.get(WorkflowPhase(phase), ExecutionState.RUNNING)


@dataclass
class StepStatus:
    step_name: str
    step_index: int
    status: str  # completed | failed | skipped | running (and our other step phases, lowercased)
    started_at: datetime.datetime | None
    completed_at: datetime.datetime | None
    duration_seconds: int
    output: Any
    error: dict[str, str] | None


@dataclass
class SleepInfo:
    duration_ms: int
    sleep_started_at: datetime.datetime | None
    remaining_ms: int
    data: dict[str, Any] | None = None


@dataclass
class ApprovalInfo:
    approval_type: str
    data: dict[str, Any] | None
    timeout_ms: int
    requested_at: datetime.datetime | None
    remaining_timeout_ms: int


@dataclass
class ExecutionStatus:
    execution_id: str
    workflow_name: str
    status: ExecutionState
    started_at: datetime.datetime | None
    completed_at: datetime.datetime | None
    current_step_index: int
    total_steps: int
    current_step_name: str
    progress_percentage: float
    completed_steps: list[StepStatus] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    step_outputs: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None
    sleep_info: SleepInfo | None = None
    approval_info: ApprovalInfo | None = None
    elapsed_seconds: int | None = None


def _time(text: Any) -> datetime.datetime | None:
    try:
        return parse_time(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _ms(delta: datetime.timedelta) -> int:
    return max(0, int(delta.total_seconds() * 1000))


def execution_status(body: dict[str, Any], now: datetime.datetime) -> ExecutionStatus:
    """Cerebelum's view of one Workflow object at ``now``."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    names = [s.get("name", "") for s in [*(spec.get("steps") or []), *(spec.get("finally") or [])]]
    steps: dict[str, Any] = status.get("steps") or {}
    current = status.get("currentStep") or next(iter(status.get("currentSteps") or []), "") or ""
    started = _time(status.get("startedAt"))
    finished = _time(status.get("finishedAt"))
    completed: list[StepStatus] = []
    for index, name in enumerate(names):
        s = steps.get(name) or {}
        phase = s.get("phase", "Pending")
        if phase not in _STEP_STATES:
            continue
        begun, ended = _time(s.get("startedAt")), _time(s.get("finishedAt"))
        error = s.get("error")
        completed.append(
            StepStatus(
                step_name=name,
                step_index=index,
                status=_STEP_STATES[phase],
                started_at=begun,
                completed_at=ended,
                duration_seconds=int((ended - begun).total_seconds()) if begun and ended else 0,
                output=s.get("output"),
                error={"kind": error.get("errorClass", ""), "message": error.get("message", "")}
                if isinstance(error, dict)
                else None,
            )
        )
    sleep_info = approval_info = None
    for name in names:
        s = steps.get(name) or {}
        if sleep_info is None and s.get("phase") == StepPhase.SLEEPING:
            begun, until = _time(s.get("startedAt")), _time(s.get("sleepUntil"))
            if until is not None:
                sleep_info = SleepInfo(
                    duration_ms=_ms(until - begun) if begun else 0,
                    sleep_started_at=begun,
                    remaining_ms=_ms(until - now),
                )
        if approval_info is None and s.get("phase") == StepPhase.WAITING_FOR_APPROVAL:
            gate = s.get("approval") or {}
            asked, deadline = _time(gate.get("requestedAt")), _time(gate.get("deadline"))
            approval_info = ApprovalInfo(
                approval_type="manual",
                data={"step": name, "message": gate.get("message")}
                if gate.get("message")
                else {"step": name},
                timeout_ms=_ms(deadline - asked) if asked and deadline else 0,
                requested_at=asked,
                remaining_timeout_ms=_ms(deadline - now) if deadline else 0,
            )
    done = sum(1 for s in steps.values() if (s or {}).get("phase") in _STEP_STATES)
    error = None
    info = workflow_phase_info(status.get("phase"))
    if info is not None and info.final and not info.succeeded:
        error = {"kind": status.get("phase", ""), "message": status.get("message") or ""}
    return ExecutionStatus(
        execution_id=f"{meta.get('namespace', '')}/{meta.get('name', '')}",
        workflow_name=meta.get("name", ""),
        status=state_of(status.get("phase", "Pending")),
        started_at=started,
        completed_at=finished,
        current_step_index=names.index(current) if current in names else done,
        total_steps=len(names),
        current_step_name=current,
        progress_percentage=100.0 * done / len(names) if names else 0.0,
        completed_steps=completed,
        inputs=spec.get("inputs") or {},
        step_outputs={
            n: (steps.get(n) or {}).get("output")
            for n in names
            if (steps.get(n) or {}).get("phase") == StepPhase.SUCCEEDED
        },
        error=error,
        sleep_info=sleep_info,
        approval_info=approval_info,
        elapsed_seconds=int(((finished or now) - started).total_seconds()) if started else None,
    )


class ExecutionClient:
    """Status of workflows in the cluster, shaped as Cerebelum's client gives it.

    ``core_url`` is accepted (and ignored) so Cerebelum code runs before it is ported.
    """

    def __init__(
        self,
        core_url: str | None = None,
        *,
        namespace: str | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
    ) -> None:
        self.core_url = core_url
        self._namespace = namespace
        self._kubeconfig = kubeconfig
        self._context = context
        self._api: Any = None
        self._default_namespace = "default"

    async def _workflows(self, namespace: str | None = None) -> Any:
        from cerebelum.kubeconfig import connect

        if self._api is None:
            self._api, self._default_namespace = await connect(self._kubeconfig, self._context)
        return Workflows(self._api, namespace or self._namespace or self._default_namespace)

    def _split(self, execution_id: str) -> tuple[str | None, str]:
        namespace, _, name = execution_id.rpartition("/")
        return namespace or None, name

    async def get_execution_status(self, execution_id: str) -> ExecutionStatus:
        namespace, name = self._split(execution_id)
        body = await (await self._workflows(namespace)).get(name)
        return execution_status(body, datetime.datetime.now(datetime.UTC))

    async def list_executions(
        self,
        workflow_name: str | None = None,
        status: ExecutionState | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ExecutionStatus], int, bool]:
        """(a page of executions, how many match, whether more follow), as Cerebelum's.
        ``workflow_name`` matches a Workflow's name or the name it was generated from."""
        now = datetime.datetime.now(datetime.UTC)
        items = await (await self._workflows()).list(all_namespaces=False)
        found = []
        for body in sorted(items, key=lambda b: b["metadata"].get("creationTimestamp", "")):
            meta = body["metadata"]
            if workflow_name and workflow_name not in (
                meta.get("name"),
                (meta.get("generateName") or "").rstrip("-"),
            ):
                continue
            view = execution_status(body, now)
            if status is None or view.status == status:
                found.append(view)
        page = found[offset : offset + min(limit, 100)]
        return page, len(found), offset + len(page) < len(found)

    async def list_active_workflows(self) -> list[ExecutionStatus]:
        finished = (ExecutionState.COMPLETED, ExecutionState.FAILED)
        page, _, _ = await self.list_executions(limit=100)
        return [e for e in page if e.status not in finished]

    async def approve(
        self, execution_id: str, step: str | None = None, *, data: Any = None, reason: str = ""
    ) -> None:
        await self._decide("approve", execution_id, step, data, reason)

    async def reject(self, execution_id: str, step: str | None = None, *, reason: str = "") -> None:
        await self._decide("reject", execution_id, step, None, reason)

    async def _decide(
        self, verb: str, execution_id: str, step: str | None, data: Any, reason: str
    ) -> None:
        namespace, name = self._split(execution_id)
        workflows = await self._workflows(namespace)
        if step is None:
            view = execution_status(await workflows.get(name), datetime.datetime.now(datetime.UTC))
            if view.approval_info is None or view.approval_info.data is None:
                raise ValueError(f"workflow {name} is not waiting for an approval")
            step = str(view.approval_info.data["step"])
        annotations = {f"cerebelum.io/{verb}": step}
        if reason:
            annotations["cerebelum.io/reason"] = reason
        if data is not None:
            annotations["cerebelum.io/approval-data"] = json.dumps(data)
        await workflows.annotate(name, annotations)

    async def resume_execution(self, execution_id: str, skip_completed_steps: bool = True) -> str:
        raise NotImplementedError(
            "a Workflow resumes by itself after an operator restart; to run a finished one "
            "again, apply it anew (cerebelum apply ... --generate-name)"
        )

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    def close(self) -> None:
        """Cerebelum's close(); in async code prefer ``await client.aclose()``."""
        import asyncio

        if self._api is None:
            return
        try:
            asyncio.get_running_loop().create_task(self.aclose())
        except RuntimeError:
            asyncio.run(self.aclose())


class UserError(Exception):
    """Something the user can fix; printed without a traceback."""


class Workflows:
    """The few API calls the CLI makes, with the user's own credentials."""

    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes_asyncio import client

        self._custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    async def get(self, name: str) -> dict[str, Any]:
        return await self._get("workflows", name, f"workflow {self.namespace}/{name}")

    async def template(self, name: str) -> dict[str, Any]:
        """A WorkflowTemplate of this namespace."""
        return await self._get(
            "workflowtemplates", name, f"WorkflowTemplate {self.namespace}/{name}"
        )

    async def cron(self, name: str) -> dict[str, Any]:
        """A CronWorkflow of this namespace."""
        return await self._get("cronworkflows", name, f"CronWorkflow {self.namespace}/{name}")

    async def _get(self, plural: str, name: str, what: str) -> dict[str, Any]:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            result: dict[str, Any] = await self._custom.get_namespaced_custom_object(
                "cerebelum.io", "v1alpha1", self.namespace, plural, name
            )
        except ApiException as exc:
            raise UserError(_api_message(exc, what)) from None
        return result

    async def templates(self) -> list[dict[str, Any]]:
        result = await self._custom.list_namespaced_custom_object(
            "cerebelum.io", "v1alpha1", self.namespace, "workflowtemplates"
        )
        return list(result["items"])

    async def list(self, all_namespaces: bool) -> list[dict[str, Any]]:
        if all_namespaces:
            result = await self._custom.list_cluster_custom_object(
                "cerebelum.io", "v1alpha1", "workflows"
            )
        else:
            result = await self._custom.list_namespaced_custom_object(
                "cerebelum.io", "v1alpha1", self.namespace, "workflows"
            )
        return list(result["items"])

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        from kubernetes_asyncio.client.exceptions import ApiException

        name = manifest["metadata"].get("name") or manifest["metadata"].get("generateName")
        try:
            result: dict[str, Any] = await self._custom.create_namespaced_custom_object(
                "cerebelum.io", "v1alpha1", self.namespace, "workflows", manifest
            )
        except ApiException as exc:
            if exc.status == 409:
                raise UserError(
                    f"workflow {self.namespace}/{name} already exists: delete it, or give "
                    "--name (or --generate-name) for a new run"
                ) from None
            raise UserError(_api_message(exc, f"workflow {self.namespace}/{name}")) from None
        return result

    async def annotate(self, name: str, annotations: dict[str, str]) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            await self._custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                "cerebelum.io",
                "v1alpha1",
                self.namespace,
                "workflows",
                name,
                {"metadata": {"annotations": annotations}},
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            raise UserError(_api_message(exc, f"workflow {self.namespace}/{name}")) from None

    async def watch(self, name: str, since: str, timeout: float) -> Any:
        """Changes of one workflow after resourceVersion ``since``, for up to ``timeout``."""
        from kubernetes_asyncio import watch

        async with watch.Watch() as stream:  # closes its connection and session
            async for event in stream.stream(
                self._custom.list_namespaced_custom_object,
                "cerebelum.io",
                "v1alpha1",
                self.namespace,
                "workflows",
                field_selector=f"metadata.name={name}",
                resource_version=since,
                timeout_seconds=max(int(timeout), 1),
            ):
                if event.get("type") in ("ADDED", "MODIFIED"):
                    yield event["object"]


def _api_message(exc: Any, what: str) -> str:
    try:
        message = json.loads(exc.body).get("message") or ""
    except (ValueError, TypeError, AttributeError):
        message = ""
    if exc.status == 404:
        return f"{what} not found"
    return message or f"{what}: HTTP {exc.status}"
