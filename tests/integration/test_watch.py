"""The operator's own list-and-watch of Workflows (kube/watch.py) against the real API server:
pages, the events of a watch, the end of a relist, and a version the server no longer has."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cerebelum.api import PLURAL
from cerebelum.kube.client import KubeClient
from cerebelum.kube.watch import Expired, ResourceWatch, WatchSettings
from tests.harness import Cluster
from tests.harness.cluster import rest_client
from tests.harness.workflows import workflow


@pytest.fixture
async def kube(cluster: Cluster, crds: None) -> AsyncIterator[KubeClient]:
    async with rest_client(cluster.kubeconfig) as rest:
        yield KubeClient(rest, "test")


class Seen:
    def __init__(self) -> None:
        self.events: list[tuple[str | None, str, str]] = []
        self.relists: list[tuple[str | None, set[tuple[str, str]]]] = []

    def observe(self, kind: str | None, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.events.append((kind, meta["name"], meta["resourceVersion"]))

    def relisted(self, namespace: str | None, seen: set[tuple[str, str]]) -> None:
        self.relists.append((namespace, set(seen)))

    def names(self, kind: str | None) -> set[str]:
        return {name for k, name, _ in self.events if k == kind}


async def until(check: Any, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_lists_in_pages_then_follows_every_change(
    cluster: Cluster, kube: KubeClient, namespace: str
) -> None:
    for i in range(5):
        cluster.apply(workflow(f"w{i}", [{"name": "a", "approval": {}}]), namespace)
    seen = Seen()
    watch = ResourceWatch(
        kube, PLURAL, namespace, seen.observe, seen.relisted, WatchSettings(page_size=2)
    )
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.wait_for(watch.listed.wait(), 20)
        expected = {f"w{i}" for i in range(5)}
        assert seen.names(None) == expected  # three pages, each object once
        assert seen.relists == [(namespace, {(namespace, n) for n in expected})]

        cluster.apply(workflow("late", [{"name": "a", "approval": {}}]), namespace)
        cluster.kubectl("-n", namespace, "annotate", "workflow", "w0", "touched=yes")
        cluster.kubectl("-n", namespace, "delete", "workflow", "w1")
        await until(
            lambda: (
                "late" in seen.names("ADDED")
                and "w0" in seen.names("MODIFIED")
                and "w1" in seen.names("DELETED")
            )
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_version_the_server_no_longer_has_means_a_relist(
    cluster: Cluster, kube: KubeClient, namespace: str
) -> None:
    cluster.apply(workflow("w", [{"name": "a", "approval": {}}]), namespace)
    seen = Seen()
    watch = ResourceWatch(kube, PLURAL, namespace, seen.observe, seen.relisted)
    # Version 1 is long compacted out of the API server's watch cache: 410 Gone.
    with pytest.raises(Expired):
        await asyncio.wait_for(watch.watch("1"), 20)
    version = await watch.relist()
    assert int(version) > 1 and seen.names(None) == {"w"}


async def test_a_refused_watch_is_retried_not_fatal(
    cluster: Cluster, crds: None, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An identity not allowed to list workflows (RBAC not granted yet) makes the watch
    retry with backoff and say why in the log, never end."""
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "nobody")
    token = cluster.kubectl("-n", namespace, "create", "token", "nobody").stdout.strip()
    seen = Seen()
    async with rest_client(cluster.kubeconfig_with_token(f"nobody-{namespace}", token)) as rest:
        watch = ResourceWatch(
            KubeClient(rest, "test"),
            PLURAL,
            namespace,
            seen.observe,
            seen.relisted,
            WatchSettings(backoff_base=0.05, backoff_max=0.1),
        )
        task = asyncio.create_task(watch.run())
        try:
            await until(
                lambda: f"watch of workflows in {namespace} failed (2 in a row)" in caplog.text
            )
            assert "Forbidden" in caplog.text or "403" in caplog.text, caplog.text
            assert not task.done() and not watch.listed.is_set() and not seen.events
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
