"""Run the installed `cerebelum` command the way a user does, with the test's kubeconfig."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness.cluster import Cluster

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def _argv_env(
    cluster: Cluster, namespace: str, args: tuple[str, ...]
) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return [str(BIN / "cerebelum"), *args, "-n", namespace], env


def cerebelum(
    cluster: Cluster, namespace: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run it to its end, from the repository root (examples are named relative to it)."""
    argv, env = _argv_env(cluster, namespace, args)
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=timeout, check=False, cwd=ROOT
    )


def cerebelum_background(cluster: Cluster, namespace: str, *args: str) -> subprocess.Popen[str]:
    argv, env = _argv_env(cluster, namespace, args)
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
