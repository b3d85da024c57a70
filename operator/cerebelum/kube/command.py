"""The command line that runs the operator, shared by the demo, tests, benchmarks and image."""

from __future__ import annotations

import sys

HANDLERS_MODULE = "cerebelum.kube.handlers"


def operator_argv(namespace: str | None = None, *, standalone: bool = True) -> list[str]:
    """``kopf run`` on our handlers, for one namespace or all of them.

    ``standalone`` skips Kopf's peering (no peering CRD needed); a multi-replica
    deployment leaves it off so only one replica processes.
    """
    argv = [sys.executable, "-m", "kopf", "run", "-m", HANDLERS_MODULE]
    argv.append(f"--namespace={namespace}" if namespace else "--all-namespaces")
    if standalone:
        argv.append("--standalone")
    return argv
