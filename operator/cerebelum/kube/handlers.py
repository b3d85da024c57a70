"""Kopf registration. Run with ``python -m cerebelum.kube.main`` (``cerebelum operator``).

Workflows are watched by the runtime itself (``kube.watch``: a fifth of the operator's CPU
went to Kopf's per-event machinery at scale); Kopf watches CronWorkflows and StepRuns with
``on.event``, serves the webhooks and the liveness endpoint, and runs startup and cleanup.
Change-tracking handlers (``on.create``/``on.update``) are not used: they would add
finalizers and annotations to every Workflow, and a waiting handler would be re-run by Kopf
with a touch patch every few minutes. Waiting here is a heap entry instead (see
``workqueue``).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
from typing import Any, cast

import kopf

from cerebelum import expressions
from cerebelum.api import GROUP, PLURAL, VERSION
from cerebelum.api.cronworkflow import CRON_PLURAL
from cerebelum.api.steprun import STEPRUN_PLURAL
from cerebelum.kube import metrics, rest
from cerebelum.kube.callbacks import CallbackEndpoint
from cerebelum.kube.client import KubeClient
from cerebelum.kube.leader import LeaderElector
from cerebelum.kube.main import NAMESPACES_MEMO
from cerebelum.kube.runtime import Runtime
from cerebelum.kube.settings import OperatorSettings
from cerebelum.kube.wakehint import WakeHint
from cerebelum.kube.watch import ResourceWatch

# A crash in native code (the CEL parser, a TLS library) must leave a trace in the log
# instead of a silent restart: Python then prints every thread's stack on SIGSEGV/SIGABRT.
faulthandler.enable()


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base. Kopf builds one on every watch event (a deep copy of the whole object,
    status included) to find the changes its change handlers (on.create, on.update,
    on.field) react to; this operator registers none, and that copy was a fifteenth of its
    CPU at 5,000 workflows (``bench/vs_argo.py --py-spy``)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


# Kopf's watches log in as the operator's own client does (kube.rest), and Kopf's fallback
# login through kubernetes_asyncio (an import of a third of a second at start) is not used.
kopf.on.login()(rest.login)


@kopf.on.startup()
async def start(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    settings.posting.enabled = False  # the runtime posts its own, meaningful Events
    settings.persistence.diffbase_storage = NoDiffBase()
    # Kopf logs "Handler 'workflow_event' succeeded" for every watch event: thousands of
    # lines a second at scale, and nothing a user needs. Its warnings and errors stay.
    objects = logging.getLogger("kopf.objects")
    if objects.getEffectiveLevel() > logging.DEBUG:
        objects.setLevel(logging.WARNING)
    # Only our own resource is watched, by name: no need to scan (and be allowed to list) CRDs.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 600
    # Kopf's watches (CronWorkflows, StepRuns) list in pages as ours does, and let an idle
    # per-object worker go at once: it holds the object's last full body, and our handlers
    # keep no state in it.
    settings.watching.chunk_size = 500
    settings.queueing.idle_timeout = 0.2
    if NAMESPACES_MEMO not in memo:
        raise kopf.PermanentError(
            "start the operator with `cerebelum operator` or `python -m cerebelum.kube.main`: "
            "it watches Workflows itself and must be told the namespaces"
        )
    operator_settings = OperatorSettings.from_env()
    webhook = operator_settings.webhook
    if webhook.port is not None:
        settings.admission.server = kopf.WebhookServer(
            addr=webhook.addr, port=webhook.port, certfile=webhook.cert, pkeyfile=webhook.key
        )
    api = await rest.RestClient.connect()
    runtime = Runtime(KubeClient(api, operator_settings.component), operator_settings)
    leader = operator_settings.leader
    if leader.enabled:
        runtime.leading = False
        elector = LeaderElector(
            api,
            leader.namespace,
            leader.name,
            leader.identity,
            lease_seconds=leader.lease_seconds,
            renew_seconds=leader.renew_seconds,
            on_change=runtime.set_leading,
        )
        memo["elector"] = elector
        memo["election"] = asyncio.create_task(elector.run(), name="cerebelum-leader-election")
    runtime.start()
    if operator_settings.wake_hint.enabled:
        # Before the list: the workflows that fell due while no operator ran go first.
        hint = WakeHint(runtime.kube, operator_settings.wake_hint)
        fetched = await hint.restore(memo[NAMESPACES_MEMO], runtime.observe)
        if fetched:
            logger.info("%d workflows due from the wake-up hint, before the list", fetched)
            # Their status writes go before the list's pages, which would share the API
            # server (and this process) with them; half a second at most.
            await runtime.queue.urgent_done(timeout=0.5)
        memo["wake-hint"] = asyncio.create_task(
            hint.run(lambda: runtime.scheduler.deadlines, lambda: runtime.leading),
            name="cerebelum-wake-hint",
        )
    # The initial list in pages: after a restart with 10,000 workflows, one list of all of
    # them peaked the operator at 1.7x its steady RSS and held every timer back until the
    # whole answer was parsed; a page at a time, timers are set as pages arrive
    # (bench/restart.py).
    # Between pages, the workflows already due go first (at most a second per page).
    watches = [
        ResourceWatch(
            runtime.kube,
            PLURAL,
            namespace,
            runtime.observe,
            runtime.relisted,
            between=lambda: runtime.queue.urgent_taken(timeout=1.0),
        )
        for namespace in memo[NAMESPACES_MEMO] or [None]
    ]
    memo["watches"] = [
        asyncio.create_task(w.run(), name=f"cerebelum-watch-{w.namespace or 'all'}")
        for w in watches
    ]
    memo["warm-up"] = asyncio.create_task(_warm_up(watches, runtime.kube), name="cerebelum-warm-up")
    if operator_settings.callbacks.port is not None:
        endpoint = CallbackEndpoint(api, runtime.callbacks)
        await endpoint.start(operator_settings.callbacks)
        memo["callbacks"] = endpoint
    if operator_settings.metrics_port is not None:
        metrics.serve(
            operator_settings.metrics_port,
            runtime.bodies.summaries,
            lambda: runtime.scheduler.waiting,
        )
        metrics.RECONCILE_SLOTS.set_function(lambda: runtime.concurrency.slots)
        metrics.QUEUE_DEPTH.set_function(lambda: len(runtime.queue))
    memo["runtime"] = runtime
    logger.info("cerebelum operator started with %d workers", operator_settings.reconcile.workers)


async def _warm_up(watches: list[ResourceWatch], kube: KubeClient) -> None:
    """Once every first list is in (the restart's urgent part), import the CEL library and
    the typed Kubernetes client on a thread, so neither the first expression nor the first
    Job stalls the event loop on the import."""
    await asyncio.gather(*(w.listed.wait() for w in watches))
    await asyncio.get_running_loop().run_in_executor(None, expressions.warm_up)
    kube.warm_up()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    tasks: list[asyncio.Task[None] | None] = [
        *(memo.get("watches") or []),
        memo.get("warm-up"),
        memo.get("wake-hint"),
    ]
    watches = [t for t in tasks if t is not None]
    for task in watches:
        task.cancel()
    await asyncio.gather(*watches, return_exceptions=True)
    election = memo.get("election")
    if election is not None:
        election.cancel()
        await memo["elector"].release()
    endpoint: CallbackEndpoint | None = memo.get("callbacks")
    if endpoint is not None:
        await endpoint.stop()
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()
        await runtime.kube.close()


# Handlers are async so Kopf calls them on the event loop: a sync handler would run on a
# thread of its executor, a hop per event (and the runtime's queue is not thread-safe).
@kopf.on.event(GROUP, VERSION, CRON_PLURAL)
async def cronworkflow_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    body = event.get("object")
    if runtime is not None and isinstance(body, dict):
        runtime.crons.observe(event.get("type"), cast(dict[str, Any], body))


@kopf.on.event(GROUP, VERSION, STEPRUN_PLURAL)
async def steprun_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Results of python steps: handed to the attempts waiting for them."""
    runtime: Runtime | None = memo.get("runtime")
    body = event.get("object")
    if runtime is not None and isinstance(body, dict) and event.get("type") != "DELETED":
        runtime.stepruns.observe(cast(dict[str, Any], body))
