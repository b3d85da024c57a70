"""The wake-up hint: after a restart, workflows already due are woken before the initial list
is through.

A restarted operator learns its timers from the initial list (each workflow's status says
what it waits for). At 10,000 workflows that list takes seconds, in pages of 500 in name
order, so a workflow that fell due while the operator was away, and is listed last, would
wait for all of it. So the leader keeps the soonest deadlines of its timer heap in a
ConfigMap (those within ``horizon``, at most ``limit``), rewritten at most every
``interval`` and only when they changed: at most one small write every few seconds, none
while nothing changes. On start the operator reads it before listing, and fetches by name
the workflows due by then (or about to be), which sets their timers from their status
exactly as the list would; the list then finds them cached at the same resourceVersion.

A hint, never the truth: an entry may be stale (the workflow since deleted, woken or
changed) and the workflow's own status decides what happens; a workflow missing from it
(asleep since the last write, or the ConfigMap unreadable) is found by the list as before.
A line that does not parse is skipped. Without permission to read or write the ConfigMap
the operator says so once in its log and works as it would without the hint.

The functions above ``WakeHint`` are pure (tested with fake time); ``WakeHint`` does I/O.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from cerebelum.actions.errors import ApiError
from cerebelum.api.durations import format_time, parse_time
from cerebelum.kube.client import KubeClient
from cerebelum.kube.settings import WakeHintSettings
from cerebelum.kube.workqueue import Key

logger = logging.getLogger(__name__)

#: The ConfigMap's one key: a line per deadline, "<RFC 3339 time> <namespace> <name>".
DATA_KEY = "wakeups"
#: At start, workflows due up to this far ahead are fetched too: the list may take longer.
LOOKAHEAD = datetime.timedelta(seconds=10)
#: Workflows fetched at once at start.
FETCH_CONCURRENCY = 32
#: The list starts after this long (seconds) at most, whatever the hint holds.
RESTORE_TIMEOUT = 10.0

Entry = tuple[datetime.datetime, Key]


def soonest(
    deadlines: Mapping[Key, datetime.datetime],
    now: datetime.datetime,
    horizon: datetime.timedelta,
    limit: int,
) -> list[Entry]:
    """The deadlines up to ``now + horizon``, soonest first, at most ``limit`` of them."""
    until = now + horizon
    entries = [(at, key) for key, at in deadlines.items() if at <= until]
    entries.sort()
    return entries[:limit]


def encode(entries: Iterable[Entry]) -> dict[str, str]:
    """The ConfigMap's data (readable with ``kubectl get configmap -o yaml``)."""
    lines = [f"{format_time(at)} {namespace} {name}\n" for at, (namespace, name) in entries]
    return {DATA_KEY: "".join(lines)}


def decode(data: Mapping[str, str], namespaces: Collection[str]) -> tuple[list[Entry], int]:
    """The entries in the ConfigMap's data for the watched ``namespaces`` (empty: all), and
    the number of lines that did not parse."""
    entries: list[Entry] = []
    bad = 0
    for line in (data.get(DATA_KEY) or "").splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            when, namespace, name = parts
            at = parse_time(when)
        except ValueError:  # not three words, or not a time with a timezone
            bad += 1
            continue
        if not namespaces or namespace in namespaces:
            entries.append((at, (namespace, name)))
    return entries, bad


def due(entries: Iterable[Entry], now: datetime.datetime) -> list[Key]:
    """The workflows to fetch at start: due by ``now + LOOKAHEAD``, soonest first, once."""
    keys: dict[Key, None] = {}
    for _, key in sorted(e for e in entries if e[0] <= now + LOOKAHEAD):
        keys.setdefault(key, None)
    return list(keys)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class WakeHint:
    """Reads the hint at start (``restore``) and keeps it while leading (``run``)."""

    def __init__(
        self,
        kube: KubeClient,
        settings: WakeHintSettings,
        clock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self._clock = clock
        self._written: list[Entry] | None = None

    async def restore(
        self,
        namespaces: Collection[str],
        observe: Callable[[str | None, dict[str, Any]], None],
    ) -> int:
        """Fetch the workflows the hint says are due and hand them to ``observe`` as the
        initial list would. Returns how many were fetched; never raises for the hint's sake."""
        try:
            async with asyncio.timeout(RESTORE_TIMEOUT):
                return await self._restore(namespaces, observe)
        except Exception as exc:  # the list finds them all the same
            reason = f"{exc.status} {exc.reason}" if isinstance(exc, ApiError) else exc
            logger.warning(
                "the wake-up hint (configmap %s/%s) was not used (%s): due workflows wait "
                "for the initial list",
                self.settings.namespace,
                self.settings.name,
                reason or type(exc).__name__,
            )
            return 0

    async def _restore(
        self,
        namespaces: Collection[str],
        observe: Callable[[str | None, dict[str, Any]], None],
    ) -> int:
        data = await self.kube.read_config_map(self.settings.namespace, self.settings.name)
        if data is None:
            return 0
        entries, bad = decode(data, namespaces)
        if bad:
            logger.warning(
                "the wake-up hint (configmap %s/%s): %d lines skipped that do not parse",
                self.settings.namespace,
                self.settings.name,
                bad,
            )
        keys = due(entries, self._clock())
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def fetch(key: Key) -> bool:
            async with gate:
                try:
                    body = await self.kube.get_workflow(*key)
                except Exception as exc:  # this one waits for the list, the others go on
                    logger.debug("wake-up hint: %s/%s not fetched: %s", *key, exc)
                    return False
            if body is None:
                return False
            observe(None, body)
            return True

        fetched = await asyncio.gather(*(fetch(key) for key in keys))
        return sum(fetched)

    async def run(
        self,
        deadlines: Callable[[], Mapping[Key, datetime.datetime]],
        leading: Callable[[], bool],
    ) -> None:
        """Rewrite the hint every ``interval`` while leading, when it changed."""
        horizon = datetime.timedelta(seconds=self.settings.horizon)
        while True:
            await asyncio.sleep(self.settings.interval)
            if not leading():
                continue
            entries = soonest(deadlines(), self._clock(), horizon, self.settings.limit)
            if entries == self._written:
                continue
            try:
                await self.kube.write_config_map(
                    self.settings.namespace, self.settings.name, encode(entries)
                )
            except ApiError as exc:
                if exc.status in (401, 403):
                    logger.warning(
                        "the wake-up hint (configmap %s/%s) cannot be written (%s %s); "
                        "it is off until the operator restarts",
                        self.settings.namespace,
                        self.settings.name,
                        exc.status,
                        exc.reason,
                    )
                    return
                logger.debug("wake-up hint not written: %s %s", exc.status, exc.reason)
                continue
            except Exception as exc:  # an outage: the next round tries again
                logger.debug("wake-up hint not written: %s", exc)
                continue
            self._written = entries
