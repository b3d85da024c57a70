"""How many reconciliations run at once: sized to what the API server takes, not fixed.

Slow start, then additive increase, multiplicative decrease, as TCP does: until the first
sign of congestion every fast write adds a slot (the limit doubles per round of writes: a
burst after a restart, or thousands of workflows waking together, gets going in a few
rounds, not tens); after it, every status write that comes back within ``target`` seconds
adds ``1/limit`` (one more slot per round of writes), up to ``ceiling``; a write the API
server throttles (429, its priority-and-fairness answer), fails (5xx), cannot reach, or
answers slowly halves the limit, at most once per ``cooldown``, down to ``floor``. A few
thousand workflows waking together then get as many writes in flight as the API server
serves well, and a struggling API server gets fewer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class AdaptiveLimit:
    start: int = 8
    floor: int = 2
    ceiling: int = 64
    #: A write slower than this counts as a sign of congestion.
    target: float = 0.5
    cooldown: float = 1.0
    clock: Callable[[], float] = field(default=time.monotonic)
    limit: float = field(init=False)
    active: int = field(default=0, init=False)
    _last_cut: float = field(default=float("-inf"), init=False)
    #: Until the first congestion: a slot per fast write.
    _slow_start: bool = field(default=True, init=False)
    _changed: asyncio.Condition | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.limit = float(min(max(self.start, self.floor), self.ceiling))

    @property
    def slots(self) -> int:
        return max(self.floor, int(self.limit))

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self) -> None:
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: self.active < self.slots)
            self.active += 1

    async def release(self) -> None:
        changed = self._condition()
        async with changed:
            self.active -= 1
            changed.notify_all()

    def record(self, *, latency: float | None = None, congested: bool = False) -> None:
        """Feed back one write: its latency, or that the API server pushed back."""
        if congested or (latency is not None and latency > self.target):
            now = self.clock()
            self._slow_start = False
            if now - self._last_cut >= self.cooldown:
                self._last_cut = now
                self.limit = max(float(self.floor), self.limit / 2)
            return
        if latency is not None:  # a raised limit is seen at the next release
            step = 1.0 if self._slow_start else 1 / self.limit
            self.limit = min(float(self.ceiling), self.limit + step)
