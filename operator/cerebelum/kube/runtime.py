"""The operator's runtime: a cache of Workflows fed by Kopf's watch, a work queue, one
timer heap, and the reconciliation that runs the engine and carries out its effects.

A reconciliation reads the cached object, runs the pure engine (and, inline, any local
actions it asks for, feeding their results straight back), then ends in at most one status
write. Actions that do I/O start only after the write that records their attempt has
succeeded: a crash can then lose a result but never runs an unrecorded attempt, and the
engine re-issues a lost attempt with the same idempotency key.

A reconciliation that fails (the API server is away, or a bug) is retried per workflow with
capped exponential backoff and jitter, so an outage costs a few requests per workflow, not
a flood. After a few failures in a row the workflow gets a Warning Event and a
``Reconciling=False`` condition naming the problem; the next success removes it. When the
API server answers again, every workflow that was backing off is looked at soon, not at
the end of its backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import random
import time
from collections import OrderedDict
from typing import Any

from pydantic import ValidationError

from cerebelum.actions import REGISTRY, ActionContext, execute
from cerebelum.actions.base import transport_error
from cerebelum.actions.python import StepRunResults
from cerebelum.actions.secrets import KubeSecretSource
from cerebelum.api.durations import format_time, parse_time
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import Condition, WorkflowPhase, WorkflowStatus
from cerebelum.engine import (
    ActionCall,
    ActionResult,
    ApprovalDecision,
    EventRecord,
    WorkflowMeta,
    reconcile,
)
from cerebelum.engine.repair import load_status
from cerebelum.kube import metrics
from cerebelum.kube import settings as names
from cerebelum.kube.cache import BodyCache
from cerebelum.kube.client import Conflict, Gone, KubeClient
from cerebelum.kube.concurrency import AdaptiveLimit
from cerebelum.kube.events import EventLimiter, one_event
from cerebelum.kube.settings import OperatorSettings
from cerebelum.kube.workqueue import Key, WakeScheduler, WorkQueue

logger = logging.getLogger("cerebelum.operator")

_RETRY_AFTER_CONFLICT = datetime.timedelta(milliseconds=500)
#: Events being posted at once, and the most waiting to be posted.
_EVENTS_IN_FLIGHT = 4
#: How long an Event waits for a backlog of reconciliations to clear before it is posted.
_EVENT_PATIENCE = 60.0
_EVENT_BACKLOG = 10_000
#: The condition a workflow carries while its reconciliations keep failing.
RECONCILING = "Reconciling"


#: Metadata the operator never reads, and the largest part of a cached object.
_UNREAD_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def slim(body: dict[str, Any]) -> dict[str, Any]:
    """The object as cached: without managedFields and kubectl's copy of the manifest,
    which the engine never reads (and status writes do not send)."""
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return body
    meta = {k: v for k, v in meta.items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and any(a in annotations for a in _UNREAD_ANNOTATIONS):
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in _UNREAD_ANNOTATIONS}
    return {**body, "metadata": meta}  # a copy: the watch's own object is left as it was


class SpecCache:
    """Parsed specs by content, the most recently used kept. Ten thousand workflows from
    one template then hold one parsed spec, not ten thousand (4 KB each for three steps)."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._by_text: OrderedDict[str, WorkflowSpec] = OrderedDict()

    def parse(self, raw: dict[str, Any]) -> WorkflowSpec:
        text = json.dumps(raw, sort_keys=True, separators=(",", ":"))
        spec = self._by_text.get(text)
        if spec is not None:
            self._by_text.move_to_end(text)
            return spec
        spec = WorkflowSpec.model_validate(raw)
        self._by_text[text] = spec
        if len(self._by_text) > self.size:
            self._by_text.popitem(last=False)
        return spec


