"""The ``http`` action: one request with aiohttp.

Error classes (what retry.retryOn and next[].when see): ConnectionFailed and Transport
(retryable), RateLimited for 429 and ServerError for 5xx (retryable, with Retry-After),
ClientError for other 4xx and UnexpectedStatus otherwise (not retryable unless listed in
retryableStatus), InvalidAction for a request that cannot be made.
"""

from __future__ import annotations

import datetime
import email.utils
import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from cerebelum.actions.base import ActionContext, ActionKind, source
from cerebelum.actions.errors import ActionError

BODY_LIMIT = 16 * 1024
_NOT_IN_OUTPUT = {"set-cookie", "authorization", "proxy-authorization"}
_UNSAFE = {"POST", "PUT", "PATCH"}


def retry_after(
    value: str | None, now: datetime.datetime | None = None
) -> datetime.timedelta | None:
    """A Retry-After header (seconds or an HTTP date) as a wait, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return datetime.timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or datetime.datetime.now(datetime.UTC)
    return max(when - now, datetime.timedelta(0))


def _error_class(status: int) -> str:
    if status == 429:
        return "RateLimited"
    if status >= 500:
        return "ServerError"
    if 400 <= status < 500:
        return "ClientError"
    return "UnexpectedStatus"


def _parse_body(raw: bytes, content_type: str) -> tuple[Any, bool]:
    truncated = len(raw) > BODY_LIMIT
    raw = raw[:BODY_LIMIT]
    if not truncated and "json" in content_type:
        try:
            return json.loads(raw), False
        except ValueError:
            pass
    return raw.decode("utf-8", errors="replace"), truncated


async def _headers(params: dict[str, Any], context: ActionContext) -> dict[str, str]:
    headers = {str(k): str(v) for k, v in (params.get("headers") or {}).items()}
    for header in params.get("headersFrom") or []:
        ref = header["secretKeyRef"]
        headers[header["name"]] = (header.get("prefix") or "") + await context.secrets.read(
            ref["name"], ref["key"]
        )
    return headers


async def http(params: dict[str, Any], context: ActionContext) -> Any:
    method = str(params.get("method") or "GET").upper()
    url = str(params["url"])
    if "body" in params and "bodyText" in params:
        raise ActionError("InvalidAction", "use body (JSON) or bodyText, not both", retryable=False)
    headers = await _headers(params, context)
    if method in _UNSAFE:
        headers.setdefault("Idempotency-Key", context.idempotency_key)
    kwargs: dict[str, Any] = {"headers": headers, "allow_redirects": True}
    if "body" in params:
        kwargs["json"] = params["body"]
    elif "bodyText" in params:
        kwargs["data"] = str(params["bodyText"]).encode()
    where = f"{method} {url}"
    if not str(url).lower().startswith(("http://", "https://")):
        raise ActionError(
            "InvalidAction", f"{where}: only http and https URLs are supported", retryable=False
        )
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, **kwargs) as response,
        ):
            raw = await response.content.read(BODY_LIMIT + 1)
            status = response.status
            reply_headers = {
                k: v for k, v in response.headers.items() if k.lower() not in _NOT_IN_OUTPUT
            }
            content_type = response.headers.get("Content-Type", "")
    except (aiohttp.InvalidURL, ValueError) as exc:
        raise ActionError(
            "InvalidAction", f"{where}: invalid request ({type(exc).__name__})", retryable=False
        ) from None
    except aiohttp.ClientConnectorError as exc:
        reason = (
            exc.os_error.strerror if exc.os_error and exc.os_error.strerror else type(exc).__name__
        )
        raise ActionError("ConnectionFailed", f"{where}: {reason}", retryable=True) from None
    except aiohttp.ClientError as exc:
        raise ActionError("Transport", f"{where}: {type(exc).__name__}", retryable=True) from None
    body, truncated = _parse_body(raw, content_type)
    expected = params.get("expectStatus")
    if (status in expected) if expected else (200 <= status < 300):
        output: dict[str, Any] = {"status": status, "headers": reply_headers, "body": body}
        if truncated:
            output["truncated"] = True
        return output
    retryable = status == 429 or status >= 500 or status in (params.get("retryableStatus") or [])
    snippet = body if isinstance(body, str) else json.dumps(body)
    raise ActionError(
        _error_class(status),
        f"{where} returned {status}: {snippet[:200]}",
        retryable=retryable,
        retry_after=retry_after(reply_headers.get("Retry-After")) if retryable else None,
    )


def check(raw: dict[str, Any], params: dict[str, Any]) -> str | None:
    """The URL, after interpolation, must be an http(s) URL with a host."""
    written, url = raw.get("url"), params.get("url")
    if not isinstance(url, str):
        return f"http.url: {url!r}{source(written)} is not a string"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"http.url: {url[:200]!r}{source(written)} is not a URL: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        scheme = parts.scheme or "no scheme"
        return f"http.url: {url[:200]!r}{source(written)} has {scheme!r}; only http and https are supported"
    if not parts.hostname:
        return f"http.url: {url[:200]!r}{source(written)} names no host"
    return None


KIND = ActionKind("http", http, check=check)
