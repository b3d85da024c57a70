"""ttlAfterFinished: a finished workflow is deleted on time, with its StepRuns; the
operator's default applies where the spec sets none; a workflow without either stays."""

from __future__ import annotations

import time
from pathlib import Path

from cerebelum.api.durations import parse_time
from tests.harness import Cluster
from tests.harness.cluster import eventually
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase, workflow


def _exists(cluster: Cluster, namespace: str, name: str) -> bool:
    found = cluster.kubectl("-n", namespace, "get", "workflow", name, "--ignore-not-found").stdout
    return bool(found.strip())


def test_finished_workflows_are_deleted_after_their_ttl(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    operator = OperatorProcess(
        cluster, namespace, tmp_path / "operator.log", env={"CEREBELUM_TTL_AFTER_FINISHED": "4s"}
    )
    operator.start()
    try:
        own = workflow("own-ttl", [{"name": "s", "noop": {}}])
        own["spec"]["ttlAfterFinished"] = "1s"
        kept = workflow("kept", [{"name": "s", "noop": {}}])
        kept["spec"]["ttlAfterFinished"] = "1h"
        default = workflow("default-ttl", [{"name": "s", "noop": {}}])
        for manifest in (own, kept, default):
            cluster.apply(manifest, namespace)
        finished = {
            name: parse_time(
                wait_for_phase(cluster, namespace, name, "Succeeded")["status"]["finishedAt"]
            )
            for name in ("own-ttl", "kept", "default-ttl")
        }
        eventually(lambda: not _exists(cluster, namespace, "own-ttl") or None, timeout=10)
        gone_own = time.time()
        assert gone_own - finished["own-ttl"].timestamp() < 4, "deleted about 1 s after it finished"
        assert _exists(cluster, namespace, "default-ttl")
        eventually(lambda: not _exists(cluster, namespace, "default-ttl") or None, timeout=15)
        assert time.time() - finished["default-ttl"].timestamp() >= 4
        assert _exists(cluster, namespace, "kept"), "its own ttl (1h) wins over the default"
    finally:
        operator.stop()
    assert "ttlAfterFinished has passed" in operator.logs()