def _key(body: dict[str, Any]) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def read_decisions(
    annotations: dict[str, str],
) -> tuple[tuple[ApprovalDecision, ...], list[EventRecord]]:
    """Approval decisions from the object's annotations, and Events about those not applied.

    A rejection wins over an approval of the same step given at the same time (the safe
    choice). An approval whose ``approval-data`` is not JSON is not applied: the step would
    get a string it did not ask for (the webhook refuses it; this covers clusters without).
    """
    reason = annotations.get(names.REASON) or None
    decided_by = annotations.get(names.DECIDED_BY) or None
    rejected = (annotations.get(names.REJECT) or "").strip()
    approved = (annotations.get(names.APPROVE) or "").strip()
    notes: list[EventRecord] = []
    decisions = []
    if rejected:
        decisions.append(ApprovalDecision(rejected, False, reason, None, decided_by))
    if approved and approved == rejected:
        notes.append(
            EventRecord(
                "Warning",
                "ConflictingDecision",
                f"both {names.APPROVE} and {names.REJECT} name step {approved}: the rejection "
                "wins, because a rejection always takes precedence over an approval given at "
                "the same time",
            )
        )
    elif approved:
        raw_data = annotations.get(names.APPROVAL_DATA)
        try:
            data = json.loads(raw_data) if raw_data else None
        except json.JSONDecodeError as exc:
            notes.append(
                EventRecord(
                    "Warning",
                    "InvalidApprovalData",
                    f"approval of step {approved} not applied: {names.APPROVAL_DATA} is not "
                    f"JSON ({exc.msg} at character {exc.pos}); annotate again with JSON, "
                    f"e.g. {names.APPROVAL_DATA}='{{\"ticket\": 42}}' or '\"text\"'",
                )
            )
        else:
            decisions.append(ApprovalDecision(approved, True, reason, data, decided_by))
    return tuple(decisions), notes


def _invalid_spec_status(error: ValidationError, now: datetime.datetime) -> WorkflowStatus:
    problems = "; ".join(
        f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in error.errors(include_url=False)
    )
    stamp = format_time(now)
    message = f"invalid spec: {problems}"
    return WorkflowStatus(
        phase=WorkflowPhase.FAILED,
        message=message,
        finished_at=stamp,
        conditions=[
            Condition(
                type="Succeeded",
                status="False",
                reason="InvalidSpec",
                message=message,
                last_transition_time=stamp,
            )
        ],
    )


def observe_finished_steps(
    spec: WorkflowSpec, old_wire: dict[str, Any], new: WorkflowStatus
) -> None:
    """Step durations for the histogram: steps whose visit ended in this reconciliation."""
    before = old_wire.get("steps")
    if not isinstance(before, dict):
        before = {}
    for step in spec.steps:
        s = new.steps.get(step.name)
        if s is None or not s.phase.finished or not (s.started_at and s.finished_at):
            continue
        old = before.get(step.name)
        old = old if isinstance(old, dict) else {}
        if old.get("phase") == s.phase and old.get("visits") == s.visits:
            continue  # finished already
        kind = step.action_kind() or ("approval" if step.approval else "sleep")
        seconds = (parse_time(s.finished_at) - parse_time(s.started_at)).total_seconds()
        metrics.STEP_DURATION.labels(kind, str(s.phase)).observe(max(seconds, 0.0))


