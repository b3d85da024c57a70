"""The operator's runtime: a cache of Workflows fed by Kopf's watch, a work queue, one
timer heap, and the reconciliation that runs the engine and carries out its effects.

A reconciliation is four steps: ``prepare`` the cached object (``kube.plan``), ``settle``
the engine (``engine.driver``: local actions run inline, their results fed straight back),
``plan`` the effects, and ``apply`` them here, ending in at most one status write. Actions
that do I/O start only after the write that records their attempt has succeeded: a crash
can then lose a result but never runs an unrecorded attempt, and the engine re-issues a
lost attempt with the same idempotency key.

A reconciliation that fails is retried per workflow with backoff (``kube.failures``);
after a few failures in a row the workflow gets a Warning Event and a
``Reconciling=False`` condition naming the problem; the next success removes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from cerebelum.actions import CATALOG, REGISTRY, ActionContext, execute
from cerebelum.actions.python import StepRunResults
from cerebelum.actions.secrets import KubeSecretSource
from cerebelum.api.base import describe_errors
from cerebelum.api.status import Condition, WorkflowPhase, failed_status
from cerebelum.api.tokens import CallbackIssuer
from cerebelum.api.workflowtemplate import InvalidInputs, resolve
from cerebelum.engine import ActionCall, ActionResult, settle
from cerebelum.engine.notify import NOTIFY_KIND
from cerebelum.engine.parked import parked_until
from cerebelum.kube import metrics, notify
from cerebelum.kube.cache import BodyCache, Key, SpecCache, slim
from cerebelum.kube.client import Conflict, Gone, KubeClient
from cerebelum.kube.concurrency import AdaptiveLimit
from cerebelum.kube.crons import Crons, is_cron
from cerebelum.kube.events import EventPoster
from cerebelum.kube.failures import (
    FailureBackoff,
    congestion,
    describe_failure,
    too_large,
    unreachable,
)
from cerebelum.kube.plan import RECONCILING, Plan, plan, prepare
from cerebelum.kube.settings import OperatorSettings
from cerebelum.kube.tasks import ActionTasks
from cerebelum.kube.workqueue import WakeScheduler, WorkQueue

logger = logging.getLogger("cerebelum.operator")

_RETRY_AFTER_CONFLICT = datetime.timedelta(milliseconds=500)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key(body: dict[str, Any]) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


class Runtime:
    def __init__(self, kube: KubeClient, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self.queue = WorkQueue()
        self.scheduler = WakeScheduler(self.queue)
        self.bodies = BodyCache()
        self.specs = SpecCache()
        self.tasks = ActionTasks(self._execute, lambda key: self.queue.add(key, urgent=True))
        #: Finished StepRuns (python steps) arrive here from the operator's watch.
        self.stepruns = StepRunResults()
        #: Only a leader reconciles (always true without leader election).
        self.leading = True
        self.failures = FailureBackoff(settings.backoff)
        #: Signs and checks callback tokens (the endpoint in kube.callbacks uses it too).
        self.callbacks = CallbackIssuer(settings.callbacks.key, settings.callbacks.url)
        #: Reconciliations at once: from settings, adapted to the API server.
        self.concurrency = AdaptiveLimit(
            start=settings.reconcile.workers, ceiling=settings.reconcile.max_workers
        )
        self.events = EventPoster(
            kube.post_event, busy=lambda: len(self.queue) > self.concurrency.slots
        )
        #: CronWorkflows: in the same queue and timer heap, under keys of their own.
        self.crons = Crons(kube, self.queue, self.scheduler, _utcnow)
        self._loops: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._loops.append(asyncio.create_task(self.scheduler.run(), name="cerebelum-scheduler"))
        for index in range(self.concurrency.ceiling):
            self._loops.append(asyncio.create_task(self._work(), name=f"cerebelum-worker-{index}"))

    def set_leading(self, leading: bool) -> None:
        """Leadership changed. A new leader looks at every workflow (resuming lost attempts
        and timers); a former leader stops its actions, since the new one re-issues them."""
        self.leading = leading
        if leading:
            for key in list(self.bodies):
                body = self.bodies.get(key)
                if body is not None:
                    self._look(key, body)
            for cron in self.crons.keys():  # noqa: SIM118 (Crons is not a mapping)
                self.queue.add(cron)
        else:
            self.tasks.cancel_all()

    async def stop(self) -> None:
        await self.events.stop()
        pending: list[asyncio.Task[Any]] = [*self._loops, *self.tasks.cancel_all()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- input from the watch ----------------------------------------------------------

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        key = _key(body)
        self.crons.observe_workflow(event_type, body)
        if event_type == "DELETED":
            self.forget(key)
            return
        version = body["metadata"].get("resourceVersion")
        if version is not None and self.bodies.version(key) == version:
            return  # our own write, already applied to the cache
        first_sight = key not in self.bodies
        self.bodies[key] = slim(body)
        if first_sight and self.leading:
            self._look(key, body)  # the initial list after a start: timers from status
        else:
            self.queue.add(key)

    def relisted(self, namespace: str | None, seen: set[Key]) -> None:
        """A list of a namespace (None: every namespace) ended: what the cache holds there
        and the list did not have was deleted while no watch was open."""
        for key in list(self.bodies):
            if (namespace is None or key[0] == namespace) and key not in seen:
                body = self.bodies.get(key)
                if body is not None:
                    self.observe("DELETED", body)

    def _look(self, key: Key, body: dict[str, Any]) -> None:
        """A workflow seen for the first time (after a start, or on becoming leader): one
        that only waits for a time gets its timer from status, without a reconciliation
        (a due one goes straight to the urgent lane); any other is queued."""
        at = parked_until(body)
        if at is None:
            self.queue.add(key)
        else:
            self.scheduler.schedule(key, at)

    def forget(self, key: Key) -> None:
        self.bodies.pop(key)
        self.specs.forget(key)
        self.failures.forget(key)
        self.events.forget(key)
        self.scheduler.forget(key)
        self.tasks.forget(key)

    # -- workers -----------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            # The slot first, then the key: keys leave the queue in its order (urgent ones
            # first) only as fast as slots free up, and none waits in a worker's hands.
            await self.concurrency.acquire()
            try:
                key = await self.queue.get()
                try:
                    await self.reconcile(key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._failed(key, exc)
                else:
                    for other, at in self.failures.succeeded(key, _utcnow()).items():
                        self.scheduler.schedule(other, at)
                finally:
                    self.queue.done(key)
            finally:
                await self.concurrency.release()

    async def _failed(self, key: Key, exc: Exception) -> None:
        count = self.failures.failed(key, exc)
        wait = self.failures.backoff(count)
        problem = describe_failure(exc)
        if count == 1 and not unreachable(exc):
            logger.exception(
                "reconciling %s/%s failed; retrying in %.1fs", *key, wait.total_seconds()
            )
        elif count & (count - 1) == 0:  # 1, 2, 4, 8...: a line now and then, not a flood
            logger.warning(
                "reconciling %s/%s failed %d times in a row (%s); retrying in %.1fs",
                *key,
                count,
                problem,
                wait.total_seconds(),
            )
        self.scheduler.schedule(key, _utcnow() + wait)
        if self.failures.warn_now(count):
            await self._report_failing(key, count, problem)

    async def _report_failing(self, key: Key, count: int, problem: str) -> None:
        """Say so where users look: an Event and a condition (both best effort: if the API
        server is away they fail too, and the log has it)."""
        body = self.bodies.get(key)
        if body is None:
            return
        message = f"{count} reconciliations in a row failed: {problem}; retrying with backoff"
        await self.kube.post_event(body, "Warning", "ReconcileFailing", message)
        status = dict(body.get("status") or {})
        condition = Condition(
            type=RECONCILING,
            status="False",
            reason="ReconcileError",
            message=message,
            last_transition_time=_utcnow(),
        ).to_wire()
        others = [c for c in status.get("conditions") or [] if c.get("type") != RECONCILING]
        status["conditions"] = [*others, condition]
        try:
            await self._write(key, body, status)
        except Exception as exc:
            logger.debug("could not mark %s/%s as failing: %s", *key, describe_failure(exc))

    # -- one reconciliation ------------------------------------------------------------

    async def reconcile(self, key: Key) -> None:
        if not self.leading:
            return
        if is_cron(key):
            await self.crons.reconcile(key)
            return
        body = self.bodies.get(key)
        if body is None:
            return
        try:
            spec = self.specs.of(key, body)
        except ValidationError as exc:
            await self._invalid_spec(key, body, exc)
            return
        if spec.unresolved:
            await self._from_template(key, body)
            return
        start = prepare(
            spec,
            body,
            _utcnow(),
            self.tasks.take_results(key),
            default_ttl=self.settings.ttl_after_finished,
        )
        reconcile = self.settings.reconcile
        settled = await settle(
            spec,
            start.status,
            start.meta,
            clock=_utcnow,
            run=lambda calls, _status: self._run_inline(body, calls),
            inline=lambda call: call.local and reconcile.inline_local_actions,
            actions=CATALOG,
            inputs=start.inputs,
            in_flight=self.tasks.running(key),
            max_passes=reconcile.max_passes,
            callbacks=self.callbacks,
        )
        await self.apply(key, body, plan(spec, body, start, settled))

    async def apply(self, key: Key, body: dict[str, Any], p: Plan) -> None:
        """Carry out a plan: the one place a reconciliation's effects happen."""
        self.tasks.cancel(key, p.cancel)
        if p.requeue:
            self.queue.add(key)  # a long chain of local steps: go on in the next round
        if p.write is not None:
            old = body.get("status") or {}
            try:
                await self._write(key, body, p.write)
            except Gone:
                self.forget(key)
                return
            except Exception as exc:
                self.tasks.restore(key, p.on_failed_write.restore)
                for call in p.on_failed_write.start:
                    self.tasks.start(key, body, call)
                if isinstance(exc, Conflict):
                    self.scheduler.schedule(key, _utcnow() + _RETRY_AFTER_CONFLICT)
                    return
                if too_large(exc):
                    self.tasks.cancel(key, [c.step for c in p.on_failed_write.start])
                    await self._too_large(key, body, p.write)
                    return
                raise  # counted and backed off by the worker loop
            if p.phase_changed is not None:
                message = p.write.get("message")
                logger.info("workflow %s/%s is %s: %s", *key, p.phase_changed, message)
            if p.delete_stepruns:
                await self.kube.delete_stepruns(*key)
            metrics.observe_finished_steps(self.specs.of(key, body), old, p.write)
        if p.delete:
            logger.info("workflow %s/%s: its ttlAfterFinished has passed; deleting it", *key)
            await self.kube.delete_expired(self.bodies.get(key) or body)
            return  # the watch's DELETED event forgets it
        for call in p.start:
            self.tasks.start(key, body, call)
        self.scheduler.schedule(key, p.wake_at)
        # Best effort from here on: the status write above is what counts.
        if p.remove_annotations:
            await self._remove_annotations(body, p.remove_annotations)
        if p.event is not None:
            self.events.post(key, body, p.event)

    async def _too_large(self, key: Key, body: dict[str, Any], status: dict[str, Any]) -> None:
        """The status to write is over the API server's size limit, so no write of it can
        ever succeed: fail the workflow with what fits (outputs and most history dropped)
        and say so, instead of retrying forever."""
        size = len(json.dumps(status))
        message = (
            f"status would be {size} bytes, over the API server's object size limit; the "
            "workflow is failed with its outputs dropped: make steps return less"
        )
        compact = dict(status)
        compact["steps"] = {
            name: {k: v for k, v in (s or {}).items() if k not in ("output", "callback")}
            for name, s in (status.get("steps") or {}).items()
        }
        compact["history"] = (status.get("history") or [])[-10:]
        now = _utcnow()
        failed = failed_status("StatusTooLarge", message, now).to_wire()
        compact.update({k: failed[k] for k in ("phase", "message", "finishedAt", "conditions")})
        compact.pop("nextWakeAt", None)
        try:
            await self._write(key, body, compact)
        except Exception:
            await self._write(key, body, failed)  # even that did not fit: only the verdict
        logger.warning("workflow %s/%s failed: %s", *key, message)
        await self.kube.post_event(body, "Warning", "StatusTooLarge", message)

    async def _from_template(self, key: Key, body: dict[str, Any]) -> None:
        """Copy the steps of the workflow's template into its spec, with the inputs checked
        and defaulted (one spec write; the watch brings the result back to run). A missing
        template or bad inputs fail the workflow, saying which."""
        if (body.get("status") or {}).get("phase") == WorkflowPhase.FAILED:
            return
        spec = dict(body.get("spec") or {})
        name = spec["templateRef"]["name"]
        template = await self.kube.get_template(key[0], name)
        if template is None:
            reason = "TemplateNotFound"
            message = f"spec.templateRef: there is no WorkflowTemplate {name} in namespace {key[0]}"
        else:
            try:
                resolved = resolve(template, spec)
            except InvalidInputs as exc:
                reason, message = "InvalidInputs", f"inputs of WorkflowTemplate {name}: {exc}"
            except ValueError as exc:
                reason, message = "InvalidTemplate", str(exc)[:2000]
            else:
                try:
                    await self.kube.freeze_spec(body, resolved)
                except Conflict:
                    self.scheduler.schedule(key, _utcnow() + _RETRY_AFTER_CONFLICT)
                    return
                version = resolved["templateRef"]["resourceVersion"]
                await self.kube.post_event(
                    body,
                    "Normal",
                    "TemplateResolved",
                    f"steps copied from WorkflowTemplate {name} (resourceVersion {version})",
                )
                return
        logger.warning("workflow %s/%s failed: %s", *key, message)
        await self._write(key, body, failed_status(reason, message, _utcnow()).to_wire())
        await self.kube.post_event(body, "Warning", reason, message)

    async def _invalid_spec(self, key: Key, body: dict[str, Any], exc: ValidationError) -> None:
        message = f"invalid spec: {describe_errors(exc, 'spec.')}"
        if (body.get("status") or {}).get("phase") == WorkflowPhase.FAILED:
            return
        await self._write(key, body, failed_status("InvalidSpec", message, _utcnow()).to_wire())
        await self.kube.post_event(body, "Warning", "InvalidSpec", message)

    async def _write(self, key: Key, body: dict[str, Any], status: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            written = await self.kube.replace_status(body, status)
        except Exception as exc:
            self.concurrency.record(congested=congestion(exc))
            raise
        self.concurrency.record(latency=time.monotonic() - started)
        self.bodies[key] = slim(written)

    async def _remove_annotations(
        self, body: dict[str, Any], keys: Mapping[str, str | None]
    ) -> None:
        meta = body["metadata"]
        try:
            await self.kube.remove_annotations(meta["namespace"], meta["name"], keys)
        except Exception as exc:  # the decision is recorded; the next pass removes them
            logger.warning(
                "could not remove the decision annotations of %s/%s: %s",
                meta["namespace"],
                meta["name"],
                describe_failure(exc),
            )

    # -- actions -----------------------------------------------------------------------

    async def _run_inline(
        self, body: dict[str, Any], calls: Sequence[ActionCall]
    ) -> list[ActionResult]:
        return list(await asyncio.gather(*(self._execute(body, c) for c in calls)))

    def _context(self, body: dict[str, Any], call: ActionCall) -> ActionContext:
        meta = body["metadata"]
        # The newest copy: it holds the approval decided in the reconciliation that started us.
        latest = self.bodies.get(_key(body)) or body
        step_status = ((latest.get("status") or {}).get("steps") or {}).get(call.step) or {}
        return ActionContext(
            namespace=meta["namespace"],
            workflow=meta["name"],
            workflow_uid=meta["uid"],
            step=call.step,
            visit=call.visit,
            attempt=call.attempt,
            idempotency_key=call.idempotency_key,
            secrets=KubeSecretSource(self.kube.read_secret, meta["namespace"]),
            settings=self.settings.actions.of(call.kind),
            kube=self.kube.typed,
            inputs=(body.get("spec") or {}).get("inputs") or {},
            approval=step_status.get("approval"),
            pins=(latest.get("status") or {}).get("pins") or {},
            timeout=call.timeout,
            stepruns=self.stepruns,
            warn=lambda reason, message: self.kube.post_event(latest, "Warning", reason, message),
        )

    async def _execute(self, body: dict[str, Any], call: ActionCall) -> ActionResult:
        if call.kind == NOTIFY_KIND:  # a notice, not a step's action
            context = dataclasses.replace(
                self._context(body, call), settings=notify.NotifySettings(self.settings.ui_url)
            )
            sent = await execute(notify.send, call, context)
            metrics.NOTIFICATIONS.labels("sent" if sent.ok else "failed").inc()
            return sent
        metrics.ACTION_ATTEMPTS.labels(call.kind).inc()
        if call.poll:
            metrics.POLL_ATTEMPTS.labels(call.kind).inc()
        result = await execute(REGISTRY[call.kind], call, self._context(body, call))
        if result.error is not None:
            metrics.ACTION_ERRORS.labels(call.kind, result.error.error_class).inc()
        return result
