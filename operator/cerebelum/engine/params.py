"""Checks on an action's parameters after ``${{ }}`` interpolation.

The schema can only check what is written; an expression's result is known when the step
runs. A value of the wrong kind fails the step with an error naming the field and the
expression that produced it, before any I/O, instead of a confusing error deep inside the
action (``invalid literal for int()``) or a retry of something no retry can fix.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

_HTTP_SCHEMES = ("http", "https")


def params_problem(kind: str, raw: dict[str, Any], params: dict[str, Any]) -> str | None:
    """Why ``params`` (interpolated from ``raw``) cannot be used, or None."""
    if kind == "tcp":
        return _port_problem(raw.get("port"), params.get("port"))
    if kind == "http":
        return _url_problem(raw.get("url"), params.get("url"))
    return None


def _source(raw: Any) -> str:
    return f" (from {raw!r})" if isinstance(raw, str) and "${{" in raw else ""


def _port_problem(raw: Any, port: Any) -> str | None:
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port.strip())
    if isinstance(port, bool) or not isinstance(port, int):
        return f"tcp.port: {port!r}{_source(raw)} is not a port number"
    if not 0 < port < 65536:
        return f"tcp.port: {port}{_source(raw)} is not between 1 and 65535"
    return None


def _url_problem(raw: Any, url: Any) -> str | None:
    if not isinstance(url, str):
        return f"http.url: {url!r}{_source(raw)} is not a string"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"http.url: {url[:200]!r}{_source(raw)} is not a URL: {exc}"
    if parts.scheme.lower() not in _HTTP_SCHEMES:
        scheme = parts.scheme or "no scheme"
        return f"http.url: {url[:200]!r}{_source(raw)} has {scheme!r}; only http and https are supported"
    if not parts.hostname:
        return f"http.url: {url[:200]!r}{_source(raw)} names no host"
    return None
