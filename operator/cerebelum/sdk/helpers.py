"""``sleep``, ``poll`` and ``retry``: Cerebelum's awaitable in-step helpers and our decorators,
under the same names, told apart by how they are called.

Cerebelum users write ``await sleep(30_000)`` (milliseconds) inside a step; our roadmap
decorators are ``@sleep(seconds=60)`` above one. Both must work unchanged, so each name
returns an object that knows which one it is from its arguments, and refuses, naming the
fix, when used the other way (e.g. ``@sleep(60)``: milliseconds or seconds?).

Units follow each origin: the helpers take milliseconds (or ``timedelta``), as Cerebelum's
do; the decorators take seconds, as before.

The waits between the helpers' attempts (``poll``, ``retry``) run on ``CLOCK`` when the local
runner sets one (virtual time: a week of polling tests in milliseconds), else for real.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import inspect
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol, overload

from cerebelum.sdk.results import ApprovalMarker, SleepMarker
from cerebelum.sdk.steps import (
    DefinitionError,
    Retry,
    poll_decorator,
    retry_decorator,
    sleep_decorator,
)


class Clock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


#: The local runner's virtual clock, while it runs a step; None: real time.
CLOCK: contextvars.ContextVar[Clock | None] = contextvars.ContextVar(
    "cerebelum_clock", default=None
)


async def _pause(seconds: float) -> None:
    clock = CLOCK.get()
    await (clock.sleep(seconds) if clock is not None else asyncio.sleep(seconds))


def _monotonic() -> float:
    clock = CLOCK.get()
    return clock.monotonic() if clock is not None else time.monotonic()


def _ms(value: float | datetime.timedelta, what: str) -> float:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds() * 1000
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be milliseconds (a number) or a timedelta, not {value!r}")
    return float(value)


# -- sleep ------------------------------------------------------------------------------


class SleepRequest:
    """``sleep(duration, data=...)``: awaited inside a step, the step ends with ``data`` as
    its output and the workflow waits ``duration`` before the next step."""

    def __init__(self, duration: float | datetime.timedelta, data: Any) -> None:
        self.duration_ms = int(_ms(duration, "sleep(duration)"))
        if self.duration_ms < 0:
            raise ValueError(f"sleep({duration!r}): the duration is negative")
        self.data = data

    def __await__(self) -> Generator[Any, None, None]:
        raise SleepMarker(self.duration_ms, self.data)
        yield  # pragma: no cover - makes this a generator, as __await__ must be

    def __call__(self, target: Any) -> Any:
        raise DefinitionError(
            f"@sleep({self.duration_ms}) is ambiguous: a positional duration is Cerebelum's "
            f"in-step helper (`await sleep(ms)`); to wait before a step write "
            f"@sleep(seconds={self.duration_ms / 1000:g})"
        )


# Typed for a user's type checker: a keyword form decorates a step, a positional one is
# awaited (or refused as a decorator, with the message of SleepRequest.__call__).
@overload
def sleep(*, seconds: float) -> Callable[[Any], Any]: ...
@overload
def sleep(*, until: str) -> Callable[[Any], Any]: ...
@overload
def sleep(duration: float | datetime.timedelta, data: Any = None) -> SleepRequest: ...
def sleep(
    duration: float | datetime.timedelta | None = None,
    data: Any = None,
    *,
    seconds: float | None = None,
    until: str | None = None,
) -> Any:
    """``await sleep(30_000)`` / ``await sleep(timedelta(hours=1), data={...})`` inside a step
    (Cerebelum's helper), or ``@sleep(seconds=60)`` / ``@sleep(until="${{ ... }}")`` above
    one (wait before it runs)."""
    if seconds is not None or until is not None:
        if duration is not None or data is not None:
            raise DefinitionError(
                "sleep(): seconds=/until= make the @sleep decorator, a positional duration "
                "(milliseconds) the awaitable helper; give one or the other"
            )
        return sleep_decorator(seconds, until=until)
    if duration is None:
        raise DefinitionError(
            "sleep() needs a duration: `await sleep(30_000)` (ms, or a timedelta) in a step, "
            "or @sleep(seconds=30) above it"
        )
    return SleepRequest(duration, data)


async def wait_for_approval(
    approval_type: str = "manual", data: Any = None, timeout_ms: int | None = None
) -> None:
    """End the step with ``data`` as its output; the workflow waits for a human decision
    (``cerebelum approve``/``kubectl annotate``) before the next step. A rejection, or no
    decision within ``timeout_ms``, fails the workflow."""
    raise ApprovalMarker(approval_type=approval_type, data=data, timeout_ms=timeout_ms)


# -- poll -------------------------------------------------------------------------------

_HELPER_ONLY = ("success_condition", "on_attempt")
_DECORATOR_ONLY = ("backoff", "max_interval")


class PollRequest:
    """What ``poll(...)`` returns: awaited, Cerebelum's helper; applied to a step, ours."""

    def __init__(self, target: Any, options: dict[str, Any]) -> None:
        self.target = target
        self.options = options

    def __call__(self, step: Any) -> Any:
        helper_only = [k for k in _HELPER_ONLY if self.options.get(k) is not None]
        if helper_only:
            raise DefinitionError(
                f"@poll(..., {helper_only[0]}=...): {', '.join(helper_only)} belong to the "
                "awaitable helper (`await poll(check_fn, ...)` inside a step); the decorator "
                "takes condition=, interval= (seconds), max_attempts=, timeout="
            )
        if self.options.get("interval") is None:
            raise DefinitionError("@poll needs interval= (seconds between attempts)")
        decorate = poll_decorator(
            self.target,
            self.options["interval"],
            self.options.get("max_attempts"),
            self.options.get("timeout"),
            backoff=self.options.get("backoff"),
            max_interval=self.options.get("max_interval"),
        )
        return decorate(step)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._run().__await__()

    async def _run(self) -> Any:
        wrong = [k for k in _DECORATOR_ONLY if self.options.get(k) is not None]
        if wrong or not callable(self.target):
            raise DefinitionError(
                "await poll(check_fn, interval=ms, max_attempts=, timeout=, success_condition=, "
                "on_attempt=) takes a function to call"
                + (f"; {', '.join(wrong)} belong to the @poll decorator" if wrong else "")
            )
        options = self.options
        interval = _ms(5000 if options.get("interval") is None else options["interval"], "interval")
        attempts = 30 if options.get("max_attempts") is None else int(options["max_attempts"])
        limit = options.get("timeout")
        limit_ms = None if limit is None else _ms(limit, "timeout")
        succeeded: Callable[[Any], Any] = options.get("success_condition") or bool
        on_attempt = options.get("on_attempt")
        started = _monotonic()
        for attempt in range(1, attempts + 1):
            if limit_ms is not None and (_monotonic() - started) * 1000 >= limit_ms:
                raise TimeoutError(f"polling timed out after {limit_ms:.0f}ms")
            result = self.target()
            if inspect.isawaitable(result):
                result = await result
            if on_attempt is not None:
                on_attempt(attempt, result)
            if succeeded(result):
                return result
            if attempt < attempts:
                await _pause(interval / 1000)
        raise TimeoutError(f"polling failed after {attempts} attempts (interval: {interval:g}ms)")


def poll(
    target: Any = None,
    interval: float | datetime.timedelta | None = None,
    max_attempts: int | None = None,
    timeout: float | datetime.timedelta | None = None,
    *,
    condition: Any = None,
    check_fn: Callable[[], Any] | None = None,
    success_condition: Callable[[Any], Any] | None = None,
    on_attempt: Callable[[int, Any], Any] | None = None,
    backoff: float | None = None,
    max_interval: float | None = None,
) -> PollRequest:
    """``await poll(check_fn, interval=5000, max_attempts=30, success_condition=...)`` inside a
    step (Cerebelum's helper; milliseconds), or ``@poll(condition="output.ready",
    interval=5, max_attempts=30)`` above one (seconds; durable between attempts)."""
    given = [x for x in (target, condition, check_fn) if x is not None]
    if len(given) != 1:
        raise DefinitionError(
            "poll() takes one of: a check function (await poll(check_fn, ...)) or a "
            "condition (@poll(condition=..., interval=...))"
        )
    return PollRequest(
        given[0],
        {
            "interval": interval,
            "max_attempts": max_attempts,
            "timeout": timeout,
            "success_condition": success_condition,
            "on_attempt": on_attempt,
            "backoff": backoff,
            "max_interval": max_interval,
        },
    )


# -- retry ------------------------------------------------------------------------------


async def _retry_call(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    max_attempts: int,
    delay_ms: float,
    backoff: float,
    on_error: type[BaseException] | tuple[type[BaseException], ...] | None,
    on_attempt: Callable[[int, BaseException | None], Any] | None,
) -> Any:
    last: BaseException | None = None
    wait = delay_ms
    for attempt in range(1, max_attempts + 1):
        if on_attempt is not None:
            on_attempt(attempt, last)
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result
        except Exception as exc:
            if on_error is not None and not isinstance(exc, on_error):
                raise
            if attempt >= max_attempts:
                raise
            last = exc
            await _pause(wait / 1000)
            wait *= backoff
    raise AssertionError("unreachable")  # pragma: no cover


# Typed for a user's type checker: with a function first, the awaitable helper; otherwise
# the decorator (keywords, or up to three numbers positionally).
@overload
def retry(
    fn: Callable[..., Any],
    *args: Any,
    max_attempts: int = 3,
    delay: float | None = None,
    backoff: float | None = None,
    on_error: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    on_attempt: Callable[[int, BaseException | None], Any] | None = None,
    **kwargs: Any,
) -> Coroutine[Any, Any, Any]: ...
@overload
def retry(
    *,
    max_attempts: int = 3,
    delay: float | None = None,
    backoff: float | None = None,
    max_delay: float | None = None,
    jitter: float = 0.0,
    on: Any = (),
) -> Callable[[Any], Any]: ...
@overload
def retry(
    max_attempts: int,
    delay: float | None = None,
    backoff: float | None = None,
    /,
    *,
    max_delay: float | None = None,
    jitter: float = 0.0,
    on: Any = (),
) -> Callable[[Any], Any]: ...
def retry(
    fn: Any = None,
    *args: Any,
    max_attempts: int = 3,
    delay: float | None = None,
    backoff: float | None = None,
    max_delay: float | None = None,
    jitter: float = 0.0,
    on: Any = (),
    on_error: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    on_attempt: Callable[[int, BaseException | None], Any] | None = None,
    **kwargs: Any,
) -> Any:
    """``await retry(fn, *args, max_attempts=5, delay=2000, backoff=2.0, on_error=E)`` inside
    a step (Cerebelum's helper; milliseconds, backoff 1.0 by default), or
    ``@retry(max_attempts=5, delay=2, backoff=2)`` above one (seconds, backoff 2.0 by
    default; durable, each retry a new attempt), also a ``wf.diverge`` action."""
    if fn is not None and callable(fn) and not isinstance(fn, Retry):
        if on or max_delay is not None or jitter:
            raise DefinitionError("retry(fn, ...): on=, max_delay=, jitter= belong to @retry")
        return _retry_call(
            fn,
            args,
            kwargs,
            max_attempts=max_attempts,
            delay_ms=_ms(1000 if delay is None else delay, "delay"),
            backoff=1.0 if backoff is None else backoff,
            on_error=on_error,
            on_attempt=on_attempt,
        )
    if kwargs or on_error is not None or on_attempt is not None:
        extra = [
            *kwargs,
            *(k for k, v in (("on_error", on_error), ("on_attempt", on_attempt)) if v),
        ]
        raise DefinitionError(
            f"retry(..., {extra[0]}=...): without a function first this is the @retry decorator, "
            "which takes max_attempts, delay, backoff, max_delay, jitter, on; to retry a call "
            "inside a step write `await retry(fn, ...)`"
        )
    positional = [fn, *args] if fn is not None else list(args)
    if len(positional) > 3:
        raise DefinitionError("@retry takes at most (max_attempts, delay, backoff) positionally")
    names = ("max_attempts", "delay", "backoff")
    values: dict[str, Any] = {"max_attempts": max_attempts, "delay": delay, "backoff": backoff}
    values.update(zip(names, positional, strict=False))
    return retry_decorator(
        values["max_attempts"],
        1.0 if values["delay"] is None else values["delay"],
        2.0 if values["backoff"] is None else values["backoff"],
        max_delay=max_delay,
        jitter=jitter,
        on=on,
    )


class ProgressReporter:
    """``ProgressReporter(context).update(50, "half way")``: Cerebelum's progress lines. Here
    they go to the step's output stream (the worker's log, or the terminal locally)."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.last_progress = 0

    def update(self, percent: int, message: str = "") -> None:
        self.last_progress = percent
        filled = max(0, min(20, int(20 * percent / 100)))
        bar = "█" * filled + "░" * (20 - filled)
        print(f"  [{self.context.step_name}] {bar} {percent}% - {message}", flush=True)
