"""The ``digitalocean`` action: DigitalOcean API calls through the official ``pydo`` client.

Adding an operation is one line in ``OPERATIONS``. ``droplets.create`` is exactly-once: the
droplet is tagged with a tag derived from the step's idempotency key (the same for every
attempt of a visit, and after an operator restart), and the tag is looked up before creating.
A crash after the API call but before the status write therefore finds the droplet instead
of creating a second one.

Error classes: RateLimited (429) and ServerError (5xx), retryable with the API's Retry-After;
ConnectionFailed and Transport, retryable; Unauthorized, NotFound, Invalid and ClientError,
not retryable. Messages carry the API's own message, never the token.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from cerebelum.actions.base import ActionContext, ActionKind
from cerebelum.actions.errors import ActionError
from cerebelum.actions.http import retry_after


@dataclass(frozen=True)
class DigitalOceanSettings:
    """Settings of the digitalocean action."""

    #: The API's endpoint (any compatible API: the tests use a local fake); a step's
    #: ``endpoint`` overrides it.
    endpoint: str = "https://api.digitalocean.com"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DigitalOceanSettings:
        return cls(endpoint=env.get("CEREBELUM_DIGITALOCEAN_ENDPOINT") or cls.endpoint)


@dataclass(frozen=True)
class Operation:
    group: str
    method: str
    has_body: bool = False


#: call name -> pydo operation. One line per supported call.
OPERATIONS: dict[str, Operation] = {
    "droplets.create": Operation("droplets", "create", has_body=True),
    "droplets.get": Operation("droplets", "get"),
    "droplets.list": Operation("droplets", "list"),
    "droplets.delete": Operation("droplets", "destroy"),
    "droplet_actions.post": Operation("droplet_actions", "post", has_body=True),
    "actions.get": Operation("actions", "get"),
}

_ERROR_CLASSES = {
    401: "Unauthorized",
    403: "Unauthorized",
    404: "NotFound",
    422: "Invalid",
    429: "RateLimited",
}


def idempotency_tag(key: str) -> str:
    """A droplet tag (letters, digits, dashes) unique to one visit of one step."""
    return "cerebelum-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def _capture(
    pipeline_response: Any, deserialized: Any, headers: Any
) -> tuple[int, Any, dict[str, str]]:
    response = pipeline_response.http_response
    return response.status_code, deserialized, dict(response.headers)


def _api_message(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return "no message"


class _Api:
    """One pydo client for one attempt; every call returns (status, data, headers)."""

    def __init__(self, client: Any, endpoint: str) -> None:
        self._client = client
        # azure-core refuses bearer tokens over plain HTTP; an http:// endpoint is an explicit
        # choice (a local or in-cluster compatible API), the real API is always https.
        self._extra = {"enforce_https": False} if urlparse(endpoint).scheme == "http" else {}

    async def call(self, call: str, params: dict[str, Any], body: Any) -> Any:
        operation = OPERATIONS[call]
        method = getattr(getattr(self._client, operation.group), operation.method)
        kwargs = dict(params)
        if operation.has_body:
            kwargs["body"] = body or {}
        from azure.core.exceptions import (
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            status, data, headers = await method(**kwargs, cls=_capture, **self._extra)
        except HttpResponseError as exc:
            status, data, headers = exc.status_code or 0, None, {}
            response: Any = exc.response
            if response is not None:
                headers = dict(response.headers)
                with contextlib.suppress(ValueError):
                    data = response.json()
        except ServiceRequestError:
            raise ActionError(
                "ConnectionFailed", f"{call}: cannot connect to the API", retryable=True
            ) from None
        except ServiceResponseError:
            raise ActionError(
                "Transport", f"{call}: the connection failed mid-response", retryable=True
            ) from None
        except TypeError as exc:
            raise ActionError(
                "Invalid", f"{call}: bad parameters ({exc})", retryable=False
            ) from None
        if 200 <= status < 300:
            return data if data is not None else {}
        retryable = status == 429 or status >= 500
        raise ActionError(
            _ERROR_CLASSES.get(status, "ServerError" if status >= 500 else "ClientError"),
            f"{call} returned {status}: {_api_message(data)}",
            retryable=retryable,
            retry_after=retry_after(headers.get("Retry-After") or headers.get("retry-after"))
            if retryable
            else None,
        )


async def _create_droplet_once(api: _Api, body: dict[str, Any], context: ActionContext) -> Any:
    tag = idempotency_tag(context.idempotency_key)
    existing = await api.call("droplets.list", {"tag_name": tag, "per_page": 1}, None)
    droplets = existing.get("droplets") or []
    if droplets:
        return {"droplet": droplets[0], "idempotencyTag": tag, "adopted": True}
    tagged = {**body, "tags": [*(body.get("tags") or []), tag]}
    created = await api.call("droplets.create", {}, tagged)
    return {**created, "idempotencyTag": tag, "adopted": False}


async def digitalocean(params: dict[str, Any], context: ActionContext) -> Any:
    call = str(params.get("call", ""))
    if call not in OPERATIONS:
        supported = ", ".join(sorted(OPERATIONS))
        raise ActionError(
            "Invalid", f"unsupported call {call!r}; supported: {supported}", retryable=False
        )
    ref = params["tokenSecretRef"]
    token = await context.secrets.read(ref["name"], ref["key"])
    settings = context.settings if isinstance(context.settings, DigitalOceanSettings) else None
    endpoint = str(params.get("endpoint") or (settings or DigitalOceanSettings()).endpoint)
    from pydo.aio import Client

    # retry_total=0: retries belong to the workflow (visible in status), not hidden in the client.
    async with Client(token, endpoint=endpoint, retry_total=0) as client:
        api = _Api(client, endpoint)
        body = params.get("body")
        if call == "droplets.create":
            return await _create_droplet_once(api, dict(body or {}), context)
        result = await api.call(call, dict(params.get("params") or {}), body)
        return result if result else {"ok": True}


KIND = ActionKind("digitalocean", digitalocean, settings=DigitalOceanSettings)
