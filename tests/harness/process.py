"""What the harness's child processes (operator, worker) share: stop by PID, read the log."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path


class ChildProcess:
    proc: subprocess.Popen[bytes] | None
    log_path: Path

    def kill(self) -> None:
        """SIGKILL: no clean-up code runs, as in a crash or an evicted pod."""
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
