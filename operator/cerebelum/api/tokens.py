"""Callback tokens: a capability for one attempt of one step's callback wait.

A token is ``v1.<claims>.<mac>``: the claims (namespace, workflow, uid, step, visit,
attempt) in base64url JSON, and an HMAC-SHA256 of them under the operator's callback key
(256 bits, truncated to 192). Nothing random is stored: the same attempt always gets the
same token, so a retried request or an operator restart hands out the one the outside
system already has, and only its hash is written to status (``callback.tokenHash``).

Whoever receives a callback (any replica) checks the MAC first, in constant time, before
looking anything up: a forged or mangled token learns nothing about which workflows exist.
The token names a uid, so a workflow deleted and created again under the same name never
accepts its predecessor's callbacks. Single use and expiry are the step's state: a token
is good only while its attempt's step waits and nothing was delivered for it yet.

Pure (hashlib, hmac): the engine hashes tokens; the shell issues and checks them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

_VERSION = "v1"
_MAC_BYTES = 24
#: Longer than any token we issue (names are at most 253 + 63 + 63 characters).
MAX_TOKEN_LENGTH = 1024


@dataclass(frozen=True)
class TokenClaims:
    """What a token is good for."""

    namespace: str
    workflow: str
    uid: str
    step: str
    visit: int
    attempt: int


def token_hash(token: str) -> str:
    """What status keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CallbackIssuer:
    """Issues and checks tokens under one key; ``base_url`` is where callbacks are POSTed
    (None: no endpoint is served, only ``kubectl annotate`` delivers)."""

    def __init__(self, key: bytes | None, base_url: str | None = None) -> None:
        if key is not None and len(key) < 16:
            raise ValueError("the callback key must be at least 16 bytes (128 bits)")
        self._key = key
        self.base_url = base_url.rstrip("/") if base_url else None

    @classmethod
    def ephemeral(cls, base_url: str | None = None) -> CallbackIssuer:
        """A random key for one process (the local runner, tests)."""
        return cls(secrets.token_bytes(32), base_url)

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def _mac(self, payload: str) -> str:
        assert self._key is not None
        digest = hmac.new(self._key, f"{_VERSION}.{payload}".encode(), hashlib.sha256).digest()
        return _b64(digest[:_MAC_BYTES])

    def token(self, claims: TokenClaims) -> str:
        payload = _b64(
            json.dumps(
                [
                    claims.namespace,
                    claims.workflow,
                    claims.uid,
                    claims.step,
                    claims.visit,
                    claims.attempt,
                ],
                separators=(",", ":"),
            ).encode()
        )
        return f"{_VERSION}.{payload}.{self._mac(payload)}"

    def url(self, token: str) -> str | None:
        return f"{self.base_url}/callbacks/{token}" if self.base_url else None

    def verify(self, token: str) -> TokenClaims | None:
        """The claims of a token this key issued; None for anything else."""
        if self._key is None or len(token) > MAX_TOKEN_LENGTH:
            return None
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            return None
        payload, mac = parts[1], parts[2]
        if not hmac.compare_digest(self._mac(payload).encode(), mac.encode()):
            return None
        try:
            ns, name, uid, step, visit, attempt = json.loads(_unb64(payload))
        except (ValueError, TypeError, binascii.Error):
            return None
        if not all(isinstance(v, str) for v in (ns, name, uid, step)):
            return None
        if not all(isinstance(v, int) for v in (visit, attempt)):
            return None
        return TokenClaims(ns, name, uid, step, visit, attempt)


#: No key: tokens cannot be issued (an operator without a callback key).
NO_CALLBACKS = CallbackIssuer(None)
