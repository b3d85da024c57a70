"""The operator's own list-and-watch of Workflows: list in pages, then watch from the list's
version, for as long as the operator runs.

Kopf watches the other kinds (CronWorkflows, StepRuns). Workflows are watched here because
Kopf's per-event machinery (per-object memories and workers, three loggers, cause
detection, handler invocation) was a fifth of the operator's CPU at 5,000 workflows, for
events four in five of which are the echo of the operator's own status write
(``bench/vs_argo.py --py-spy``). Here an event costs a JSON parse and a version compare.

The semantics are the reflector's (client-go) and Kopf's:

- the first list, and every relist, goes in pages of ``page_size``, each page handed over
  as it arrives (after a restart with 10,000 workflows, timers are set page by page), and
  between pages ``between`` is awaited: the operator lets the workflows already due be
  taken by its workers before it parses the next page;
  listed objects are observed with the event type ``None``, as Kopf reports them;
- a relist ends with ``relisted``: objects the cache holds in that namespace and the list
  no longer has were deleted while no watch was open;
- the watch resumes from the last version seen (bookmarks included); the API server ends
  each watch after ``server_timeout`` seconds and the next one starts from there;
- "410 Gone" (the version was compacted) means a relist; any other failure (the API server
  away, a refused request) is retried with capped exponential backoff and jitter, logged
  at the first failure and then at the 2nd, 4th, 8th... in a row.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cerebelum.actions.errors import ApiError
from cerebelum.kube.client import KubeClient
from cerebelum.kube.failures import describe_failure

logger = logging.getLogger("cerebelum.watch")

#: Hands one object over: (event type, object); None is an object seen in a list.
Observe = Callable[[str | None, dict[str, Any]], None]
#: A relist of a namespace (None: all) ended; these were its objects' (namespace, name).
Relisted = Callable[[str | None, set[tuple[str, str]]], None]
#: Awaited between the pages of a list: what is due goes first.
Between = Callable[[], Awaitable[None]]


async def _no_pause() -> None:
    await asyncio.sleep(0)


@dataclass(frozen=True)
class WatchSettings:
    page_size: int = 500
    server_timeout: int = 600
    backoff_base: float = 1.0
    backoff_max: float = 30.0


class Expired(Exception):
    """The version to watch from is gone from the API server's history: relist."""


class ResourceWatch:
    """List-and-watch of one of our kinds in one namespace (None: cluster-wide)."""

    def __init__(
        self,
        kube: KubeClient,
        plural: str,
        namespace: str | None,
        observe: Observe,
        relisted: Relisted,
        settings: WatchSettings = WatchSettings(),
        between: Between = _no_pause,
    ) -> None:
        self.kube = kube
        self.plural = plural
        self.namespace = namespace
        self.observe = observe
        self.relisted = relisted
        self.settings = settings
        self.between = between
        #: Set once the first list has been handed over completely.
        self.listed = asyncio.Event()

    @property
    def where(self) -> str:
        return f"{self.plural} in {self.namespace or 'all namespaces'}"

    async def run(self) -> None:
        failures = 0
        version = ""
        while True:
            try:
                if not version:
                    version = await self.relist()
                    self.listed.set()
                version = await self.watch(version)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Expired:
                logger.info("watch of %s: version %s expired; listing again", self.where, version)
                version = ""
            except Exception as exc:
                failures += 1
                wait = min(
                    self.settings.backoff_max, self.settings.backoff_base * 2 ** (failures - 1)
                )
                wait *= random.uniform(0.8, 1.2)
                if failures & (failures - 1) == 0:
                    logger.warning(
                        "watch of %s failed (%d in a row): %s; again in %.1fs",
                        self.where,
                        failures,
                        describe_failure(exc),
                        wait,
                    )
                await asyncio.sleep(wait)

    async def relist(self) -> str:
        """List every object, page by page; return the version to watch from."""
        seen: set[tuple[str, str]] = set()
        after: str | None = None
        while True:
            try:
                page = await self.kube.list_page(
                    self.plural, self.namespace, self.settings.page_size, after
                )
            except ApiError as exc:
                if exc.status == 410 and after:  # the continue token expired: start over
                    seen.clear()
                    after = None
                    continue
                raise
            for item in page.get("items") or []:
                meta = item.get("metadata") or {}
                seen.add((meta.get("namespace", ""), meta.get("name", "")))
                self.observe(None, item)
            after = (page.get("metadata") or {}).get("continue") or None
            if after is None:
                self.relisted(self.namespace, seen)
                return str((page.get("metadata") or {}).get("resourceVersion") or "")
            await self.between()

    async def watch(self, version: str) -> str:
        """One watch request from ``version``; return the last version seen."""
        try:
            async for event in self._events(version):
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Expired(version)
                    message = obj.get("message", obj)
                    raise RuntimeError(f"the watch ended with an error: {message}")
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.observe(kind, obj)
        except ApiError as exc:
            if exc.status == 410:  # refused at once: the version is already gone
                raise Expired(version) from None
            raise
        return version

    def _events(self, version: str) -> AsyncIterator[dict[str, Any]]:
        return self.kube.watch(self.plural, self.namespace, version, self.settings.server_timeout)
