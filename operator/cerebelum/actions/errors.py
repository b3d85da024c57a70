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


class ApiError(Exception):
    """A Kubernetes API server's refusal, as the operator's own client (``kube.rest``)
    raises it: the HTTP status, the reason the server gave and its answer (a ``Status``
    object, at most 64 KiB). Never the request: a request can hold a token or a Secret.

    It has the attributes of ``kubernetes_asyncio``'s ApiException (``status``, ``reason``,
    ``body``), so code that reads a refusal reads either the same way."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason
        self.body = body


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
    if isinstance(exc, ApiError):
        return _api_refusal(exc.status)
    for cls in type(exc).__mro__:
        if cls.__module__.startswith("azure.core") and cls.__name__ in (
            "ServiceRequestError",
            "ServiceResponseError",
        ):
            return ActionError("Transport", f"the connection failed ({name})", retryable=True)
        if cls.__name__ == "ApiException" and cls.__module__.startswith("kubernetes_asyncio"):
            return _api_refusal(int(getattr(exc, "status", 0) or 0))
    return None


def _api_refusal(status: int) -> ActionError | None:
    """An API server's answer that a retry can change: none at all, 429 or a 5xx."""
    if status in (0, 429) or status >= 500:
        return ActionError("ApiError", f"the Kubernetes API answered HTTP {status}", retryable=True)
    return None
