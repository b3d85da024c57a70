"""The few API calls the operator makes, through its own client (``kube.rest``: aiohttp, as
Kopf uses).

Kept in one place so the operator's API traffic is easy to count and to reason about:
a status write (PUT with resourceVersion, so a stale read can never overwrite newer
state), an annotation patch, and Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cerebelum.actions.api_retry import object_missing
from cerebelum.actions.errors import ApiError
from cerebelum.actions.owned import label_value
from cerebelum.api import GROUP, PLURAL, VERSION
from cerebelum.api.cronworkflow import CRON_PLURAL
from cerebelum.api.objects import status_update
from cerebelum.api.steprun import LABEL_WORKFLOW, STEPRUN_PLURAL
from cerebelum.api.workflowtemplate import TEMPLATE_PLURAL
from cerebelum.kube.metrics import API_REQUESTS
from cerebelum.kube.rest import RestClient, path_of
from cerebelum.kube.settings import CANCEL

logger = logging.getLogger(__name__)


@contextmanager
def _counted(verb: str, resource: str) -> Iterator[None]:
    """Count one API request in cerebelum_api_requests_total, with its outcome."""
    code = "200"
    try:
        yield
    except ApiError as exc:
        code = str(exc.status)
        raise
    except Exception:
        code = "error"
        raise
    finally:
        API_REQUESTS.labels(verb, resource, code).inc()


class Conflict(Exception):
    """The object changed since it was read; reconcile again from the newer version."""


class Gone(Exception):
    """The object no longer exists."""


class KubeClient:
    def __init__(self, rest: RestClient, component: str) -> None:
        self.rest = rest
        self._component = component
        self._typed: asyncio.Task[Any] | None = None

    async def typed(self) -> Any:
        """``kubernetes_asyncio``'s ApiClient, for the actions that use its typed APIs (Jobs,
        python steps). Imported on a thread the first time it is asked for (the import takes
        a third of a second or more, which must not stall the event loop), and configured the
        way ``rest.login`` finds the credentials."""
        return await asyncio.shield(self.warm_up())

    def warm_up(self) -> asyncio.Task[Any]:
        """Start importing the typed client now (after the start's urgent part), once."""
        if self._typed is None:
            self._typed = asyncio.create_task(_typed_client())
        return self._typed

    async def close(self) -> None:
        if self._typed is not None:
            if not self._typed.done():
                self._typed.cancel()
            # Never loaded (cancelled, or it failed): nothing to close.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await (await self._typed).close()
        await self.rest.close()

    async def list_page(
        self, plural: str, namespace: str | None, limit: int, after: str | None
    ) -> dict[str, Any]:
        """One page of a list of our objects (``namespace`` None: every namespace): its
        ``items``, ``metadata.continue`` and ``metadata.resourceVersion``."""
        params: dict[str, str | int] = {"limit": limit}
        if after:
            params["continue"] = after
        with _counted("list", plural):
            return await self.rest.request(
                "GET", path_of(GROUP, VERSION, plural, namespace), params=params
            )

    async def watch(
        self, plural: str, namespace: str | None, version: str, timeout: int
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request from ``version``, bookmarks included, until the
        API server ends it (``timeout`` seconds). A refused request raises ApiError.

        The stream is split into lines here rather than with aiohttp's ``readline``, which
        refuses a line over 128 KiB: one event holds a whole object, up to etcd's limit."""
        params: dict[str, str | int] = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout,
        }
        path = path_of(GROUP, VERSION, plural, namespace)
        async with contextlib.AsyncExitStack() as stack:
            with _counted("watch", plural):  # the request, not the stream that follows
                response = await stack.enter_async_context(
                    self.rest.stream(path, params, read_timeout=timeout + 30)
                )
            pending: list[bytes] = []
            async for chunk in response.content.iter_any():
                if b"\n" not in chunk:
                    pending.append(chunk)
                    continue
                *lines, rest = b"".join([*pending, chunk]).split(b"\n")
                pending = [rest] if rest else []
                for line in lines:
                    if line.strip():
                        yield json.loads(line)

    async def replace_status(self, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Write ``status`` in one request; fails with Conflict if ``body`` is stale."""
        return await self._replace_status(PLURAL, body, status)

    async def replace_cron_status(
        self, body: dict[str, Any], status: dict[str, Any]
    ) -> dict[str, Any]:
        """Write a CronWorkflow's status; Conflict if ``body`` is stale, Gone if deleted."""
        return await self._replace_status(CRON_PLURAL, body, status)

    async def _replace_status(
        self, plural: str, body: dict[str, Any], status: dict[str, Any]
    ) -> dict[str, Any]:
        meta = body["metadata"]
        try:
            with _counted("update", f"{plural}/status"):
                result = await self.rest.request(
                    "PUT",
                    path_of(GROUP, VERSION, plural, meta["namespace"], meta["name"], "status"),
                    body=status_update(body, status),
                )
        except ApiError as exc:
            if exc.status == 409:
                raise Conflict(meta["name"]) from None
            if object_missing(exc, meta["name"]):
                raise Gone(meta["name"]) from None
            raise
        return result

    async def get_workflow(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Workflow, or None if there is none of that name."""
        return await self._get(PLURAL, namespace, name)

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data, or None if there is no ConfigMap of that name."""
        found = await self._get("configmaps", namespace, name, group="", version="v1")
        return None if found is None else dict(found.get("data") or {})

    async def write_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Create or replace a ConfigMap holding ``data`` (last writer wins)."""
        manifest = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": self._component},
            },
            "data": data,
        }
        try:
            with _counted("update", "configmaps"):
                await self.rest.request(
                    "PUT", path_of("", "v1", "configmaps", namespace, name), body=manifest
                )
        except ApiError as exc:
            if exc.status != 404:
                raise
            with _counted("create", "configmaps"):
                await self.rest.request(
                    "POST", path_of("", "v1", "configmaps", namespace), body=manifest
                )

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data (base64 values), for actions; its values never reach a log."""
        with _counted("get", "secrets"):
            found = await self.rest.request("GET", path_of("", "v1", "secrets", namespace, name))
        return dict(found.get("data") or {})

    async def get_template(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A WorkflowTemplate, or None if there is none of that name."""
        return await self._get(TEMPLATE_PLURAL, namespace, name)

    async def _get(
        self, plural: str, namespace: str, name: str, group: str = GROUP, version: str = VERSION
    ) -> dict[str, Any] | None:
        """An object, or None if there is none of that name (the default: one of ours)."""
        try:
            with _counted("get", plural):
                found = await self.rest.request(
                    "GET", path_of(group, version, plural, namespace, name)
                )
        except ApiError as exc:
            if object_missing(exc, name):
                return None
            raise
        return found

    async def freeze_spec(self, body: dict[str, Any], spec: dict[str, Any]) -> None:
        """Replace the workflow's spec with ``spec`` (what a template resolved to), only if
        the object is still the version read: Conflict otherwise."""
        meta = body["metadata"]
        patch = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "spec": spec}
        # A merge patch keeps what the workflow had; `spec` holds all of it and more.
        try:
            await self._patch(
                meta["namespace"], meta["name"], patch, "application/merge-patch+json"
            )
        except ApiError as exc:
            if exc.status == 409:
                raise Conflict(meta["name"]) from None
            raise

    async def create_workflow(self, manifest: dict[str, Any]) -> bool:
        """Create a Workflow; False if one of that name exists already (a run created
        before, by this replica or another: its name is its scheduled time)."""
        meta = manifest["metadata"]
        try:
            with _counted("create", PLURAL):
                await self.rest.request(
                    "POST", path_of(GROUP, VERSION, PLURAL, meta["namespace"]), body=manifest
                )
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def delete_workflow(self, namespace: str, name: str) -> None:
        try:
            with _counted("delete", PLURAL):
                await self.rest.request(
                    "DELETE",
                    path_of(GROUP, VERSION, PLURAL, namespace, name),
                    body=_delete_options(),
                )
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def cancel_workflow(self, namespace: str, name: str) -> None:
        """Ask a workflow to cancel, as `cerebelum cancel` does (its finally steps run)."""
        await self._patch(
            namespace,
            name,
            {"metadata": {"annotations": {CANCEL: "true"}}},
            "application/merge-patch+json",
        )

    async def remove_annotations(
        self, namespace: str, name: str, keys: Mapping[str, str | None]
    ) -> None:
        """Remove annotations; one given with a value goes only if it still holds it (a JSON
        Patch ``test``), so a newer value written meanwhile is kept."""
        held = {k: v for k, v in keys.items() if v is not None}
        if held:
            ops: list[dict[str, Any]] = []
            for key in keys:
                path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
                if key in held:
                    ops.append({"op": "test", "path": path, "value": held[key]})
                ops.append({"op": "remove", "path": path})
            try:
                await self._patch(namespace, name, ops, "application/json-patch+json")
                return
            except ApiError as exc:
                if exc.status not in (409, 422):  # 422: a value changed: keep those keys
                    raise
            keys = {k: v for k, v in keys.items() if v is None}
            if not keys:
                return
        await self._patch(
            namespace,
            name,
            {"metadata": {"annotations": dict.fromkeys(keys)}},
            "application/merge-patch+json",
        )

    async def _patch(self, namespace: str, name: str, patch: Any, content_type: str) -> None:
        try:
            with _counted("patch", "workflows"):
                await self.rest.request(
                    "PATCH",
                    path_of(GROUP, VERSION, PLURAL, namespace, name),
                    body=patch,
                    content_type=content_type,
                )
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def delete_stepruns(self, namespace: str, workflow: str) -> None:
        """Best effort: a finished workflow's StepRuns are of no more use (owner references
        remove them too, with the workflow, where a garbage collector runs)."""
        try:
            with _counted("deletecollection", "stepruns"):
                await self.rest.request(
                    "DELETE",
                    path_of(GROUP, VERSION, STEPRUN_PLURAL, namespace),
                    params={"labelSelector": f"{LABEL_WORKFLOW}={label_value(workflow)}"},
                )
        except Exception as exc:  # an API error or a broken connection: never fatal
            logger.warning(
                "could not delete the stepruns of %s/%s: %s",
                namespace,
                workflow,
                f"HTTP {exc.status}" if isinstance(exc, ApiError) else type(exc).__name__,
            )

    async def delete_expired(self, body: dict[str, Any]) -> None:
        """Delete a workflow whose ttlAfterFinished has passed, and what it owns: its
        StepRuns and Jobs (owner references would remove them too, where a garbage
        collector runs). Deleting with its uid as a precondition never removes a workflow
        created again under the same name."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        selector = f"{LABEL_WORKFLOW}={label_value(name)}"
        await self.delete_stepruns(namespace, name)
        try:
            with _counted("deletecollection", "jobs"):
                await self.rest.request(
                    "DELETE",
                    path_of("batch", "v1", "jobs", namespace),
                    params={"labelSelector": selector, "propagationPolicy": "Background"},
                )
        except ApiError as exc:
            logger.warning(
                "could not delete the jobs of %s/%s: HTTP %s", namespace, name, exc.status
            )
        try:
            with _counted("delete", "workflows"):
                await self.rest.request(
                    "DELETE",
                    path_of(GROUP, VERSION, PLURAL, namespace, name),
                    body=_delete_options(uid=meta["uid"]),
                )
        except ApiError as exc:
            if exc.status not in (404, 409):  # gone, or another workflow under this name
                raise

    async def post_event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Best effort: an Event that cannot be posted is logged, never fatal."""
        meta = body["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self._component},
            "reportingComponent": self._component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            with _counted("create", "events"):
                await self.rest.request(
                    "POST", path_of("", "v1", "events", meta["namespace"]), body=event
                )
        except Exception as exc:  # an API error or a broken connection: never fatal
            logger.warning(
                "could not post event %s for %s/%s: %s",
                reason,
                meta["namespace"],
                meta["name"],
                f"HTTP {exc.status}" if isinstance(exc, ApiError) else type(exc).__name__,
            )


def _delete_options(uid: str | None = None) -> dict[str, Any]:
    """Delete in the background; with ``uid``, only the object of that uid."""
    options: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
    }
    if uid is not None:
        options["preconditions"] = {"uid": uid}
    return options


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NETRC")


async def _typed_client() -> Any:
    """kubernetes_asyncio's ApiClient, its package imported on a thread of the default
    executor, its credentials found by its own loaders (in-cluster, else the kubeconfig)."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, importlib.import_module, "kubernetes_asyncio.config")
    from kubernetes_asyncio import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config()
    api = client.ApiClient()
    # Its aiohttp session trusts the environment, so before every request it looks for
    # proxy variables and a ~/.netrc on a thread: two thread hops per call. With nothing
    # there to find, the lookups are turned off; a configured proxy or netrc is honoured.
    configured = any(
        os.environ.get(name) or os.environ.get(name.lower()) for name in _PROXY_VARIABLES
    )
    session = getattr(api.rest_client, "pool_manager", None)
    quiet = not configured and not Path("~/.netrc").expanduser().exists()
    if quiet and session is not None and hasattr(session, "_trust_env"):
        session._trust_env = False  # aiohttp has no public setter after construction
    return api
