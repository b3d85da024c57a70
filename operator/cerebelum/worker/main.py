"""``cerebelum worker``: load the user's modules, connect, serve one queue until told to stop."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import socket
from collections.abc import Sequence
from typing import Any

from cerebelum.api.durations import parse_duration
from cerebelum.kubeconfig import connect
from cerebelum.sdk.loader import load_module
from cerebelum.sdk.steps import FUNCTIONS, StepDef
from cerebelum.worker.loop import Worker, WorkerSettings

logger = logging.getLogger("cerebelum.worker")


def load_functions(modules: Sequence[str]) -> dict[str, StepDef]:
    """The step functions of these modules, and only those: the worker's allow-list."""
    names = {load_module(ref).__name__ for ref in modules}
    return {path: s for path, s in FUNCTIONS.items() if path.split(":", 1)[0] in names}


async def serve(args: Any) -> int:
    faulthandler.enable()  # a native crash in user code leaves its stack in the log
    functions = load_functions(args.modules)
    if not functions:
        logger.error("no @step functions in %s: nothing to run", ", ".join(args.modules))
        return 1
    api, current = await connect(args.kubeconfig, args.context, in_cluster=True)
    namespaces: tuple[str, ...] = ()
    if not args.all_namespaces:
        namespaces = tuple(args.namespace or [current])
    settings = WorkerSettings(
        queue=args.queue,
        namespaces=namespaces,
        identity=args.identity
        or os.environ.get("POD_NAME")
        or f"{socket.gethostname()}-{os.getpid()}",
        lease=parse_duration(args.lease),
        concurrency=args.concurrency,
    )
    worker = Worker(api, settings, functions)
    logger.info(
        "worker %s serves queue %s in %s with %d functions: %s",
        settings.identity,
        settings.queue,
        ", ".join(namespaces) or "all namespaces",
        len(functions),
        ", ".join(sorted(functions)),
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watching = asyncio.create_task(worker.run())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({watching, stopped}, return_when=asyncio.FIRST_COMPLETED)
    watching.cancel()
    await asyncio.gather(watching, return_exceptions=True)
    await worker.stop(args.grace)
    await api.close()
    logger.info("worker %s stopped", settings.identity)
    return 0


def add_arguments(parser: Any) -> None:
    parser.add_argument("modules", nargs="+", help="modules (dotted names or .py files) with steps")
    parser.add_argument("--queue", default="default", help="the queue to serve (default: default)")
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="serve StepRuns of every namespace"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="steps run at once (default 4)")
    parser.add_argument(
        "--lease",
        default="15s",
        help="claim lease; a dead worker's steps are taken over after it (default 15s)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=25.0,
        help="seconds running steps get to finish on SIGTERM (default 25)",
    )
    parser.add_argument("--identity", help="name in claims (default: POD_NAME or host-pid)")
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: in-cluster, KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="namespace to serve (repeatable; default: the context's or the pod's)",
    )
