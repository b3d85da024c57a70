"""Call one step function, in a daemon thread with an event loop of its own.

Step code is user code: it may call blocking clients (pydo, paramiko) or even ``time.sleep``
inside its ``async def``. On its own thread and loop it holds only that thread; the worker's
loop keeps renewing leases and serving other steps. Daemon threads also let a worker that
is told to stop exit even if a step never returns (its lease then runs out and another
worker takes the step over).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from cerebelum.sdk.context import Context
from cerebelum.sdk.running import StepOutcome, pause_request, run_step
from cerebelum.sdk.steps import StepDef

__all__ = ["StepOutcome", "call_step", "in_daemon_thread", "pause_request", "run_step"]

T = TypeVar("T")


def call_step(
    stepdef: StepDef,
    context: Context,
    arguments: dict[str, Any],
    checks: list[str],
    timeout: float | None,
) -> StepOutcome:
    """Run the step to its end on this thread (with a loop of its own)."""
    return asyncio.run(run_step(stepdef, context, arguments, checks, timeout))


async def in_daemon_thread(function: Callable[[], T]) -> T:
    """Await ``function()`` run on a new daemon thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def target() -> None:
        setter: Callable[[Any], None]
        value: Any
        try:
            setter, value = future.set_result, function()
        except BaseException as exc:  # delivered to the awaiting side, not lost in a thread
            setter, value = future.set_exception, exc
        with contextlib.suppress(RuntimeError):  # the worker's loop is gone: nobody waits
            loop.call_soon_threadsafe(deliver, setter, value)

    threading.Thread(target=target, name="cerebelum-step", daemon=True).start()
    return await future