def congestion(exc: BaseException) -> bool:
    """The API server pushed back (throttled, failing, unreachable), as opposed to refusing
    this one write (a conflict, a validation error)."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return True
    return transport_error(exc) is not None


def describe_failure(exc: BaseException) -> str:
    """A short, secret-free account of why a reconciliation failed."""
    transient = transport_error(exc)
    if transient is not None:
        return f"the API server is unreachable or failing ({transient.message})"
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        said = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            said = str(json.loads(getattr(exc, "body", "") or "{}").get("message") or "")
        return f"the API server answered HTTP {status}" + (f": {said[:300]}" if said else "")
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Runtime:
    def __init__(self, kube: KubeClient, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self.queue = WorkQueue()
        self.scheduler = WakeScheduler(self.queue)
        self.bodies = BodyCache()
        #: Parsed specs by workflow, with the (uid, generation) they were parsed from.
        self.specs: dict[Key, tuple[tuple[Any, Any], WorkflowSpec]] = {}
        self.shared_specs = SpecCache()
        self.results: dict[Key, list[ActionResult]] = {}
        self.tasks: dict[Key, dict[str, tuple[ActionCall, asyncio.Task[ActionResult]]]] = {}
        self._loops: list[asyncio.Task[None]] = []
        #: Finished StepRuns (python steps) arrive here from the operator's watch.
        self.stepruns = StepRunResults()
        #: Only a leader reconciles (always true without leader election).
        self.leading = True
        #: Reconciliations failed in a row, per workflow (absent: the last one succeeded).
        self.failures: dict[Key, int] = {}
        #: A failure was the API server being away: the next success wakes the others.
        self._api_trouble = False
        #: Events per workflow are rate-limited, as kube's event recorder does.
        self.event_limiter = EventLimiter()
        self._event_tasks: set[asyncio.Task[None]] = set()
        self._event_slots = asyncio.Semaphore(_EVENTS_IN_FLIGHT)
        self.events_dropped = 0
        #: Reconciliations at once: from settings.workers, adapted to the API server.
        self.concurrency = AdaptiveLimit(start=settings.workers, ceiling=settings.max_workers)

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
                self.queue.add(key)
            return
        for steps in self.tasks.values():
            for _, task in steps.values():
                task.cancel()
        self.tasks.clear()
        self.results.clear()

    async def stop(self) -> None:
        if self._event_tasks:  # Events already decided: a moment to post them
            await asyncio.wait(self._event_tasks, timeout=2)
        pending: list[asyncio.Task[Any]] = list(self._loops) + list(self._event_tasks)
        pending += [task for steps in self.tasks.values() for _, task in steps.values()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- input from the watch ----------------------------------------------------------

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        key = _key(body)
        if event_type == "DELETED":
            self.forget(key)
            return
        version = body["metadata"].get("resourceVersion")
        if version is not None and self.bodies.version(key) == version:
            return  # our own write, already applied to the cache
        self.bodies[key] = slim(body)
        self.queue.add(key)

    def forget(self, key: Key) -> None:
        self.bodies.pop(key)
        self.specs.pop(key, None)
        self.results.pop(key, None)
        self.failures.pop(key, None)
        self.event_limiter.forget(key)
        self.scheduler.forget(key)
        for _, task in self.tasks.pop(key, {}).values():
            task.cancel()

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
                    self._succeeded(key)
                finally:
                    self.queue.done(key)
            finally:
                await self.concurrency.release()

    # -- failing reconciliations ---------------------------------------------------------

    def backoff(self, failures: int) -> datetime.timedelta:
        """Wait after the n-th failure in a row: base × 2^(n-1), capped, then jittered down
        by up to half so workflows that failed together do not retry together."""
        base = self.settings.retry_base_seconds
        ceiling = min(base * 2 ** min(failures - 1, 30), self.settings.retry_max_seconds)
        return datetime.timedelta(seconds=ceiling * random.uniform(0.5, 1.0))

    async def _failed(self, key: Key, exc: Exception) -> None:
        count = self.failures.get(key, 0) + 1
        self.failures[key] = count
        unreachable = transport_error(exc) is not None
        self._api_trouble |= unreachable
        wait = self.backoff(count)
        problem = describe_failure(exc)
        if count == 1 and not unreachable:
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
        self.scheduler.schedule(key, datetime.datetime.now(datetime.UTC) + wait)
        if count == self.settings.failures_before_warning:
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
        now = format_time(datetime.datetime.now(datetime.UTC))
        condition = Condition(
            type=RECONCILING,
            status="False",
            reason="ReconcileError",
            message=message,
            last_transition_time=now,
        ).to_wire()
        others = [c for c in status.get("conditions") or [] if c.get("type") != RECONCILING]
        status["conditions"] = [*others, condition]
        try:
            await self._write(key, body, status)
        except Exception as exc:
            logger.debug("could not mark %s/%s as failing: %s", *key, describe_failure(exc))

    def _succeeded(self, key: Key) -> None:
        self.failures.pop(key, None)
        if not self._api_trouble:
            return
        self._api_trouble = False
        # The API server is back: look at every workflow that was backing off, spread over
        # a short while instead of each waiting out its backoff.
        now = datetime.datetime.now(datetime.UTC)
        spread = min(2.0, 0.005 * len(self.failures))
        for other in list(self.failures):
            later = datetime.timedelta(seconds=random.uniform(0, spread))
            self.scheduler.schedule(other, now + later)

    async def reconcile(self, key: Key) -> None:
        body = self.bodies.get(key)
        if body is None or not self.leading:
            return
        now = datetime.datetime.now(datetime.UTC)
        meta = body["metadata"]
        old_wire = body.get("status") or {}
        try:
            spec = self._spec(key, body)
        except ValidationError as exc:
            failed = _invalid_spec_status(exc, now)
            if old_wire.get("phase") != WorkflowPhase.FAILED:
                await self._write(key, body, failed.to_wire())
                await self.kube.post_event(body, "Warning", "InvalidSpec", failed.message or "")
            return
        status, repaired = load_status(spec, old_wire, now)
        annotations = meta.get("annotations") or {}
        workflow = WorkflowMeta(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation", 1)),
            cancel_requested=names.CANCEL in annotations,
        )
        decisions, refused = read_decisions(annotations)
        results = initial_results = tuple(self.results.pop(key, []))
        running = self.tasks.get(key, {})

        deferred: list[ActionCall] = []
        events: list[EventRecord] = list(refused)
        if repaired:
            events.append(EventRecord("Warning", "StatusRepaired", "; ".join(repaired)))
        consumed: list[ApprovalDecision] = []
        cancel: list[str] = []
        for _ in range(self.settings.max_passes):
            in_flight = frozenset(running) | {c.step for c in deferred}
            out = reconcile(
                spec,
                status,
                workflow,
                now,
                decisions=decisions,
                results=results,
                in_flight=in_flight,
            )
            status = out.status
            decisions = ()
            events += out.events
            consumed += out.consumed
            cancel += out.cancel
            deferred = [c for c in deferred if c.step not in out.cancel]
            inline = self.settings.inline_local_actions
            local = [c for c in out.actions if c.local and inline]
            deferred += [c for c in out.actions if not (c.local and inline)]
            if not local:
                break
            results = tuple(await asyncio.gather(*(self._execute(body, c) for c in local)))
            now = datetime.datetime.now(datetime.UTC)
        else:
            self.queue.add(key)  # a long chain of local steps: go on in the next round

        final = out.status
        for step in cancel:
            entry = running.get(step)
            if entry is not None:
                entry[1].cancel()
        # This pass succeeded, so a Reconciling=False condition of earlier failures goes.
        final.conditions = [c for c in final.conditions or [] if c.type != RECONCILING] or None
        new_wire = final.to_wire()
        if new_wire != old_wire:
            try:
                await self._write(key, body, new_wire)
            except Gone:
                self.forget(key)
                return
            except Exception as exc:
                # Nothing of this pass is recorded. Results of background attempts are kept
                # for the next pass; local actions simply run again; attempts whose start
                # was not recorded must not start.
                self.results.setdefault(key, [])[:0] = initial_results
                for call in deferred:
                    if call.resumed:
                        self._start(key, body, call)
                if isinstance(exc, Conflict):
                    self.scheduler.schedule(key, now + _RETRY_AFTER_CONFLICT)
                    return
                raise  # counted and backed off by the worker loop
            for call in deferred:  # recorded: they may start
                self._start(key, body, call)
            deferred = []
            old_phase = old_wire.get("phase") if isinstance(old_wire, dict) else None
            if final.phase != old_phase:
                logger.info("workflow %s/%s is %s: %s", *key, final.phase, final.message)
                if final.phase.finished and any(s.python for s in spec.steps):
                    await self.kube.delete_stepruns(*key)
            observe_finished_steps(spec, old_wire, final)
        for call in deferred:
            self._start(key, body, call)
        self.scheduler.schedule(key, out.wake_at)
        # Best effort from here on: the status write above is what counts.
        if consumed or refused:
            await self._remove_decision_annotations(body, annotations)
        event = one_event(events)
        if event is not None:
            event = self.event_limiter.admit(key, event)
        if event is not None:
            self._post_later(body, event)

    def _post_later(self, body: dict[str, Any], event: EventRecord) -> None:
        """Post an Event off the reconciliation: it is best effort, and a worker slot waiting
        on it would hold back the next workflow's wake-up. A few at a time; past a backlog
        limit (the API server is away or swamped) they are dropped and counted."""
        if len(self._event_tasks) >= _EVENT_BACKLOG:
            self.events_dropped += 1
            if self.events_dropped & (self.events_dropped - 1) == 0:
                logger.warning(
                    "%d Events dropped: the API server is not keeping up", self.events_dropped
                )
            return

        meta = body["metadata"]
        about = {  # only what the Event names: a waiting Event holds no copy of the workflow
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid") if k in meta},
        }

        async def post() -> None:
            async with self._event_slots:
                # Reconciliations first: while workflows wait in the queue, an Event would
                # take the API server's time from their status writes. It waits (a while).
                patience = time.monotonic() + _EVENT_PATIENCE
                while len(self.queue) > self.concurrency.slots and time.monotonic() < patience:
                    await asyncio.sleep(0.2)
                await self.kube.post_event(about, event.type, event.reason, event.message)

        task = asyncio.create_task(post(), name="cerebelum-event")
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def _write(self, key: Key, body: dict[str, Any], status: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            written = await self.kube.replace_status(body, status)
        except Exception as exc:
            self.concurrency.record(congested=congestion(exc))
            raise
        self.concurrency.record(latency=time.monotonic() - started)
        self.bodies[key] = slim(written)

    def _spec(self, key: Key, body: dict[str, Any]) -> WorkflowSpec:
        """The parsed spec, parsed again only when the object's generation changes; workflows
        with the same spec (made from one template) share one parsed copy."""
        meta = body["metadata"]
        stamp = (meta.get("uid"), meta.get("generation"))
        cached = self.specs.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        spec = self.shared_specs.parse(body.get("spec") or {})
        self.specs[key] = (stamp, spec)
        return spec

    async def _remove_decision_annotations(
        self, body: dict[str, Any], annotations: dict[str, str]
    ) -> None:
        keys = [
            k
            for k in (
                names.APPROVE,
                names.REJECT,
                names.REASON,
                names.APPROVAL_DATA,
                names.DECIDED_BY,
            )
            if k in annotations
        ]
        if keys:
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
            secrets=KubeSecretSource(self.kube.core, meta["namespace"]),
            digitalocean_endpoint=self.settings.digitalocean_endpoint,
            kube=self.kube.api,
            inputs=(body.get("spec") or {}).get("inputs") or {},
            approval=step_status.get("approval"),
            timeout=call.timeout,
            stepruns=self.stepruns,
            warn=lambda reason, message: self.kube.post_event(latest, "Warning", reason, message),
            unclaimed_warning=datetime.timedelta(seconds=self.settings.unclaimed_warning_seconds),
        )

    async def _execute(self, body: dict[str, Any], call: ActionCall) -> ActionResult:
        metrics.ACTION_ATTEMPTS.labels(call.kind).inc()
        if call.poll:
            metrics.POLL_ATTEMPTS.labels(call.kind).inc()
        result = await execute(REGISTRY[call.kind], call, self._context(body, call))
        if result.error is not None:
            metrics.ACTION_ERRORS.labels(call.kind, result.error.error_class).inc()
        return result

    def _start(self, key: Key, body: dict[str, Any], call: ActionCall) -> None:
        steps = self.tasks.setdefault(key, {})
        if call.step in steps:
            return
        task = asyncio.create_task(
            self._execute(body, call), name=f"action-{key[0]}-{key[1]}-{call.step}"
        )
        steps[call.step] = (call, task)

        def finished(done: asyncio.Task[ActionResult]) -> None:
            if steps.get(call.step, (None, None))[1] is done:
                del steps[call.step]
            if done.cancelled():
                return
            self.results.setdefault(key, []).append(done.result())
            self.queue.add(key, urgent=True)  # a result waits behind no watch event

        task.add_done_callback(finished)
