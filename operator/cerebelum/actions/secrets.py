"""Secrets for actions, read on demand and never written anywhere.

Actions read a Secret's key through a ``SecretSource``. The source remembers every value it
revealed, and ``execute`` scrubs those values from the action's output and error message
before anything reaches status, Events or logs. An action echoing its token back (an
HTTP server reflecting a header, an error quoting a request) cannot leak it.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from cerebelum.actions.api_retry import api_call
from cerebelum.actions.errors import ActionError, ApiError, transport_error

REDACTED = "***"


class SecretSource(Protocol):
    async def read(self, name: str, key: str) -> str: ...

    @property
    def revealed(self) -> frozenset[str]: ...


#: Reads a Secret's ``data`` (base64 values): (namespace, name); a refusal raises ApiError.
SecretReader = Callable[[str, str], Awaitable[dict[str, str]]]


class KubeSecretSource:
    """Reads Secrets in one namespace through the operator's API client."""

    def __init__(self, reader: SecretReader, namespace: str) -> None:
        self._reader = reader
        self._namespace = namespace
        self._revealed: set[str] = set()

    @property
    def revealed(self) -> frozenset[str]:
        return frozenset(self._revealed)

    async def read(self, name: str, key: str) -> str:
        where = f"secret {name!r} (key {key!r}) in namespace {self._namespace!r}"
        try:
            data = await api_call(lambda: self._reader(self._namespace, name), f"reading {where}")
        except ApiError as exc:
            if exc.status == 404:
                raise ActionError(
                    "SecretNotFound", f"{where} does not exist", retryable=True
                ) from None
            if exc.status == 403:
                raise ActionError(
                    "SecretForbidden", f"the operator may not read {where}", retryable=False
                ) from None
            raise ActionError(
                "SecretUnavailable", f"reading {where} failed: HTTP {exc.status}", retryable=True
            ) from None
        except Exception as exc:
            transient = transport_error(exc)
            if transient is None:
                raise
            raise ActionError(
                "SecretUnavailable", f"reading {where} failed: {transient.message}", retryable=True
            ) from None
        if key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise ActionError(
                "SecretKeyNotFound", f"{where}: no such key (keys: {keys})", retryable=False
            )
        value = base64.b64decode(data[key]).decode("utf-8").strip()
        self._revealed |= revealed_parts(value)
        return value


#: Lines of a multi-line secret this long or longer are scrubbed on their own too.
_LINE_MIN = 16


def revealed_parts(value: str) -> set[str]:
    """What to scrub for a secret: the value, and each long line of a multi-line one (a
    private key), so that part of it echoed back is scrubbed as well."""
    if not value:
        return set()
    parts = {value}
    if "\n" in value:
        parts |= {line.strip() for line in value.splitlines() if len(line.strip()) >= _LINE_MIN}
    return parts


class NoSecrets:
    """For contexts where no Secret may be read (unit tests of local actions)."""

    revealed: frozenset[str] = frozenset()

    async def read(self, name: str, key: str) -> str:
        raise ActionError(
            "SecretUnavailable", f"no secret source to read {name!r}", retryable=False
        )


def scrub(value: Any, secrets: frozenset[str]) -> Any:
    """``value`` with every occurrence of a secret replaced by ***, recursively."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    return value
