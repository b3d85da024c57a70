"""How actions fail: ``ActionError`` (what a step's error becomes) and the classification of
connection problems, which every client raises differently.

The bottom of the actions package: it imports nothing of ours, so the secret reader, the
API retry and the operator's own API client can all use it.
"""

from __future__ import annotations

import datetime
from typing import Any


class ActionError(Exception):
    """A failed attempt. ``error_class`` is what retry.retryOn and next[].when match."""

    def __init__(
        self,
        error_class: str,
        message: str,
        *,
        retryable: bool,
        retry_after: datetime.timedelta | None = None,
        details: dict[str, Any] | None = None,
        pins: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        #: Structured detail a rule may match (``error.details`` in CEL).
        self.details = details
        #: Values to keep for the rest of the workflow even though the attempt failed.
        self.pins = pins


def transport_error(exc: BaseException) -> ActionError | None:
    """The retryable error a connection problem is, whichever client raised it (aiohttp,
    sockets, pydo's azure-core pipeline, the Kubernetes client), or None if it is not one.

    A connection that fails says nothing about the request, so a retry can always help.
    """
    import aiohttp

    name = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionError):
        return ActionError("ConnectionFailed", f"cannot connect ({name})", retryable=True)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ActionError("Transport", f"the connection failed ({name})", retryable=True)
    for cls in type(exc).__mro__:
        if cls.__module__.startswith("azure.core") and cls.__name__ in (
            "ServiceRequestError",
            "ServiceResponseError",
        ):
            return ActionError("Transport", f"the connection failed ({name})", retryable=True)
        if cls.__name__ == "ApiException" and cls.__module__.startswith("kubernetes_asyncio"):
            status = int(getattr(exc, "status", 0) or 0)
            if status in (0, 429) or status >= 500:
                return ActionError(
                    "ApiError", f"the Kubernetes API answered HTTP {status}", retryable=True
                )
    return None
