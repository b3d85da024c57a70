"""Run ``cerebelum worker`` as a child process, serving one queue in one namespace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.cluster import Cluster


@dataclass
class WorkerProcess:
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

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-step, as in a crash; its lease is left to run out."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
