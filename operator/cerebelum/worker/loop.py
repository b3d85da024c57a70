"""The worker process: watch the queue's StepRuns, claim, run, renew, report.

Every write is a status update carrying the resourceVersion the worker last saw, so two
workers can never both believe they hold a claim: the second write is refused (409) and
that worker walks away. While a step runs its lease is renewed every third of its length;
a renewal that finds the StepRun deleted (the operator cancelled the attempt) or claimed by
someone else drops the step's result instead of writing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cerebelum.actions.api_retry import object_missing
from cerebelum.actions.errors import transport_error
from cerebelum.api import GROUP, VERSION
from cerebelum.api.durations import parse_time
from cerebelum.api.objects import status_update
from cerebelum.api.status import StepError
from cerebelum.api.steprun import LABEL_QUEUE, STEPRUN_PLURAL, StepRunSpec, StepRunStatus
from cerebelum.sdk.context import Context
from cerebelum.sdk.steps import StepDef
from cerebelum.worker import lease
from cerebelum.worker.runner import StepOutcome, call_step, in_daemon_thread, pause_request

logger = logging.getLogger("cerebelum.worker")

Key = tuple[str, str]

_WATCH_SECONDS = 300
_RETRY_SECONDS = 2.0
_FIRST_RETRY_SECONDS = 0.2
_MAX_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class WorkerSettings:
    queue: str
    #: Namespaces to serve; empty: all namespaces.
    namespaces: tuple[str, ...]
    identity: str
    lease: datetime.timedelta = datetime.timedelta(seconds=15)
    concurrency: int = 4


class Lost(Exception):
    """The claim is no longer ours: the StepRun was deleted or taken over."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key(body: dict[str, Any]) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def _describe(exc: BaseException) -> str:
    """Short and secret-free: the kind of failure, never the request."""
    transient = transport_error(exc)
    if transient is not None:
        return transient.message
    status = getattr(exc, "status", None)
    return f"HTTP {status}" if status is not None else type(exc).__name__


def _status(body: dict[str, Any]) -> StepRunStatus:
    return StepRunStatus.model_validate(body.get("status") or {})


