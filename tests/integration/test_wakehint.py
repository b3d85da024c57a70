"""The wake-up hint (kube/wakehint.py) against the real API server: the leader keeps the
soonest deadlines in a ConfigMap, and a restarted operator fetches the due ones from it
before its list."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cerebelum.api.durations import format_time
from cerebelum.kube.client import KubeClient
from cerebelum.kube.settings import WakeHintSettings
from cerebelum.kube.wakehint import DATA_KEY, WakeHint
from tests.harness import Cluster
from tests.harness.cluster import eventually, rest_client
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase, workflow

HINT = "cerebelum-operator-wakeups"


@pytest.fixture
async def kube(cluster: Cluster, crds: None) -> AsyncIterator[KubeClient]:
    async with rest_client(cluster.kubeconfig) as rest:
        yield KubeClient(rest, "test")


def _hint_lines(cluster: Cluster, namespace: str) -> list[str]:
    found = cluster.kubectl("-n", namespace, "get", "configmap", HINT, "-o", "json", check=False)
    if found.returncode != 0:
        return []
    data = json.loads(found.stdout).get("data") or {}
    return str(data.get(DATA_KEY) or "").splitlines()


def test_a_restarted_operator_wakes_the_due_workflows_from_the_hint(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    operator = OperatorProcess(
        cluster,
        namespace,
        tmp_path / "operator.log",
        env={
            "CEREBELUM_WAKE_HINT": "true",
            "CEREBELUM_WAKE_HINT_NAMESPACE": namespace,
            "CEREBELUM_WAKE_HINT_SECONDS": "0.3",
        },
    )
    operator.start()
    try:
        cluster.apply(workflow("nap", [{"name": "nap", "sleep": {"duration": "4s"}}]), namespace)
        cluster.apply(workflow("long", [{"name": "nap", "sleep": {"duration": "1h"}}]), namespace)
        wait_for_phase(cluster, namespace, "long", "Sleeping")
        # The 4 s sleep is kept; the 1 h one is beyond the horizon (120 s).
        lines = eventually(lambda: _hint_lines(cluster, namespace), timeout=10)
        assert [line.split()[1:] for line in lines] == [[namespace, "nap"]]
        operator.kill()
        wait_for_phase(cluster, namespace, "nap", "Sleeping")
        time.sleep(4.5)  # the sleep falls due while no operator runs
        operator.start()
        done = wait_for_phase(cluster, namespace, "nap", "Succeeded")
        assert done["status"]["phase"] == "Succeeded"
        assert "1 workflows due from the wake-up hint, before the list" in operator.logs()
        # Nothing is due any more: the hint empties, and the long sleeper stays asleep.
        eventually(lambda: _hint_lines(cluster, namespace) == [], timeout=10)
        wait_for_phase(cluster, namespace, "long", "Sleeping")
    finally:
        operator.stop()


async def test_restore_fetches_only_the_due_workflows_of_the_watched_namespaces(
    cluster: Cluster, kube: KubeClient, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("due", "later", "absent-from-hint"):
        cluster.apply(workflow(name, [{"name": "nap", "sleep": {"duration": "1h"}}]), namespace)
    now = datetime.datetime.now(datetime.UTC)
    past, future = format_time(now - datetime.timedelta(seconds=5)), "2099-01-01T00:00:00.000Z"
    await kube.write_config_map(
        namespace,
        HINT,
        {
            DATA_KEY: f"{past} {namespace} due\n"
            f"{future} {namespace} later\n"
            f"{past} {namespace} deleted-since\n"
            f"{past} elsewhere due\n"
            "<script>not a line</script>\n"
        },
    )
    seen: list[tuple[str | None, str]] = []

    def observe(kind: str | None, body: dict[str, Any]) -> None:
        seen.append((kind, body["metadata"]["name"]))

    hint = WakeHint(kube, WakeHintSettings(enabled=True, namespace=namespace, name=HINT))
    with caplog.at_level(logging.WARNING):
        fetched = await hint.restore({namespace}, observe)
    assert fetched == 1
    assert seen == [(None, "due")]
    assert "1 lines skipped that do not parse" in caplog.text


async def test_only_a_leader_writes_and_only_what_changed(
    cluster: Cluster, kube: KubeClient, namespace: str
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    deadlines = {
        (namespace, "b"): now + datetime.timedelta(seconds=30),
        (namespace, "a"): now + datetime.timedelta(seconds=10),
        (namespace, "far"): now + datetime.timedelta(hours=1),
    }
    leading = False
    settings = WakeHintSettings(enabled=True, namespace=namespace, name=HINT, interval=0.1)
    task = asyncio.create_task(WakeHint(kube, settings).run(lambda: deadlines, lambda: leading))
    try:
        await asyncio.sleep(0.5)
        assert await kube.read_config_map(namespace, HINT) is None, "a standby wrote"
        leading = True

        async def written() -> dict[str, str]:
            for _ in range(100):
                data = await kube.read_config_map(namespace, HINT)
                if data is not None:
                    return data
                await asyncio.sleep(0.05)
            raise AssertionError("never written")

        data = await written()
        assert [line.split()[2] for line in data[DATA_KEY].splitlines()] == ["a", "b"]
        version = cluster.kubectl_json("-n", namespace, "get", "configmap", HINT)["metadata"][
            "resourceVersion"
        ]
        await asyncio.sleep(0.5)
        same = cluster.kubectl_json("-n", namespace, "get", "configmap", HINT)["metadata"]
        assert same["resourceVersion"] == version, "rewritten though nothing changed"
        del deadlines[(namespace, "a")]
        for _ in range(100):
            data = await kube.read_config_map(namespace, HINT) or {}
            if [line.split()[2] for line in data[DATA_KEY].splitlines()] == ["b"]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"not rewritten: {data}")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_without_permission_it_says_so_once_and_stops(
    cluster: Cluster, crds: None, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    cp = cluster.control_plane
    if cp is None:
        pytest.skip("needs a user without rights, by client certificate")
    async with rest_client(cp.kubeconfig_for_user("no-rights")) as rest:
        kube = KubeClient(rest, "test")
        settings = WakeHintSettings(enabled=True, namespace=namespace, name=HINT, interval=0.05)
        hint = WakeHint(kube, settings)
        with caplog.at_level(logging.WARNING):
            assert await hint.restore({namespace}, lambda kind, body: None) == 0
            soon = {(namespace, "w"): datetime.datetime.now(datetime.UTC)}
            await asyncio.wait_for(hint.run(lambda: soon, lambda: True), timeout=5)
    assert "was not used (403" in caplog.text
    assert caplog.text.count("cannot be written (403") == 1
