"""Cerebelum Operator: durable workflows on Kubernetes.

``from cerebelum import step, workflow, Context, sleep, poll, approval`` is the Python SDK
(see ``cerebelum.sdk``; Cerebelum's own names are here too, and in ``cerebelum.dsl``). The
package is laid out as a functional core (``api``, ``engine``) inside an imperative shell
(``kube``, ``actions``, ``worker``); see the README's design notes.
"""

__version__ = "0.1.0"

from cerebelum.sdk import *  # noqa: F403 - the SDK is the package's public face
from cerebelum.sdk import __all__ as _sdk_names
from cerebelum.sdk.serializer import DSLSerializer

__all__ = ["DSLSerializer", "__version__", *_sdk_names]
