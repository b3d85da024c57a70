"""Whose credentials a request of the UI uses. Never the UI's own: locally, the kubeconfig's
(the user who ran ``cerebelum ui``); in the cluster, the bearer token the user presents (an
auth proxy's ``Authorization`` header, or the token entered on the login page, kept in an
HttpOnly cookie). So RBAC and the approver webhook stay the only authority.

A token is kept only in memory, as the key of its API client (by its SHA-256), and never
logged or put in a URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

logger = logging.getLogger(__name__)

#: Distinct users' clients kept at once in cluster mode (least recently used go first).
MAX_SESSIONS = 200


@dataclass
class Session:
    """One user's API client, who the API server says they are, and their caches."""

    key: str
    api: Any
    user: str = ""
    groups: list[str] = field(default_factory=list)
    caches: dict[str, Any] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def whoami(self) -> tuple[str, list[str]]:
        """The user and groups, from a SelfSubjectReview (asked with their own token)."""
        if not self.user:
            review = await client.AuthenticationV1Api(self.api).create_self_subject_review(
                client.V1SelfSubjectReview(
                    api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"
                )
            )
            info = review.status.user_info
            self.user, self.groups = info.username or "", list(info.groups or [])
        return self.user, self.groups

    async def close(self) -> None:
        for cache in self.caches.values():
            await cache.stop()
        await self.api.close()


class LocalIdentity:
    """Every request is the kubeconfig's user."""

    def __init__(self, api: Any) -> None:
        self.session = Session("local", api)

    async def session_for(self, token: str | None) -> Session | None:
        return self.session

    async def close(self) -> None:
        await self.session.close()


class TokenIdentity:
    """Every request is the user whose bearer token it carries; none: nobody (login)."""

    def __init__(self, host: str, ca_file: str | None, *, verify: bool = True) -> None:
        self.host = host
        self.ca_file = ca_file
        self.verify = verify
        self.sessions: OrderedDict[str, Session] = OrderedDict()

    def _client(self, token: str) -> Any:
        configuration = client.Configuration()
        configuration.host = self.host
        configuration.ssl_ca_cert = self.ca_file
        configuration.verify_ssl = self.verify
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(configuration)

    async def session_for(self, token: str | None) -> Session | None:
        if not token:
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        session = self.sessions.get(key)
        if session is None:
            session = Session(key, self._client(token))
            self.sessions[key] = session
            while len(self.sessions) > MAX_SESSIONS:
                _, old = self.sessions.popitem(last=False)
                await old.close()
        self.sessions.move_to_end(key)
        return session

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()
        self.sessions.clear()
