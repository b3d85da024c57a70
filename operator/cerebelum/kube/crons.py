"""CronWorkflows in the operator: the shell around ``engine.schedule``.

A CronWorkflow shares the runtime's work queue and timer heap with the workflows (its key
is ``(namespace, "cronworkflow/NAME")``, a name no Workflow can have): waiting for the next
scheduled time is a heap entry, not a task. The Workflows it started are indexed from the
workflow watch by their label, so deciding never lists anything; a change of one of them
(a run finishing) queues its CronWorkflow again, which is what starts a run Forbid
postponed, and prunes the history.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from cerebelum.api.base import describe_errors
from cerebelum.api.cronworkflow import (
    LABEL_CRON,
    SCHEDULED_TIME,
    CronWorkflowSpec,
    CronWorkflowStatus,
    run_manifest,
)
from cerebelum.api.durations import parse_time
from cerebelum.engine.schedule import Child, CronDecision, CronMeta, decide
from cerebelum.engine.types import EventRecord
from cerebelum.kube.cache import Key, slim
from cerebelum.kube.client import Conflict, Gone, KubeClient
from cerebelum.kube.workqueue import WakeScheduler, WorkQueue

logger = logging.getLogger(__name__)

PREFIX = "cronworkflow/"
_RETRY_AFTER_CONFLICT = datetime.timedelta(milliseconds=200)


def cron_key(namespace: str, name: str) -> Key:
    return namespace, PREFIX + name


def is_cron(key: Key) -> bool:
    return key[1].startswith(PREFIX)


def _time(value: Any) -> datetime.datetime | None:
    try:
        return parse_time(value) if value else None
    except (TypeError, ValueError):
        return None


def child_of(body: dict[str, Any]) -> tuple[str, Child] | None:
    """(its CronWorkflow, the run) for a Workflow a CronWorkflow started, else None."""
    meta = body.get("metadata") or {}
    cron = (meta.get("labels") or {}).get(LABEL_CRON)
    if not cron:
        return None
    status = body.get("status") or {}
    child = Child(
        name=meta["name"],
        phase=str(status.get("phase") or "Pending"),
        scheduled=_time((meta.get("annotations") or {}).get(SCHEDULED_TIME)),
        created=_time(meta.get("creationTimestamp")),
        finished=_time(status.get("finishedAt")),
    )
    return cron, child


class Crons:
    def __init__(
        self,
        kube: KubeClient,
        queue: WorkQueue,
        scheduler: WakeScheduler,
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self.kube = kube
        self.queue = queue
        self.scheduler = scheduler
        self.clock = clock
        self.bodies: dict[Key, dict[str, Any]] = {}
        #: The runs of each CronWorkflow (by its key), by name.
        self.children: dict[Key, dict[str, Child]] = {}

    def keys(self) -> list[Key]:
        return list(self.bodies)

    # -- input from the watches ------------------------------------------------------------

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = cron_key(meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.bodies.pop(key, None)
            self.scheduler.forget(key)
            return
        old = self.bodies.get(key)
        if old is not None and old["metadata"].get("resourceVersion") == meta.get(
            "resourceVersion"
        ):
            return
        self.bodies[key] = slim(body)
        self.queue.add(key)

    def observe_workflow(self, event_type: str | None, body: dict[str, Any]) -> None:
        found = child_of(body)
        if found is None:
            return
        cron, child = found
        key = cron_key(body["metadata"]["namespace"], cron)
        runs = self.children.setdefault(key, {})
        before = runs.get(child.name)
        if event_type == "DELETED":
            runs.pop(child.name, None)
        else:
            runs[child.name] = child
        if before is None or event_type == "DELETED" or before.phase != child.phase:
            self.queue.add(key)

    # -- one decision ----------------------------------------------------------------------

    async def reconcile(self, key: Key) -> None:
        body = self.bodies.get(key)
        if body is None:
            return
        meta = body["metadata"]
        try:
            spec = CronWorkflowSpec.model_validate(body.get("spec") or {})
            status = CronWorkflowStatus.model_validate(body.get("status") or {})
        except ValidationError as exc:
            message = f"invalid CronWorkflow: {describe_errors(exc, 'spec.')}"[:1024]
            if (body.get("status") or {}).get("message") != message:
                await self._write(key, body, {"message": message})
                await self.kube.post_event(body, "Warning", "InvalidSpec", message)
            return
        created = _time(meta.get("creationTimestamp")) or self.clock()
        cron_meta = CronMeta(meta["name"], created, int(meta.get("generation") or 1))
        runs = list(self.children.get(key, {}).values())
        decision = decide(spec, status, cron_meta, runs, self.clock())
        await self._apply(key, body, decision)

    async def _apply(self, key: Key, body: dict[str, Any], d: CronDecision) -> None:
        namespace = body["metadata"]["namespace"]
        for name in d.cancel:
            await self.kube.cancel_workflow(namespace, name)
        if d.create is not None:
            name, scheduled = d.create
            fresh = await self.kube.create_workflow(run_manifest(body, name, scheduled))
            if fresh:
                logger.info("cronworkflow %s/%s started %s", namespace, key[1][len(PREFIX) :], name)
            runs = self.children.setdefault(key, {})
            runs.setdefault(name, Child(name=name, phase="Pending", scheduled=scheduled))
        for name in d.delete:
            await self.kube.delete_workflow(namespace, name)
            self.children.get(key, {}).pop(name, None)
        wire = d.status.to_wire()
        if wire != (body.get("status") or {}):
            try:
                await self._write(key, body, wire)
            except Conflict:
                self.scheduler.schedule(key, self.clock() + _RETRY_AFTER_CONFLICT)
                return
            except Gone:
                self.bodies.pop(key, None)
                return
        for event in d.events:
            await self._event(body, event)
        self.scheduler.schedule(key, d.wake_at)

    async def _write(self, key: Key, body: dict[str, Any], status: dict[str, Any]) -> None:
        written = await self.kube.replace_cron_status(body, status)
        self.bodies[key] = slim(written)

    async def _event(self, body: dict[str, Any], event: EventRecord) -> None:
        await self.kube.post_event(body, event.type, event.reason, event.message)
