"""Waits between attempts, computed without a clock or a random source.

Jitter must be random across workflows yet reproducible for one attempt (the engine is
pure and may be re-run on the same input), so it is derived from a hash of the attempt's
identity rather than from ``random``.
"""

from __future__ import annotations

import datetime
import hashlib

from cerebelum.api.durations import parse_duration
from cerebelum.api.spec import PollSpec, RetrySpec

DEFAULT_RETRY_DELAY = datetime.timedelta(seconds=1)
DEFAULT_RETRY_FACTOR = 2.0


def _spread(seed: str) -> float:
    """A stable pseudo-random number in [-1, 1) for ``seed``."""
    digest = hashlib.sha256(seed.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**63 - 1.0


def retry_delay(retry: RetrySpec, retry_number: int, seed: str) -> datetime.timedelta:
    """Wait before retry ``retry_number`` (1 = the first retry): delay × factor^(n-1),
    capped at maxDelay, then spread by ± jitter."""
    backoff = retry.backoff
    delay = parse_duration(backoff.delay) if backoff and backoff.delay else DEFAULT_RETRY_DELAY
    factor = backoff.factor if backoff and backoff.factor else DEFAULT_RETRY_FACTOR
    seconds = delay.total_seconds() * factor ** (retry_number - 1)
    if backoff and backoff.max_delay:
        seconds = min(seconds, parse_duration(backoff.max_delay).total_seconds())
    if backoff and backoff.jitter:
        seconds *= 1.0 + backoff.jitter * _spread(f"{seed}/{retry_number}")
    return datetime.timedelta(seconds=max(seconds, 0.0))


def poll_interval(poll: PollSpec, attempts_done: int) -> datetime.timedelta:
    """Wait after attempt ``attempts_done``: interval × factor^(n-1), capped at maxInterval."""
    seconds = parse_duration(poll.interval).total_seconds()
    if poll.backoff_factor:
        seconds *= poll.backoff_factor ** (attempts_done - 1)
    if poll.max_interval:
        seconds = min(seconds, parse_duration(poll.max_interval).total_seconds())
    return datetime.timedelta(seconds=seconds)
