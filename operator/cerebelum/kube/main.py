"""The operator process: ``python -m cerebelum.kube.main``, which ``cerebelum operator``, the
image, the tests and the demo run (``kube.command.operator_argv`` builds its command line).

Kopf's ``kopf run`` would start the same handlers, but the runtime watches Workflows itself
(``kube.watch``) and must watch the namespaces Kopf is told to: both get them here, from one
command line. Kopf is then started through its programmatic API (``kopf.operator``), on
uvloop where it is installed, as ``kopf run`` would.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import kopf

from cerebelum.kube.command import HANDLERS_MODULE, WEBHOOKS_MODULE

#: The key of kopf.Memo under which the startup handler finds the namespaces.
NAMESPACES_MEMO = "namespaces"
_LOG_FORMATS = {
    "plain": kopf.LogFormat.PLAIN,
    "full": kopf.LogFormat.FULL,
    "json": kopf.LogFormat.JSON,
}


@dataclass(frozen=True)
class Launch:
    """What the command line asks for."""

    #: Namespaces to watch; empty: every namespace.
    namespaces: tuple[str, ...]
    liveness: str | None
    log_format: str
    debug: bool
    quiet: bool
    webhooks: bool


def parse(argv: Sequence[str] | None = None) -> Launch:
    parser = argparse.ArgumentParser(prog="python -m cerebelum.kube.main", description=__doc__)
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--namespace", action="append", dest="namespaces", metavar="NAME")
    scope.add_argument("--all-namespaces", action="store_true")
    parser.add_argument("--liveness", metavar="URL", help="serve Kopf's /healthz here")
    parser.add_argument("--log-format", choices=sorted(_LOG_FORMATS), default="full")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--debug", action="store_true")
    level.add_argument("--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--webhooks", action="store_true", help="serve the admission webhooks")
    args = parser.parse_args(argv)
    namespaces = tuple(dict.fromkeys(args.namespaces or ()))
    for name in namespaces:
        if not name or any(c in name for c in "*?[]!,"):
            parser.error(f"--namespace {name!r}: give namespaces by name (no patterns)")
    return Launch(
        namespaces=namespaces,
        liveness=args.liveness,
        log_format=args.log_format,
        debug=args.debug,
        quiet=args.quiet,
        webhooks=args.webhooks,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    launch = parse(argv)
    kopf.configure(
        debug=launch.debug, quiet=launch.quiet, log_format=_LOG_FORMATS[launch.log_format]
    )
    importlib.import_module(HANDLERS_MODULE)
    if launch.webhooks:
        importlib.import_module(WEBHOOKS_MODULE)
    operator = kopf.operator(
        standalone=True,
        clusterwide=not launch.namespaces,
        namespaces=launch.namespaces,
        liveness_endpoint=launch.liveness,
        memo=kopf.Memo({NAMESPACES_MEMO: launch.namespaces}),
    )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(operator)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