class Worker:
    def __init__(
        self, api: Any, settings: WorkerSettings, functions: Mapping[str, StepDef]
    ) -> None:
        from kubernetes_asyncio import client

        self.custom = client.CustomObjectsApi(api)
        self.settings = settings
        self.functions = functions
        #: The newest version of every unfinished StepRun of the queue.
        self.known: dict[Key, dict[str, Any]] = {}
        #: Steps this worker is claiming or running.
        self.running: dict[Key, asyncio.Task[None]] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._looks: set[asyncio.Task[None]] = set()
        self.stopping = False

    # -- watching -----------------------------------------------------------------------

    async def run(self) -> None:
        namespaces: tuple[str | None, ...] = self.settings.namespaces or (None,)
        await asyncio.gather(*(self._watch(ns) for ns in namespaces))

    async def _list(self, namespace: str | None, **kwargs: Any) -> dict[str, Any]:
        selector = f"{LABEL_QUEUE}={self.settings.queue}"
        if namespace is None:
            result: dict[str, Any] = await self.custom.list_cluster_custom_object(
                GROUP, VERSION, STEPRUN_PLURAL, label_selector=selector, **kwargs
            )
        else:
            result = await self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, STEPRUN_PLURAL, label_selector=selector, **kwargs
            )
        return result

    async def _watch(self, namespace: str | None) -> None:
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.exceptions import ApiException

        where = namespace or "all namespaces"
        while not self.stopping:
            try:
                listing = await self._list(namespace)
                for item in listing.get("items", []):
                    self.observe("ADDED", item)
                version = listing["metadata"]["resourceVersion"]
                kwargs: dict[str, Any] = {
                    "label_selector": f"{LABEL_QUEUE}={self.settings.queue}",
                    "resource_version": version,
                    "timeout_seconds": _WATCH_SECONDS,
                    "allow_watch_bookmarks": True,
                }
                source: Any
                if namespace is None:
                    source = self.custom.list_cluster_custom_object
                    args: tuple[str, ...] = (GROUP, VERSION, STEPRUN_PLURAL)
                else:
                    source = self.custom.list_namespaced_custom_object
                    args = (GROUP, VERSION, namespace, STEPRUN_PLURAL)
                async with watch.Watch() as stream:  # closes its connection and session
                    async for event in stream.stream(source, *args, **kwargs):
                        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                            self.observe(event["type"], event["object"])
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status != 410:  # 410: our version is too old; list again
                    logger.warning("watching stepruns in %s: HTTP %s", where, exc.status)
                    await asyncio.sleep(_RETRY_SECONDS)
            except Exception as exc:
                logger.warning("watching stepruns in %s failed: %s", where, type(exc).__name__)
                await asyncio.sleep(_RETRY_SECONDS)

    def observe(self, event_type: str, body: dict[str, Any]) -> None:
        key = _key(body)
        if event_type == "DELETED" or _status(body).phase.finished:
            self.known.pop(key, None)
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            return
        self.known[key] = body
        self._consider(key)

    def _consider(self, key: Key) -> None:
        body = self.known.get(key)
        if body is None or key in self.running or self.stopping:
            return
        status = _status(body)
        now = _now()
        if lease.claimable(status, now):
            if len(self.running) < self.settings.concurrency:
                task = asyncio.create_task(self._take(key, body), name=f"step-{key[0]}-{key[1]}")
                self.running[key] = task
                task.add_done_callback(lambda _: self._finished(key))
            return
        expiry = lease.lease_expiry(status)
        if expiry is not None:  # someone else's claim: look again when its lease runs out
            old = self._timers.pop(key, None)
            if old is not None:
                old.cancel()
            delay = max((expiry - now).total_seconds(), 0.0) + 0.05
            self._timers[key] = asyncio.get_running_loop().call_later(delay, self._consider, key)

    def _finished(self, key: Key) -> None:
        self.running.pop(key, None)
        for other in list(self.known):
            if len(self.running) >= self.settings.concurrency:
                break
            self._consider(other)

    # -- one step -----------------------------------------------------------------------

    async def _write(self, body: dict[str, Any], status: StepRunStatus) -> dict[str, Any]:
        """Status update with the resourceVersion of ``body``: Conflict if it changed."""
        meta = body["metadata"]
        new_body = status_update(body, status.to_wire())
        result: dict[str, Any] = await self.custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], STEPRUN_PLURAL, meta["name"], new_body
        )
        return result

    async def _read(self, key: Key) -> dict[str, Any]:
        result: dict[str, Any] = await self.custom.get_namespaced_custom_object(
            GROUP, VERSION, key[0], STEPRUN_PLURAL, key[1]
        )
        return result

    async def _take(self, key: Key, body: dict[str, Any]) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        status = _status(body)
        claimed = lease.claim(status, self.settings.identity, _now(), self.settings.lease)
        try:
            body = await self._write(body, claimed)
        except Exception as exc:
            if object_missing(exc, key[1]):
                return  # deleted: the watch says so too
            if not (isinstance(exc, ApiException) and exc.status == 409):
                logger.warning(
                    "claiming steprun %s/%s failed (%s); looking again in %gs",
                    *key,
                    _describe(exc),
                    _RETRY_SECONDS,
                )
            # Another worker won, the StepRun changed, or the API server is away (and the
            # claim may have landed before the connection broke). The copy here is stale
            # either way: read the StepRun again instead of claiming from it in a loop.
            self.known.pop(key, None)
            self._look_later(key)
            return
        spec = StepRunSpec.model_validate(body["spec"])
        logger.info(
            "claimed %s/%s: %s attempt %d%s",
            *key,
            spec.function,
            spec.attempt,
            " (taken over)" if claimed.claims > 1 else "",
        )
        holder = _Holder(body, claimed.claims)
        renewing = asyncio.create_task(self._renew(key, holder))
        try:
            outcome = await self._execute(key, spec, holder)
        except Lost as exc:
            logger.warning("dropping the result of %s/%s: %s", *key, exc)
            return
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        await self._report(key, holder, outcome)

    async def _execute(self, key: Key, spec: StepRunSpec, holder: _Holder) -> StepOutcome:
        stepdef = self.functions.get(spec.function)
        if stepdef is None:
            known = ", ".join(sorted(self.functions)) or "none"
            return StepOutcome(
                ok=False,
                error=StepError(
                    error_class="FunctionNotFound",
                    message=f"worker {self.settings.identity} (queue {self.settings.queue}) has "
                    f"no step function {spec.function}; it has: {known}",
                    retryable=False,
                ),
            )
        deadline = parse_time(spec.deadline) if spec.deadline else None
        timeout = (deadline - _now()).total_seconds() if deadline else None
        if timeout is not None and timeout <= 0:
            error = StepError(
                error_class="Timeout", message="deadline passed before the step ran", retryable=True
            )
            return StepOutcome(ok=False, error=error)
        context = Context(
            workflow_name=spec.workflow,
            step_name=spec.step,
            inputs=spec.inputs or {},
            attempt=spec.attempt,
            visit=spec.visit,
            namespace=key[0],
            idempotency_key=spec.idempotency_key,
            approval=spec.approval,
            deadline=deadline,
            fencing_token=holder.claims,
        )
        run = asyncio.ensure_future(
            in_daemon_thread(
                lambda: call_step(
                    stepdef, context, spec.arguments or {}, spec.checks or [], timeout
                )
            )
        )
        lost = asyncio.ensure_future(holder.lost.wait())
        try:
            done, _ = await asyncio.wait({run, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if run not in done:
            run.cancel()  # the thread runs on unobserved; its result will not be written
            raise Lost(holder.why)
        return run.result()

    async def _renew(self, key: Key, holder: _Holder) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        interval = self.settings.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            status = lease.renew(_status(holder.body), _now(), self.settings.lease)
            try:
                holder.body = await self._write(holder.body, status)
            except Exception as exc:
                if object_missing(exc, key[1]):
                    holder.lose("the steprun was deleted (attempt cancelled)")
                    return
                if not (isinstance(exc, ApiException) and exc.status == 409):
                    # The API server is away: nobody else can claim meanwhile; try again.
                    logger.warning("renewing the lease of %s/%s failed: %s", *key, _describe(exc))
                    continue
                try:
                    fresh = await self._read(key)
                except Exception as read_exc:
                    if object_missing(read_exc, key[1]):
                        holder.lose("the steprun was deleted (attempt cancelled)")
                        return
                    continue  # unknown yet: the next renewal finds out
                if lease.holds(_status(fresh), self.settings.identity, holder.claims):
                    holder.body = fresh
                    continue
                holder.lose("another worker has taken the claim over")
                return

    async def _report(self, key: Key, holder: _Holder, outcome: StepOutcome) -> None:
        """Write the result, for as long as the claim is ours: through API outages (the
        claim cannot be taken meanwhile: every takeover is a write too) and conflicts with
        an unrelated change. Giving up would lose the result and run the step again."""
        now = _now()
        delay = _FIRST_RETRY_SECONDS
        failures = 0
        while True:
            current = _status(holder.body)
            if outcome.ok:
                final = lease.succeeded(
                    current, outcome.value, outcome.checks, now, pause_request(outcome.pause)
                )
            else:
                assert outcome.error is not None
                final = lease.failed(current, outcome.error, now)
            try:
                await self._write(holder.body, final)
            except Exception as exc:
                if object_missing(exc, key[1]):
                    logger.warning("%s/%s was deleted before its result was written", *key)
                    return
                failures += 1
                if failures & (failures - 1) == 0:  # 1, 2, 4, 8...: not a flood
                    logger.warning(
                        "writing the result of %s/%s failed (%s); retrying", *key, _describe(exc)
                    )
            else:
                if outcome.ok:
                    logger.info("%s/%s succeeded", *key)
                else:
                    assert outcome.error is not None
                    logger.info("%s/%s failed: %s", *key, outcome.error.error_class)
                return
            # The write may have landed before the connection broke, or the StepRun changed
            # (a conflict): read it, and go on from the newest copy.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _MAX_RETRY_SECONDS)
            try:
                fresh = await self._read(key)
            except Exception as exc:
                if object_missing(exc, key[1]):
                    logger.warning("%s/%s was deleted before its result was written", *key)
                    return
                continue
            status = _status(fresh)
            if status.phase.finished and status.result_claim == holder.claims:
                logger.info("%s/%s: its result was written", *key)
                return
            if not lease.holds(status, self.settings.identity, holder.claims):
                logger.warning("dropping the result of %s/%s: claim lost", *key)
                return
            holder.body = fresh

    # -- reading one StepRun again -----------------------------------------------------

    def _look_later(self, key: Key) -> None:
        """Read the StepRun again in a moment (its copy here is stale or missing)."""
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(
            _RETRY_SECONDS, self._start_look, key
        )

    def _start_look(self, key: Key) -> None:
        self._timers.pop(key, None)
        if self.stopping:
            return
        task = asyncio.create_task(self._look(key), name=f"look-{key[0]}-{key[1]}")
        self._looks.add(task)
        task.add_done_callback(self._looks.discard)

    async def _look(self, key: Key) -> None:
        try:
            body = await self._read(key)
        except Exception as exc:
            if not object_missing(exc, key[1]):
                self._look_later(key)  # still away: again later
            return
        self.observe("MODIFIED", body)

    async def stop(self, grace: float) -> None:
        """Stop claiming; give running steps ``grace`` seconds, then leave them (their
        leases run out and other workers take them over)."""
        self.stopping = True
        for timer in self._timers.values():
            timer.cancel()
        for look in self._looks:
            look.cancel()
        running = list(self.running.values())
        if running:
            logger.info("waiting up to %gs for %d running steps", grace, len(running))
            await asyncio.wait(running, timeout=grace)


class _Holder:
    """This worker's live claim: the newest body it wrote, and whether it was lost."""

    def __init__(self, body: dict[str, Any], claims: int) -> None:
        self.body = body
        self.claims = claims
        self.lost = asyncio.Event()
        self.why = ""

    def lose(self, why: str) -> None:
        self.why = why
        self.lost.set()
