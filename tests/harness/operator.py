"""Run the real operator (``python -m cerebelum.kube.main``) as a child process, watching one namespace.

Each test gets its own operator, so a test may kill and restart it without touching
others. Logs go to a file the test can read (and grep for secrets).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cerebelum.kube.command import operator_argv
from tests.harness.cluster import Cluster
from tests.harness.process import ChildProcess


@dataclass
class OperatorProcess(ChildProcess):
    cluster: Cluster
    namespace: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    #: Also load the approver webhooks (the env must then name a webhook port).
    webhooks: bool = False
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig), **self.env}
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"--- operator start #{self.starts}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            operator_argv(self.namespace, webhooks=self.webhooks),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._wait_started()

    def _wait_started(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        marker = "cerebelum operator started"
        while time.monotonic() < deadline:
            if self.logs().count(marker) >= self.starts:
                return
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"operator exited with {self.proc.returncode}:\n{self.logs()[-3000:]}"
                )
            time.sleep(0.05)
        raise AssertionError(f"operator did not start within {timeout}s:\n{self.logs()[-3000:]}")
