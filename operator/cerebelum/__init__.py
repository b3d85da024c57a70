"""Cerebelum Operator: durable workflows on Kubernetes.

``from cerebelum import step, workflow, Context, sleep, poll, approval`` is the Python SDK
(see ``cerebelum.sdk``; Cerebelum's own names are here too, and in ``cerebelum.dsl``). The
package is laid out as a functional core (``api``, ``engine``) inside an imperative shell
(``kube``, ``actions``, ``worker``); see the README's design notes.

The SDK's names are imported on first use (PEP 562): the operator process, which never uses
the SDK, then does not import it at start-up, where every tenth of a second delays the
workflows due during a restart (``bench/restart.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cerebelum.sdk import *  # noqa: F403 - the SDK is the package's public face
    from cerebelum.sdk.serializer import DSLSerializer as DSLSerializer


def __getattr__(name: str) -> Any:
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # ``from cerebelum import expressions`` asks here first: a submodule is for the
        # import system to load, not a reason to import the SDK.
        raise AttributeError(name)
    if name == "DSLSerializer":
        return importlib.import_module("cerebelum.sdk.serializer").DSLSerializer
    sdk = importlib.import_module("cerebelum.sdk")
    if name == "__all__":
        return ["DSLSerializer", "__version__", *sdk.__all__]
    if name in sdk.__all__:
        return getattr(sdk, name)
    raise AttributeError(f"module 'cerebelum' has no attribute {name!r}")
