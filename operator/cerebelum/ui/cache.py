"""One watch-fed cache of Workflows per user and namespace: pages and filters are served
from it, and every browser tab of that user gets its live updates from the same watch (one
watch per UI process and user, not one per tab). It is made with the user's credentials,
so a user sees exactly what ``kubectl get workflows`` would show them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from cerebelum.ui.views import summary

logger = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "cerebelum.io", "v1alpha1", "workflows"
#: Updates a slow tab may have waiting before it is dropped (it reloads when it reconnects).
SUBSCRIBER_BACKLOG = 1000


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    annotations = meta.get("annotations") or {}
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    return {**obj, "metadata": meta}


class WatchCache:
    def __init__(self, api: Any, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.items: dict[str, dict[str, Any]] = {}
        #: The list's row of each workflow, computed once per change (not per request).
        self.rows: dict[str, dict[str, Any]] = {}
        self.ready = asyncio.Event()
        #: Why the last list failed (a 403: the user may not list workflows here).
        self.error: ApiException | None = None
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"ui-watch-{self.namespace}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def load(self, items: list[dict[str, Any]]) -> None:
        """Fill the cache without an API server (the bench)."""
        self._replace(items)
        self.ready.set()

    def _replace(self, items: list[dict[str, Any]]) -> None:
        self.items = {i["metadata"]["name"]: _slim(i) for i in items}
        self.rows = {name: summary(obj) for name, obj in self.items.items()}

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.discard(queue)

    def _publish(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        change = {
            "type": kind,
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "phase": (obj.get("status") or {}).get("phase"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                self.subscribers.discard(queue)

    async def _run(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        backoff = 0.5
        while True:
            try:
                listed = await custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL
                )
                self._replace(listed["items"])
                self.error = None
                self.ready.set()
                self._publish("RESYNC", {"metadata": {"namespace": self.namespace}})
                version = listed["metadata"]["resourceVersion"]
                backoff = 0.5
                async with watch.Watch() as stream:
                    async for event in stream.stream(
                        custom.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        self.namespace,
                        PLURAL,
                        resource_version=version,
                        timeout_seconds=300,
                        allow_watch_bookmarks=True,
                    ):
                        kind, obj = event.get("type"), event.get("object")
                        if not isinstance(obj, dict) or kind not in (
                            "ADDED",
                            "MODIFIED",
                            "DELETED",
                        ):
                            continue
                        name = obj["metadata"]["name"]
                        if kind == "DELETED":
                            self.items.pop(name, None)
                            self.rows.pop(name, None)
                        else:
                            self.items[name] = _slim(obj)
                            self.rows[name] = summary(obj)
                        self._publish(kind, obj)
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                self.error = exc
                self.ready.set()
                await asyncio.sleep(min(backoff, 30))
                backoff *= 2
            except Exception as exc:  # a broken connection: list again
                logger.info(
                    "watch of workflows in %s ended: %s", self.namespace, type(exc).__name__
                )
                await asyncio.sleep(min(backoff, 30))
                backoff *= 2
