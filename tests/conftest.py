"""Session-wide fixtures: the cluster under test and a fresh namespace per test.

The cluster is the local control plane (etcd + kube-apiserver built from pinned Go modules)
unless ``CEREBELUM_TEST_KUBECONFIG`` names an existing cluster (e.g. a kind cluster).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from cerebelum.devcluster import LocalControlPlane, ensure_binaries
from cerebelum.devcluster.binaries import ensure
from tests.harness import Cluster

_FIGURES: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM to the test run tears fixtures down like Ctrl-C does, so nothing is left."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("cluster figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


def _report(request: pytest.FixtureRequest, line: str) -> None:
    """Keep a figure for the closing summary (printed even when output is captured)."""
    _FIGURES.append(line)


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    external = os.environ.get("CEREBELUM_TEST_KUBECONFIG")
    started = time.monotonic()
    if external:
        yield Cluster(
            kubeconfig=Path(external),
            kubectl_bin=ensure("kubectl"),
            helm_bin=ensure("helm"),
            workdir=workdir,
        )
        return
    binaries = ensure_binaries()
    _report(request, f"pinned binaries ready in {time.monotonic() - started:.1f}s")
    control_plane = LocalControlPlane(binaries)
    control_plane.start()
    _report(
        request,
        f"local control plane (etcd + kube-apiserver) up in {control_plane.startup_seconds:.1f}s "
        f"at {control_plane.server}",
    )
    try:
        yield Cluster(
            kubeconfig=control_plane.kubeconfig,
            kubectl_bin=binaries.kubectl,
            helm_bin=binaries.helm,
            workdir=workdir,
            control_plane=control_plane,
        )
    finally:
        control_plane.stop()
    leftovers = control_plane.leftovers()
    assert not leftovers, f"the control plane left behind: {leftovers}"
    _report(request, "control plane stopped: no process and no work directory left behind")


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards without waiting."""
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:48].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
