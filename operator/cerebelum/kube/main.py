"""The operator process: ``python -m cerebelum.kube.main``, which ``cerebelum operator``, the
image, the tests and the demo run (``kube.command.operator_argv`` builds its command line).

Kopf's ``kopf run`` would start the same handlers, but the runtime watches Workflows itself
(``kube.watch``) and must watch the namespaces Kopf is told to: both get them here, from one
command line. Kopf is then started through its programmatic API (``kopf.operator``), on
asyncio's own event loop. Not on uvloop, as ``kopf run`` would where it is installed: with
aiohttp, uvloop loses track of sockets when connections are reset and cancelled in
numbers, which is what an API server restart does to an operator (uvloop's issue #653:
"File descriptor N is used by transport" failing new HTTP requests, and on a loaded
machine an abort of the whole process). tests/integration/test_api_outage.py caught both
on uvloop 0.23 with the machine's cores kept busy; on asyncio's loop it passes.

Kopf is imported here without its optional support for ``kubernetes_asyncio``'s model
objects (``kopf.adopt()`` on a ``V1Pod`` and such, which this operator never uses: it hands
Kopf plain dicts). That support imports the whole typed client, some 700 modules and a
third of a second or more before a restarted operator can wake the workflows that fell due
while it was down (``bench/restart.py``). For the same reason Kopf's registry here is a
plain one: the default one looks for client libraries to log in with, importing them, where
the operator's own login (``kube.rest``) is registered instead.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from cerebelum.kube.command import HANDLERS_MODULE, WEBHOOKS_MODULE

#: The key of kopf.Memo under which the startup handler finds the namespaces.
NAMESPACES_MEMO = "namespaces"
_LOG_FORMATS = ("plain", "full", "json")
#: What Kopf imports only for kopf.adopt() and friends on kubernetes_asyncio's models.
_MODELS_ONLY = "kubernetes_asyncio"


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


def import_kopf() -> ModuleType:
    """Kopf, imported without its support for kubernetes_asyncio's model objects (it
    tries the import and goes without on ImportError). Where something imported the client
    already, nothing is saved, and Kopf is imported as usual."""
    if "kopf" in sys.modules or _MODELS_ONLY in sys.modules:
        return importlib.import_module("kopf")
    sys.modules[_MODELS_ONLY] = None  # type: ignore[assignment]  # an import raises ImportError
    try:
        return importlib.import_module("kopf")
    finally:
        del sys.modules[_MODELS_ONLY]  # later imports (the actions') load it as usual


def main(argv: Sequence[str] | None = None) -> int:
    launch = parse(argv)
    kopf = import_kopf()
    kopf.configure(
        debug=launch.debug,
        quiet=launch.quiet,
        log_format=getattr(kopf.LogFormat, launch.log_format.upper()),
    )
    kopf.set_default_registry(kopf.OperatorRegistry())
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
    asyncio.run(operator)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
