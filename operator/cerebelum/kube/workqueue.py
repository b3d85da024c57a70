"""A work queue that runs each workflow one reconciliation at a time, and one timer heap.

Waking a workflow at its deadline costs a heap entry, not a task or an API call: a single
scheduler task sleeps until the earliest deadline of all workflows. This is what lets ten
thousand waiting workflows cost almost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import heapq
import itertools
import types
from collections import deque
from collections.abc import Callable, Mapping

Key = tuple[str, str]  # (namespace, name)


class WorkQueue:
    """Keys to reconcile. A key queued twice runs once; a key that changes while it is
    being processed runs again afterwards, never concurrently with itself.

    Two lanes: urgent keys (a deadline arrived, an action returned) go before keys a watch
    event brought. A burst of watch events (thousands of workflows created at once, or our
    own writes coming back) then never makes a due wake-up or a finished action wait.
    """

    def __init__(self) -> None:
        self._urgent: deque[Key] = deque()
        self._normal: deque[Key] = deque()
        #: Queued keys, and whether they are urgent.
        self._dirty: dict[Key, bool] = {}
        self._processing: set[Key] = set()
        self._ready = asyncio.Event()

    def add(self, key: Key, *, urgent: bool = False) -> None:
        queued = self._dirty.get(key)
        if queued is not None and (queued or not urgent):
            return
        self._dirty[key] = urgent
        if key not in self._processing:
            (self._urgent if urgent else self._normal).append(key)
            self._ready.set()

    async def get(self) -> Key:
        while True:
            for lane in (self._urgent, self._normal):
                while lane:
                    key = lane.popleft()
                    if key in self._dirty and key not in self._processing:
                        del self._dirty[key]
                        self._processing.add(key)
                        return key
            self._ready.clear()
            await self._ready.wait()

    def done(self, key: Key) -> None:
        self._processing.discard(key)
        urgent = self._dirty.get(key)
        if urgent is not None:
            (self._urgent if urgent else self._normal).append(key)
            self._ready.set()

    def urgent_waiting(self) -> bool:
        """Whether a key waits in the urgent lane (not yet taken by a worker)."""
        return any(self._dirty.get(key) for key in self._urgent)

    async def urgent_taken(self, timeout: float) -> None:
        """Return once every urgent key has been taken by a worker, or after ``timeout``."""
        await self._until(lambda: not self.urgent_waiting(), timeout)

    async def urgent_done(self, timeout: float) -> None:
        """Return once no urgent key waits and no key is being worked on, or after
        ``timeout``."""
        await self._until(lambda: not self.urgent_waiting() and not self._processing, timeout)

    @staticmethod
    async def _until(condition: Callable[[], bool], timeout: float) -> None:
        """Poll ``condition`` (every 5 ms) until it holds or ``timeout`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition() and loop.time() < deadline:
            await asyncio.sleep(0.005)

    def __len__(self) -> int:
        return len(self._dirty)


class WakeScheduler:
    """Puts a key on the queue when its deadline arrives. Only the latest deadline per key
    counts; superseded heap entries are skipped when they surface."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue
        self._heap: list[tuple[datetime.datetime, int, Key]] = []
        self._wanted: dict[Key, datetime.datetime] = {}
        self._counter = itertools.count()
        self._changed = asyncio.Event()

    def schedule(self, key: Key, at: datetime.datetime | None) -> None:
        if at is None:
            self._wanted.pop(key, None)
            return
        if self._wanted.get(key) == at:
            return
        self._wanted[key] = at
        heapq.heappush(self._heap, (at, next(self._counter), key))
        if len(self._heap) > 4 * len(self._wanted) + 64:  # drop superseded entries
            self._heap = [(t, n, k) for t, n, k in self._heap if self._wanted.get(k) == t]
            heapq.heapify(self._heap)
        self._changed.set()

    def forget(self, key: Key) -> None:
        self._wanted.pop(key, None)

    @property
    def waiting(self) -> int:
        return len(self._wanted)

    @property
    def deadlines(self) -> Mapping[Key, datetime.datetime]:
        """Every key's deadline (read-only)."""
        return types.MappingProxyType(self._wanted)

    async def run(self) -> None:
        while True:
            self._changed.clear()
            now = datetime.datetime.now(datetime.UTC)
            while self._heap and self._heap[0][0] <= now:
                at, _, key = heapq.heappop(self._heap)
                if self._wanted.get(key) == at:
                    del self._wanted[key]
                    self._queue.add(key, urgent=True)
            timeout = (self._heap[0][0] - now).total_seconds() if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
