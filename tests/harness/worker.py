"""Run ``cerebelum worker`` as a child process, serving one queue in one namespace."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.cluster import Cluster
from tests.harness.process import ChildProcess


@dataclass
class WorkerProcess(ChildProcess):
    cluster: Cluster
    namespace: str
    log_path: Path
    modules: list[str]
    queue: str = "default"
    identity: str = "worker-0"
    lease: str = "2s"
    concurrency: int = 4
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig), **self.env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cerebelum.cli",
                "worker",
                "--queue",
                self.queue,
                "-n",
                self.namespace,
                "--identity",
                self.identity,
                "--lease",
                self.lease,
                "--concurrency",
                str(self.concurrency),
                "--grace",
                "2",
                *self.modules,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 30
        while "serves queue" not in self.logs():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker did not start:\n{self.logs()}")
            time.sleep(0.05)
