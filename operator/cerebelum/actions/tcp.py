"""The ``tcp`` action: does a port accept connections? (Cerebelum's "SSH answers" check.)"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from cerebelum.actions.base import ActionContext, ActionKind, source
from cerebelum.actions.errors import ActionError
from cerebelum.api.durations import parse_duration

DEFAULT_CONNECT_TIMEOUT = "5s"


async def tcp(params: dict[str, Any], context: ActionContext) -> Any:
    host = str(params["host"])
    try:
        port = int(params["port"])
        timeout = parse_duration(
            str(params.get("connectTimeout") or DEFAULT_CONNECT_TIMEOUT)
        ).total_seconds()
    except (TypeError, ValueError) as exc:
        raise ActionError("InvalidAction", f"tcp {host}: {exc}", retryable=False) from None
    if not 0 < port < 65536:
        raise ActionError("InvalidAction", f"tcp port {port} is out of range", retryable=False)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        raise ActionError(
            "Timeout",
            f"{host}:{port} did not accept a connection within {timeout:g}s",
            retryable=True,
        ) from None
    except ConnectionRefusedError:
        raise ActionError(
            "ConnectionRefused", f"{host}:{port} refused the connection", retryable=True
        ) from None
    except OSError as exc:
        raise ActionError(
            "Unreachable", f"{host}:{port}: {exc.strerror or type(exc).__name__}", retryable=True
        ) from None
    latency_ms = (loop.time() - started) * 1000
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return {"reachable": True, "host": host, "port": port, "latencyMs": round(latency_ms, 1)}


def check(raw: dict[str, Any], params: dict[str, Any]) -> str | None:
    """The port, after interpolation, must be a port number."""
    written, port = raw.get("port"), params.get("port")
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port.strip())
    if isinstance(port, bool) or not isinstance(port, int):
        return f"tcp.port: {port!r}{source(written)} is not a port number"
    if not 0 < port < 65536:
        return f"tcp.port: {port}{source(written)} is not between 1 and 65535"
    return None


KIND = ActionKind("tcp", tcp, check=check)
