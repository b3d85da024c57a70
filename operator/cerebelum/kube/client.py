"""The few API calls the operator makes, on ``kubernetes_asyncio`` (aiohttp, like Kopf).

Kept in one place so the operator's API traffic is easy to count and to reason about:
a status write (PUT with resourceVersion, so a stale read can never overwrite newer
state), an annotation patch, and Events.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from cerebelum.actions.api_retry import object_missing
from cerebelum.actions.owned import label_value
from cerebelum.api import GROUP, PLURAL, VERSION
from cerebelum.api.cronworkflow import CRON_PLURAL
from cerebelum.api.objects import status_update
from cerebelum.api.steprun import LABEL_WORKFLOW, STEPRUN_PLURAL
from cerebelum.api.workflowtemplate import TEMPLATE_PLURAL
from cerebelum.kube.metrics import API_REQUESTS
from cerebelum.kube.settings import CANCEL

logger = logging.getLogger(__name__)


@contextmanager
def _counted(verb: str, resource: str) -> Iterator[None]:
    """Count one API request in cerebelum_api_requests_total, with its outcome."""
    code = "200"
    try:
        yield
    except ApiException as exc:
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


async def connect() -> client.ApiClient:
    """Credentials the way kubectl finds them: in-cluster, else KUBECONFIG/~/.kube/config."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config()
    api = client.ApiClient()
    skip_environment_lookups(api)
    return api


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NETRC")


def skip_environment_lookups(api: client.ApiClient) -> None:
    """kubernetes_asyncio's aiohttp session trusts the environment, so before every request
    it looks for proxy variables and a ~/.netrc, on a thread of the default executor: two
    thread hops per API call, a tenth of the operator's CPU at a few hundred writes a
    second. With nothing there to find, the lookups are turned off; with a proxy or netrc
    configured they stay, and are honoured."""
    configured = any(
        os.environ.get(name) or os.environ.get(name.lower()) for name in _PROXY_VARIABLES
    )
    if configured or Path("~/.netrc").expanduser().exists():
        return
    session = getattr(api.rest_client, "pool_manager", None)
    if session is not None and hasattr(session, "_trust_env"):
        session._trust_env = False  # aiohttp has no public setter after construction


class KubeClient:
    def __init__(self, api: client.ApiClient, component: str) -> None:
        self.api = api
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._component = component

    @property
    def core(self) -> client.CoreV1Api:
        """For reading Secrets on behalf of actions."""
        return self._core

    async def list_page(
        self, plural: str, namespace: str | None, limit: int, after: str | None
    ) -> dict[str, Any]:
        """One page of a list of our objects (``namespace`` None: every namespace): its
        ``items``, ``metadata.continue`` and ``metadata.resourceVersion``."""
        kwargs: dict[str, Any] = {"limit": limit}
        if after:
            kwargs["_continue"] = after
        with _counted("list", plural):
            if namespace is None:
                page: dict[str, Any] = await self._custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, **kwargs
                )
            else:
                page = await self._custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, **kwargs
                )
        return page

    async def watch(
        self, plural: str, namespace: str | None, version: str, timeout: int
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request from ``version``, bookmarks included, until the
        API server ends it (``timeout`` seconds). A refused request raises ApiException.

        The stream is split into lines here rather than with aiohttp's ``readline``, which
        refuses a line over 128 KiB: one event holds a whole object, up to etcd's limit."""
        kwargs: dict[str, Any] = {
            "watch": True,
            "resource_version": version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout,
            "_preload_content": False,
            "_request_timeout": aiohttp.ClientTimeout(connect=30, sock_read=timeout + 30),
        }
        with _counted("watch", plural):
            if namespace is None:
                response = await self._custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, **kwargs
                )
            else:
                response = await self._custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, **kwargs
                )
            if response.status != 200:
                reason = (await response.text())[:500]
                response.release()
                raise ApiException(status=response.status, reason=reason)
        try:
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
        finally:
            response.release()

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
                result: dict[str, Any] = await self._custom.replace_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    meta["namespace"],
                    plural,
                    meta["name"],
                    status_update(body, status),
                )
        except ApiException as exc:
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
        try:
            with _counted("get", "configmaps"):
                found = await self._core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if object_missing(exc, name):
                return None
            raise
        return dict(found.data or {})

    async def write_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Create or replace a ConfigMap holding ``data`` (last writer wins)."""
        manifest: Any = {  # the client takes a dict where it is typed V1ConfigMap
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
                await self._core.replace_namespaced_config_map(name, namespace, manifest)
        except ApiException as exc:
            if exc.status != 404:
                raise
            with _counted("create", "configmaps"):
                await self._core.create_namespaced_config_map(namespace, manifest)

    async def get_template(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A WorkflowTemplate, or None if there is none of that name."""
        return await self._get(TEMPLATE_PLURAL, namespace, name)

    async def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            with _counted("get", plural):
                found: dict[str, Any] = await self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, name
                )
        except ApiException as exc:
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
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(meta["name"]) from None
            raise

    async def create_workflow(self, manifest: dict[str, Any]) -> bool:
        """Create a Workflow; False if one of that name exists already (a run created
        before, by this replica or another: its name is its scheduled time)."""
        meta = manifest["metadata"]
        try:
            with _counted("create", PLURAL):
                await self._custom.create_namespaced_custom_object(
                    GROUP, VERSION, meta["namespace"], PLURAL, manifest
                )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def delete_workflow(self, namespace: str, name: str) -> None:
        try:
            with _counted("delete", PLURAL):
                await self._custom.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    body=client.V1DeleteOptions(propagation_policy="Background"),
                )
        except ApiException as exc:
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
            except ApiException as exc:
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
            # _content_type reaches the client through **kwargs, which its stubs do not declare.
            with _counted("patch", "workflows"):
                await self._custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    patch,
                    _content_type=content_type,
                )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def delete_stepruns(self, namespace: str, workflow: str) -> None:
        """Best effort: a finished workflow's StepRuns are of no more use (owner references
        remove them too, with the workflow, where a garbage collector runs)."""
        try:
            with _counted("deletecollection", "stepruns"):
                await self._custom.delete_collection_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    STEPRUN_PLURAL,
                    label_selector=f"{LABEL_WORKFLOW}={label_value(workflow)}",
                )
        except Exception as exc:  # an API error or a broken connection: never fatal
            logger.warning(
                "could not delete the stepruns of %s/%s: %s",
                namespace,
                workflow,
                f"HTTP {exc.status}" if isinstance(exc, ApiException) else type(exc).__name__,
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
                await client.BatchV1Api(self.api).delete_collection_namespaced_job(
                    namespace, label_selector=selector, propagation_policy="Background"
                )
        except ApiException as exc:
            logger.warning(
                "could not delete the jobs of %s/%s: HTTP %s", namespace, name, exc.status
            )
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=meta["uid"]),
            propagation_policy="Background",
        )
        try:
            with _counted("delete", "workflows"):
                await self._custom.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, body=options
                )
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or another workflow under this name
                raise

    async def post_event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Best effort: an Event that cannot be posted is logged, never fatal."""
        meta = body["metadata"]
        now = datetime.datetime.now(datetime.UTC)
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
                await self._core.create_namespaced_event(meta["namespace"], event)  # type: ignore[arg-type]
        except Exception as exc:  # an API error or a broken connection: never fatal
            logger.warning(
                "could not post event %s for %s/%s: %s",
                reason,
                meta["namespace"],
                meta["name"],
                f"HTTP {exc.status}" if isinstance(exc, ApiException) else type(exc).__name__,
            )
