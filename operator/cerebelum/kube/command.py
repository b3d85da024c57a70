"""The command line that runs the operator, shared by the CLI, the image, tests and the demo."""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: The operator's entry point (``kube.main``): Kopf, started with our handlers.
MAIN_MODULE = "cerebelum.kube.main"
HANDLERS_MODULE = "cerebelum.kube.handlers"
WEBHOOKS_MODULE = "cerebelum.kube.webhooks"


def operator_argv(
    namespaces: str | Sequence[str] | None = None,
    *,
    liveness_port: int | None = None,
    log_format: str | None = None,
    log_level: str | None = None,
    webhooks: bool = False,
) -> list[str]:
    """The operator (``python -m cerebelum.kube.main``) for some namespaces or all of them.

    Always standalone: replicas are coordinated by this operator's own Lease
    (``cerebelum.kube.leader``), not by Kopf's peering.
    """
    if isinstance(namespaces, str):
        namespaces = [namespaces]
    argv = [sys.executable, "-m", MAIN_MODULE]
    argv += [f"--namespace={ns}" for ns in namespaces or []] or ["--all-namespaces"]
    if webhooks:
        argv.append("--webhooks")
    if liveness_port is not None:
        argv.append(f"--liveness=http://0.0.0.0:{liveness_port}/healthz")
    if log_format:
        argv.append(f"--log-format={log_format}")
    level_flag = {"debug": "--debug", "warning": "--quiet"}.get((log_level or "").lower())
    if level_flag:
        argv.append(level_flag)
    return argv
