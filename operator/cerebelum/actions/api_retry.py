"""The operator's own API calls inside an attempt ride out short API server outages.

Reading a Secret or creating a StepRun or Job is the operator's plumbing, not the user's
action: a few seconds of kube-apiserver downtime must not use up a step's retries, nor
fail a step that has none. So such a call is repeated (same name, so a create that did
land is found by its 409) with capped, jittered backoff while the failure is a connection
problem or a 5xx/429, for up to ``budget`` seconds; the attempt's timeout and cancellation
still apply. Any other refusal is returned at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cerebelum.actions.errors import transport_error

T = TypeVar("T")

logger = logging.getLogger("cerebelum.actions")

#: How long an attempt waits for the API server to come back before the attempt fails.
DEFAULT_BUDGET = 120.0
_FIRST_DELAY = 0.2
_MAX_DELAY = 5.0


async def api_call(
    call: Callable[[], Awaitable[T]], what: str, *, budget: float = DEFAULT_BUDGET
) -> T:
    """``await call()``, repeated through transient API failures for up to ``budget`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    delay = _FIRST_DELAY
    failures = 0
    while True:
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            transient = transport_error(exc)
            wait = delay * random.uniform(0.5, 1.0)
            if transient is None or loop.time() + wait > deadline:
                raise
            failures += 1
            if failures == 1:
                logger.warning(
                    "%s: %s; retrying while the API server is away", what, transient.message
                )
            await asyncio.sleep(wait)
            delay = min(delay * 2, _MAX_DELAY)


def object_missing(exc: BaseException, name: str) -> bool:
    """A 404 that names the object: it was deleted. A kube-apiserver that is starting (or a
    proxy in front of it) also answers 404 for a resource it does not serve yet, with no
    object named; that is an outage to retry, not a deletion, or the workflow would be
    forgotten and never reconciled again."""
    if getattr(exc, "status", None) != 404:
        return False
    try:
        details = json.loads(getattr(exc, "body", None) or "{}").get("details") or {}
    except (ValueError, TypeError, AttributeError):
        return False
    return isinstance(details, dict) and details.get("name") == name
