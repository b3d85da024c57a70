"""The operator's HTTP client for the Kubernetes API: plain aiohttp and JSON.

Why not ``kubernetes_asyncio`` here: importing it loads some 700 generated modules, a third
of a second or more of a restarted operator's first second, before it can wake the
workflows that fell due while it was down (``bench/restart.py``). The operator's own calls
are few and simple (JSON in, JSON out, a watch stream), so they go through this module,
and the typed client is imported only for the actions that use it (Jobs, python steps),
on a thread, after the start.

Credentials come from Kopf's own login functions, so the operator's requests and Kopf's
use the same ones: a pod's service account, else the kubeconfig (``KUBECONFIG`` or
``~/.kube/config``, its current context); a kubeconfig whose user needs a plugin (``exec``,
``auth-provider`` without a token) goes through ``kubernetes_asyncio``'s loader, which runs
it, and is run again when the server refuses its token. A refusal raises ``ApiError``; its
message holds the server's reason, never a request.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf
import yaml

from cerebelum.actions.errors import ApiError

logger = logging.getLogger(__name__)

#: How much of a refusal's answer is kept (a Status object is well under it).
_BODY_LIMIT = 64 * 1024
_SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)


def _has_credentials(info: kopf.ConnectionInfo) -> bool:
    return bool(
        info.token
        or (info.username and info.password)
        or info.certificate_path
        or info.certificate_data
    )


def _kubeconfig_dir() -> Path | None:
    """The directory of the first kubeconfig file, which its relative paths are relative
    to (as kubectl reads them)."""
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p.strip()]
    first = Path(paths[0].strip()).expanduser() if paths else Path("~/.kube/config").expanduser()
    return first.parent if first.exists() else None


def _absolute(info: kopf.ConnectionInfo) -> kopf.ConnectionInfo:
    base = _kubeconfig_dir()
    if base is None:
        return info
    fixed: dict[str, Any] = {}
    for field in ("ca_path", "certificate_path", "private_key_path"):
        value = getattr(info, field)
        if isinstance(value, str) and value and not os.path.isabs(value):
            fixed[field] = str(base / value)
    return replace(info, **fixed) if fixed else info


async def login(**_: Any) -> kopf.ConnectionInfo:
    """Where the API server is and who we are, the way kubectl finds it. Also the
    operator's ``@kopf.on.login`` handler, so Kopf's watches use the same credentials."""
    settings = kopf.OperatorSettings()
    info: kopf.ConnectionInfo | None = None
    if (_SERVICE_ACCOUNT / "token").exists():
        info = kopf.login_with_service_account(settings=settings)
        host, port = (
            os.environ.get("KUBERNETES_SERVICE_HOST"),
            os.environ.get("KUBERNETES_SERVICE_PORT"),
        )
        if info is not None and host and port:  # as client-go does: no DNS lookup needed
            server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
            info = replace(info, server=server)
    else:
        try:
            info = kopf.login_with_kubeconfig(settings=settings)
        except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
            raise kopf.LoginError(f"cannot read the kubeconfig: {exc}") from None
        if info is not None:
            info = _absolute(info)
    if info is not None and _has_credentials(info):
        return info
    return await _login_with_plugin()


async def _login_with_plugin() -> kopf.ConnectionInfo:
    """A kubeconfig user that needs a plugin run (``exec``, ``auth-provider``):
    kubernetes_asyncio's loader runs it (imported here only, on this rare path)."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    where = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        await config.load_kube_config(config_file=where, client_configuration=configuration)
    except (config.ConfigException, OSError) as exc:
        raise kopf.LoginError(f"cannot log in with the kubeconfig: {exc}") from None
    header = await configuration.get_api_key_with_prefix("BearerToken") or ""
    scheme, _, token = header.partition(" ") if " " in header else ("", "", header)
    return kopf.ConnectionInfo(
        server=configuration.host or "",
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def _expired(info: kopf.ConnectionInfo) -> bool:
    if info.expiration is None:
        return False
    expiration = info.expiration
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=datetime.UTC)
    return datetime.datetime.now(datetime.UTC) >= expiration - datetime.timedelta(seconds=30)


class RestClient:
    """One aiohttp session to the API server. Logs in again when the credentials expire
    or the server answers 401 (a service account's token is rotated on disk)."""

    def __init__(self, info: kopf.ConnectionInfo) -> None:
        self._info = info
        self._session = self._open(info)
        self._relogin = asyncio.Lock()

    @classmethod
    async def connect(cls) -> RestClient:
        return cls(await login())

    @staticmethod
    def _open(info: kopf.ConnectionInfo) -> aiohttp.ClientSession:
        # trust_env as Kopf's settings have it (off): no proxy or netrc lookups, which
        # aiohttp would make on a thread before every request.
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, ssl=info.as_ssl_context()),
            headers={**info.as_http_headers(), "Accept": "application/json"},
            timeout=_TIMEOUT,
            proxy=info.proxy_url,
            trust_env=info.trust_env,
        )

    @property
    def server(self) -> str:
        return self._info.server.rstrip("/")

    async def _renew(self, stale: aiohttp.ClientSession) -> None:
        async with self._relogin:
            if self._session is not stale:  # another request renewed it meanwhile
                return
            info = await login()
            self._info, self._session = info, self._open(info)
        await stale.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request; its JSON answer, or ApiError with the server's reason."""
        for attempt in (1, 2):
            session = self._session
            if _expired(self._info):
                await self._renew(session)
                session = self._session
            data = None if body is None else json.dumps(body, separators=(",", ":"))
            headers = None if body is None else {"Content-Type": content_type}
            async with session.request(
                method, self.server + path, params=params, data=data, headers=headers
            ) as response:
                if response.status == 401 and attempt == 1:
                    await self._renew(session)
                    continue
                raw = await response.read()
                if response.status >= 400:
                    raise _refusal(response.status, response.reason, raw)
            answer: dict[str, Any] = json.loads(raw) if raw else {}
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def stream(
        self, path: str, params: Mapping[str, str | int], read_timeout: float
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A streaming GET (a watch): the open response, or ApiError if it is refused."""
        if _expired(self._info):
            await self._renew(self._session)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read_timeout)
        async with self._session.get(
            self.server + path, params=params, timeout=timeout
        ) as response:
            if response.status >= 400:
                raw = await response.content.read(_BODY_LIMIT)
                if response.status == 401:
                    await self._renew(self._session)
                raise _refusal(response.status, response.reason, raw)
            yield response

    async def close(self) -> None:
        await self._session.close()


def _refusal(status: int, reason: str | None, raw: bytes) -> ApiError:
    body = raw[:_BODY_LIMIT].decode("utf-8", "replace")
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    return ApiError(status, str(message or reason or "refused")[:500], body)


def path_of(group: str, version: str, plural: str, namespace: str | None, *names: str) -> str:
    """The URL path of a resource (``group`` "" is the core API), a collection when no name
    is given, a subresource after the name."""
    root = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    where = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
    tail = "".join(f"/{quote(n, safe='')}" for n in names)
    return f"{root}{where}/{plural}{tail}"
