"""The ``cerebelum`` command.

``cerebelum operator`` runs the operator (the container image's entrypoint). Its settings
come from the environment, which the Helm chart sets:

    CEREBELUM_WATCH_NAMESPACES   comma-separated namespaces; empty: all namespaces
    CEREBELUM_LIVENESS_PORT      serve /healthz on this port (unset: no endpoint)
    CEREBELUM_LOG_FORMAT         plain, full or json
    CEREBELUM_LOG_LEVEL          debug, info (default) or warning
    CEREBELUM_LEADER_ELECTION    true: several replicas, only the Lease holder works
    CEREBELUM_LEASE_NAMESPACE    where the Lease lives (the operator's namespace)
    CEREBELUM_POD_NAME           this replica's name in the Lease
    CEREBELUM_METRICS_PORT       serve Prometheus metrics (/metrics) on this port
    CEREBELUM_WEBHOOK_PORT       serve the approver webhooks (HTTPS) on this port
    CEREBELUM_WEBHOOK_CERT/_KEY  the webhook's serving certificate and key (PEM files)

The workflow commands (render, apply, status, watch, approve, reject) arrive with the SDK.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from cerebelum import __version__
from cerebelum.kube.command import operator_argv


def run_operator() -> int:
    namespaces = [
        ns.strip()
        for ns in os.environ.get("CEREBELUM_WATCH_NAMESPACES", "").split(",")
        if ns.strip()
    ]
    port = os.environ.get("CEREBELUM_LIVENESS_PORT")
    argv = operator_argv(
        namespaces,
        liveness_port=int(port) if port else None,
        log_format=os.environ.get("CEREBELUM_LOG_FORMAT") or None,
        log_level=os.environ.get("CEREBELUM_LOG_LEVEL") or None,
        webhooks=bool(os.environ.get("CEREBELUM_WEBHOOK_PORT")),
    )
    os.execv(argv[0], argv)  # replace this process: signals reach Kopf directly
    return 0  # pragma: no cover


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cerebelum", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"cerebelum {__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("operator", help="run the operator (settings from the environment)")
    args = parser.parse_args(argv)
    if args.command == "operator":
        return run_operator()
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
