"""A node run killed outright (SIGKILL) leaves nothing once the next node run has stopped.

Its kubelet, containerd and control plane die with it (they are its children), but
containerd's shims and the containers they hold are not: the next start stops them by the
IDs in the dead run's containerd state, and removes its interfaces, rules, mounts and files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cerebelum.devcluster.binaries import ensure_binaries, ensure_node_binaries
from cerebelum.devcluster.images import BASE_IMAGE, ensure_base
from cerebelum.devcluster.node import LocalCluster
from tests.e2e.node_required import skip_without_node
from tests.harness.cluster import eventually

skip_without_node()

_NODE = """
import time
from cerebelum.devcluster.binaries import ensure_binaries, ensure_node_binaries
from cerebelum.devcluster.images import ensure_base
from cerebelum.devcluster.node import LocalCluster
node = LocalCluster(ensure_binaries(), ensure_node_binaries(), archives=(ensure_base(),))
node.start()
print(node.plane.kubeconfig, node.plane.workdir, flush=True)
time.sleep(600)
"""


def _container_pids() -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if "/k8s.io/" in (proc / "cgroup").read_text():
                    pids.add(int(proc.name))
            except OSError:
                continue
    return pids


def test_a_killed_node_run_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    ensure_base()
    run = subprocess.Popen(
        [sys.executable, "-c", _NODE], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert run.stdout is not None
        kubeconfig, workdir = run.stdout.readline().split()
        kubectl = [str(ensure_binaries().kubectl), "--kubeconfig", kubeconfig]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "orphan", "namespace": "default"},
            "spec": {
                "containers": [
                    {
                        "name": "sleeper",
                        "image": BASE_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["python3", "-c", "import time; time.sleep(600)"],
                    }
                ]
            },
        }
        subprocess.run(
            [*kubectl, "apply", "-f", "-"],
            input=json.dumps(pod),
            check=True,
            capture_output=True,
            text=True,
        )

        def running() -> bool:
            got = subprocess.run(
                [*kubectl, "get", "pod", "orphan", "-o", "jsonpath={.status.phase}"],
                capture_output=True,
                text=True,
            )
            return got.stdout == "Running"

        eventually(running, timeout=60, interval=0.5)
        containers = _container_pids()
        assert containers, "the pod's processes run in their own cgroups"
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    time.sleep(1)
    assert _container_pids() & containers, "the containers outlive a killed node run"

    node = LocalCluster(ensure_binaries(), ensure_node_binaries())
    with node:
        assert not Path(workdir).exists(), "the dead run's work dir is removed at start"
    assert not node.leftovers()
    assert not _container_pids() & containers, "the orphaned containers are stopped"
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert "cbl" not in links
