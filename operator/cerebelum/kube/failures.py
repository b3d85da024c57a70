"""Reconciliations that fail: why, and when to try again.

A reconciliation that fails (the API server is away, or a bug) is retried per workflow with
capped exponential backoff and jitter, so an outage costs a few requests per workflow, not
a flood. When a failure was the API server being away, the next success means it is back:
every workflow that was backing off is looked at soon, not at the end of its backoff.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import random

from cerebelum.actions.errors import transport_error
from cerebelum.kube.cache import Key
from cerebelum.kube.settings import BackoffSettings


def unreachable(exc: BaseException) -> bool:
    """The API server could not be reached, or failed as a server (not a refusal)."""
    return transport_error(exc) is not None


def too_large(exc: BaseException) -> bool:
    """The API server refused the object for its size (413, or etcd's "request is too
    large" as a 500): retrying the same write can never succeed."""
    status = getattr(exc, "status", None)
    if status == 413:
        return True
    return status == 500 and "too large" in str(getattr(exc, "body", "") or "").lower()


def congestion(exc: BaseException) -> bool:
    """The API server pushed back (throttled, failing, unreachable), as opposed to refusing
    this one write (a conflict, a validation error, an object too large)."""
    if too_large(exc):
        return False
    status = getattr(exc, "status", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return True
    return transport_error(exc) is not None


def describe_failure(exc: BaseException) -> str:
    """A short, secret-free account of why a reconciliation failed."""
    transient = transport_error(exc)
    if transient is not None:
        return f"the API server is unreachable or failing ({transient.message})"
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        said = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            said = str(json.loads(getattr(exc, "body", "") or "{}").get("message") or "")
        return f"the API server answered HTTP {status}" + (f": {said[:300]}" if said else "")
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class FailureBackoff:
    """Failures in a row per workflow (absent: its last reconciliation succeeded)."""

    def __init__(self, settings: BackoffSettings) -> None:
        self.settings = settings
        self.failures: dict[Key, int] = {}
        #: A failure was the API server being away: the next success wakes the others.
        self._api_trouble = False

    def backoff(self, failures: int) -> datetime.timedelta:
        """Wait after the n-th failure in a row: base × 2^(n-1), capped, then jittered down
        by up to half so workflows that failed together do not retry together."""
        base = self.settings.retry_base_seconds
        ceiling = min(base * 2 ** min(failures - 1, 30), self.settings.retry_max_seconds)
        return datetime.timedelta(seconds=ceiling * random.uniform(0.5, 1.0))

    def failed(self, key: Key, exc: BaseException) -> int:
        """Count a failure; how many in a row this workflow has now."""
        count = self.failures.get(key, 0) + 1
        self.failures[key] = count
        self._api_trouble |= unreachable(exc)
        return count

    def warn_now(self, count: int) -> bool:
        """This many failures in a row is when users are told (once)."""
        return count == self.settings.failures_before_warning

    def succeeded(self, key: Key, now: datetime.datetime) -> dict[Key, datetime.datetime]:
        """Forget the workflow's failures. If the API server was away and is back, the others
        backing off are due now, spread over a short while: their new wake-up times."""
        self.failures.pop(key, None)
        if not self._api_trouble:
            return {}
        self._api_trouble = False
        spread = min(2.0, 0.005 * len(self.failures))
        return {
            other: now + datetime.timedelta(seconds=random.uniform(0, spread))
            for other in self.failures
        }

    def forget(self, key: Key) -> None:
        self.failures.pop(key, None)
