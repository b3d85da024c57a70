"""Everything under integration/ talks to a real API server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Cluster
from tests.harness.operator import OperatorProcess

CRDS = Path(__file__).resolve().parents[2] / "crds"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    """The project's CRDs, installed once per session with the real kubectl."""
    cluster.kubectl("apply", "-f", str(CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@pytest.fixture
def operator(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The real operator process, watching only this test's namespace."""
    proc = OperatorProcess(cluster, namespace, tmp_path / "operator.log")
    proc.start()
    yield proc
    proc.stop()
