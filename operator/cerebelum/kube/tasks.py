"""The actions the operator is running, per workflow, and the results waiting for it.

An attempt runs as a task. When it ends, its result is kept here for the workflow's next
reconciliation and the workflow is queued at once (ahead of watch events). A result fed to
a reconciliation whose status write then failed is put back, so it is not lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from cerebelum.engine import ActionCall, ActionResult
from cerebelum.kube.cache import Key

#: Runs one attempt: (the workflow as cached, the call) -> its result.
Execute = Callable[[dict[str, Any], ActionCall], Coroutine[Any, Any, ActionResult]]


class ActionTasks:
    def __init__(self, execute: Execute, wake: Callable[[Key], None]) -> None:
        self._execute = execute
        self._wake = wake
        self._running: dict[Key, dict[str, tuple[ActionCall, asyncio.Task[ActionResult]]]] = {}
        self._results: dict[Key, list[ActionResult]] = {}

    def running(self, key: Key) -> frozenset[str]:
        """Steps of this workflow whose attempt is running here."""
        return frozenset(self._running.get(key, {}))

    def take_results(self, key: Key) -> tuple[ActionResult, ...]:
        return tuple(self._results.pop(key, []))

    def restore(self, key: Key, results: Iterable[ActionResult]) -> None:
        """Give back results a reconciliation could not record, ahead of newer ones."""
        self._results.setdefault(key, [])[:0] = list(results)

    def start(self, key: Key, body: dict[str, Any], call: ActionCall) -> None:
        steps = self._running.setdefault(key, {})
        if call.step in steps:
            return
        task = asyncio.create_task(
            self._execute(body, call), name=f"action-{key[0]}-{key[1]}-{call.step}"
        )
        steps[call.step] = (call, task)

        def finished(done: asyncio.Task[ActionResult]) -> None:
            if steps.get(call.step, (None, None))[1] is done:
                del steps[call.step]
            if done.cancelled():
                return
            self._results.setdefault(key, []).append(done.result())
            self._wake(key)

        task.add_done_callback(finished)

    def cancel(self, key: Key, steps: Iterable[str]) -> None:
        running = self._running.get(key, {})
        for step in steps:
            entry = running.get(step)
            if entry is not None:
                entry[1].cancel()

    def forget(self, key: Key) -> None:
        self._results.pop(key, None)
        for _, task in self._running.pop(key, {}).values():
            task.cancel()

    def cancel_all(self) -> list[asyncio.Task[ActionResult]]:
        """Stop every attempt (leadership lost, or shutting down); the tasks, to await."""
        tasks = [task for steps in self._running.values() for _, task in steps.values()]
        for task in tasks:
            task.cancel()
        self._running.clear()
        self._results.clear()
        return tasks
