"""``python -m cerebelum.devcluster run`` cleans up after itself, also when interrupted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cerebelum.devcluster.controlplane import WORKDIR_PREFIX, remove_stale_workdirs
from tests.harness import Cluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    )


def _start_runner(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int], Path]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cerebelum.devcluster", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.match(r"pids: ([\d ]+); workdir: (\S+)", line)
        if match:
            return proc, [int(p) for p in match.group(1).split()], Path(match.group(2))
    proc.wait(timeout=10)
    raise AssertionError(f"runner exited {proc.returncode} before reporting its pids")


def _wait_gone(pids: list[int], timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_runner_leaves_nothing(
    cluster: Cluster, tmp_path: Path, sig: signal.Signals
) -> None:
    if not cluster.is_local:
        pytest.skip("exercises the local control plane only")
    proc, pids, workdir = _start_runner(tmp_path)
    try:
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        assert workdir.is_dir() and workdir.name.startswith(WORKDIR_PREFIX)
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:  # the signal did not stop it: leave nothing running anyway
            proc.terminate()
            proc.wait(timeout=30)
    assert _wait_gone(pids) == []
    assert not workdir.exists()


def test_killed_runner_takes_children_along_and_next_start_cleans(
    cluster: Cluster, tmp_path: Path
) -> None:
    if not cluster.is_local:
        pytest.skip("exercises the local control plane only")
    proc, pids, workdir = _start_runner(tmp_path)
    proc.kill()  # SIGKILL: no cleanup code runs in the runner
    proc.wait(timeout=10)
    assert _wait_gone(pids) == [], "children must die with their parent"
    assert workdir.exists()
    assert remove_stale_workdirs(tmp_path) == [workdir]
    assert not workdir.exists()
