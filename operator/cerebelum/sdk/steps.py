"""Steps of the DSL: ``@step`` functions and declarative steps, composed with ``>>``.

A ``StepDef`` is what ``@step`` returns. It stays awaitable like the function it wraps, so a
step can be unit-tested by calling it, and it knows how it waits (sleep, approval, poll,
retry), which the renderer turns into the manifest. Mistakes a user can make here are raised
when the module is imported, naming the step, not later in the cluster.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, overload

from cerebelum.api.spec import STEP_NAME_PATTERN
from cerebelum.sdk.registry import StepRegistry
from cerebelum.sdk.results import WorkflowMarker, envelope

#: Functions a worker may run, by "module:qualname": filled by @step at import time.
FUNCTIONS: dict[str, StepDef] = {}

_OPTIONS = "__cerebelum_options__"


class DefinitionError(ValueError):
    """A workflow or step is defined wrongly; raised at import time, naming the step."""


class StepDefinitionError(DefinitionError):
    """A step is defined wrongly (Cerebelum's name); ``step_name`` says which."""

    def __init__(self, step_name: str, message: str) -> None:
        self.step_name = step_name
        super().__init__(message)


class WorkflowDefinitionError(DefinitionError):
    """A workflow is defined wrongly (Cerebelum's name): ``errors`` lists what is wrong."""

    def __init__(self, workflow_name: str, errors: list[str]) -> None:
        self.workflow_name = workflow_name
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


def duration(seconds: float) -> str:
    if float(seconds).is_integer():
        whole = int(seconds)
        for unit, size in (("h", 3600), ("m", 60)):
            if whole >= size and whole % size == 0:
                return f"{whole // size}{unit}"
        return f"{whole}s"
    return f"{round(seconds * 1000)}ms"


# Each way of waiting a step can have is one declaration: what its decorator recorded, the
# manifest field it renders (``key``), on which side of the action it is written, and how.


class DependencyError(WorkflowDefinitionError):
    """A step needs the output of a step that does not run before it (Cerebelum's name, with
    its ``step_name``, ``dependency`` and ``reason``). Raised when the workflow is defined:
    ``except WorkflowDefinitionError`` catches it too."""

    def __init__(self, workflow_name: str, step_name: str, dependency: str, reason: str) -> None:
        self.step_name = step_name
        self.dependency = dependency
        self.reason = reason
        super().__init__(workflow_name, [reason])


class StepExecutionError(Exception):
    """A step failed when the workflow ran (Cerebelum's name): ``step_name``, ``message``,
    ``original_error`` (the exception a Python step raised here, if any) and
    ``execution_id``. ``wf.execute`` raises its subclass ``ExecutionError``."""

    def __init__(
        self,
        step_name: str | None,
        message: str,
        original_error: BaseException | None = None,
        execution_id: str | None = None,
    ) -> None:
        self.step_name = step_name
        self.message = message
        self.original_error = original_error
        self.execution_id = execution_id
        super().__init__(message)


@dataclass(frozen=True)
class Sleep:
    seconds: float | None = None
    until: str | None = None

    key: ClassVar[str] = "sleep"
    before_action: ClassVar[bool] = True

    def render(self, s: StepDef) -> dict[str, Any]:
        if self.seconds is not None:
            return {"duration": duration(self.seconds)}
        return {"until": self.until}


@dataclass(frozen=True)
class Approval:
    type: str = "manual"
    timeout_minutes: float | None = None
    on_timeout: str = "fail"
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    message: str | None = None
    required: int | None = None
    options: tuple[str, ...] = ()
    allow_self_approval: bool = True
    schema: dict[str, Any] | None = None

    key: ClassVar[str] = "approval"
    before_action: ClassVar[bool] = True

    def render(self, s: StepDef) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.timeout_minutes is not None:
            out["timeout"] = duration(self.timeout_minutes * 60)
            out["onTimeout"] = "Approve" if self.on_timeout == "approve" else "Fail"
        approvers = {k: list(v) for k, v in (("users", self.users), ("groups", self.groups)) if v}
        if approvers:
            out["approvers"] = approvers
        if self.message:
            out["message"] = self.message
        if self.required is not None:
            out["required"] = self.required
        if self.options:
            out["options"] = list(self.options)
        if not self.allow_self_approval:
            out["allowSelfApproval"] = False
        if self.schema is not None:
            out["schema"] = self.schema
        return out


@dataclass(frozen=True)
class Poll:
    condition: str | Callable[[Any], Any]
    interval: float
    max_attempts: int | None = None
    timeout: float | None = None
    backoff: float | None = None
    max_interval: float | None = None

    key: ClassVar[str] = "poll"
    before_action: ClassVar[bool] = False

    def render(self, s: StepDef) -> dict[str, Any]:
        if s.kind is None:
            raise DefinitionError(f"step {s.name}: @poll needs an action to repeat")
        until = "checks.poll" if callable(self.condition) else str(self.condition)
        out: dict[str, Any] = {"until": until, "interval": duration(self.interval)}
        if self.max_attempts is not None:
            out["maxAttempts"] = self.max_attempts
        if self.timeout is not None:
            out["timeout"] = duration(self.timeout)
        if self.backoff is not None:
            out["backoffFactor"] = self.backoff
        if self.max_interval is not None:
            out["maxInterval"] = duration(self.max_interval)
        return out


@dataclass(frozen=True)
class Retry:
    """``@retry(...)`` on a step, or the action of a ``wf.diverge`` error pattern.

    ``max_attempts`` counts every attempt, the first included (Cerebelum's meaning); the
    manifest's ``retry.limit`` counts retries, so it is ``max_attempts - 1``.
    """

    max_attempts: int = 3
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float | None = None
    jitter: float = 0.0
    on: tuple[str, ...] = ()

    def __call__(self, target: Any) -> Any:
        return _attach(target, "retry", self)

    key: ClassVar[str] = "retry"
    before_action: ClassVar[bool] = False

    def render(self, s: StepDef) -> dict[str, Any]:
        backoff: dict[str, Any] = {"delay": duration(self.delay), "factor": self.backoff}
        if self.max_delay is not None:
            backoff["maxDelay"] = duration(self.max_delay)
        if self.jitter:
            backoff["jitter"] = self.jitter
        out: dict[str, Any] = {"limit": self.max_attempts - 1, "backoff": backoff}
        if (
            self.on
        ):  # unset: every error the action calls retryable (any exception of a Python step)
            out["retryOn"] = list(self.on)
        return out

    def __await__(self) -> Any:
        raise DefinitionError(
            "await retry(...) needs the function to call first: await retry(fn, *args, "
            "max_attempts=..., delay=ms); retry(max_attempts=...) alone is the @retry decorator"
        )


@dataclass(frozen=True)
class Callback:
    """``@callback(...)``: after its action, the step waits for an outside system to call
    back (the action's parameters may use ``${{ callback.url }}``); the payload is its
    output."""

    timeout: float | None = None
    heartbeat_timeout: float | None = None
    schema: dict[str, Any] | None = None
    timeout_goto: str | None = None

    key: ClassVar[str] = "callback"
    before_action: ClassVar[bool] = False

    def render(self, s: StepDef) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.timeout is not None:
            out["timeout"] = duration(self.timeout)
        if self.heartbeat_timeout is not None:
            out["heartbeatTimeout"] = duration(self.heartbeat_timeout)
        if self.schema is not None:
            out["schema"] = self.schema
        if self.timeout_goto is not None:
            out["onTimeout"], out["timeoutGoto"] = "Goto", self.timeout_goto
        return out


#: How a step can wait, as its decorators declare it.
WaitDecl = Sleep | Approval | Poll | Retry | Callback


def _attach(target: Any, key: str, value: Any, check: Callable[[Any], Any] | None = None) -> Any:
    """Record a decorator's option on a step, or on a function before @step sees it.

    A decorator above ``@step`` makes a new StepDef; it replaces the registered one, so a
    worker runs the step with the option (and its Python ``check``) too.
    """
    if isinstance(target, StepDef):
        if getattr(target, key) is not None:
            raise DefinitionError(f"step {target.name}: @{key} is given twice")
        checks = {**target.checks, key: check} if check is not None else target.checks
        revised = replace(target, **{key: value}, checks=checks)
        if revised.fn is not None:
            FUNCTIONS[revised.function] = revised
            StepRegistry.register(revised)
        return revised
    if callable(target):
        options = getattr(target, _OPTIONS, None)
        if options is None:
            options = {}
            setattr(target, _OPTIONS, options)
        if key in options:
            raise DefinitionError(f"step {target.__name__}: @{key} is given twice")
        options[key] = value
        return target
    raise DefinitionError(f"@{key} decorates a step or an async function, not {target!r}")


@dataclass(frozen=True, eq=False)
class StepDef:
    """One step: a Python function run by a worker, or a declarative action."""

    name: str
    #: "python", or the action kind of a declarative step (http, tcp, ...), or None
    #: for a step that only sleeps or waits for approval.
    kind: str | None
    fn: Callable[..., Any] | None = None
    #: Names of the function's parameters after the context (inputs, earlier steps).
    parameters: tuple[str, ...] = ()
    #: The declarative action's fields, as they appear in the manifest.
    action: dict[str, Any] | None = None
    queue: str | None = None
    timeout: float | None = None
    sleep: Sleep | None = None
    approval: Approval | None = None
    poll: Poll | None = None
    retry: Retry | None = None
    callback: Callback | None = None
    #: Python conditions the worker evaluates on the output, by name (poll, branch...).
    checks: dict[str, Callable[[Any], Any]] = field(default_factory=dict)

    def waits(self) -> tuple[WaitDecl | None, ...]:
        """How the step waits, as its decorators declared it (None where it does not)."""
        return (self.sleep, self.approval, self.poll, self.retry, self.callback)

    @property
    def function(self) -> str:
        assert self.fn is not None
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    @property
    def dependencies(self) -> list[str]:
        """Steps whose outputs this one receives (Cerebelum's name): parameters but inputs."""
        return [p for p in self.parameters if p != "inputs"]

    @property
    def has_context(self) -> bool:
        return self.fn is not None

    @property
    def has_inputs(self) -> bool:
        return "inputs" in self.parameters

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the step directly, as Cerebelum does: the result comes back in its envelope,
        ``{"ok": value}`` or ``{"error": message}`` (an exception becomes the latter); the
        waits of ``sleep``/``wait_for_approval`` propagate as their markers."""
        if self.fn is None:
            raise TypeError(f"step {self.name} is declarative: it has no function to call")
        try:
            value = await self.fn(*args, **kwargs)
        except WorkflowMarker:
            raise
        except Exception as exc:
            return {"error": str(exc)}
        return envelope(value)

    def __rshift__(self, other: Any) -> Timeline:
        return Timeline([[self]]).__rshift__(other)

    def __rrshift__(self, other: Any) -> Timeline:
        return Timeline([as_group(other)]) >> self

    def __repr__(self) -> str:
        return f"<step {self.name}>"


def reference(s: StepDef) -> str:
    """How the manifest names a step's function: ``module:qualname``. A function defined
    inside another (which only the local runner can call) gets a placeholder for
    ``<locals>`` so the local spec stays valid."""
    return s.function.replace("<locals>", "_locals_")


class ParallelStepGroup:
    """Steps that run at once: the ``[b, c]`` in ``a >> [b, c] >> d`` (Cerebelum's name)."""

    def __init__(self, steps: Sequence[StepDef]) -> None:
        self.steps = list(steps)

    def __repr__(self) -> str:
        return f"ParallelStepGroup({[s.name for s in self.steps]})"


class Timeline:
    """Groups of steps in order: ``a >> [b, c] >> d`` is [[a], [b, c], [d]].

    Cerebelum calls it ``StepComposition``: ``items`` holds its steps and parallel groups,
    ``steps`` every step in order.
    """

    def __init__(self, groups: list[list[StepDef]]) -> None:
        self.groups = groups

    def __rshift__(self, other: Any) -> Timeline:
        if isinstance(other, Timeline):
            return Timeline(self.groups + other.groups)
        return Timeline([*self.groups, as_group(other)])

    def __rrshift__(self, other: Any) -> Timeline:
        return Timeline([as_group(other), *self.groups])

    @property
    def steps(self) -> list[StepDef]:
        return [s for group in self.groups for s in group]

    @property
    def items(self) -> list[StepDef | ParallelStepGroup]:
        return [g[0] if len(g) == 1 else ParallelStepGroup(g) for g in self.groups]

    def __repr__(self) -> str:
        return " >> ".join(
            s.name if isinstance(s, StepDef) else repr([x.name for x in s.steps])
            for s in self.items
        )


StepComposition = Timeline


def as_group(item: Any) -> list[StepDef]:
    if isinstance(item, StepDef):
        return [item]
    if isinstance(item, ParallelStepGroup):
        return list(item.steps)
    if isinstance(item, (list, tuple)) and item and all(isinstance(s, StepDef) for s in item):
        return list(item)
    raise DefinitionError(
        f"a timeline is made of steps and [lists, of, steps] joined with >>, not {item!r}"
    )


def _check_name(name: str) -> str:
    if not re.fullmatch(STEP_NAME_PATTERN, name) or len(name) > 63:
        raise DefinitionError(
            f"step name {name!r} must be identifier-like (letters, digits, _) and at most 63 long"
        )
    return name


def _from_function(
    fn: Callable[..., Any], *, name: str | None, queue: str | None, timeout: float | None
) -> StepDef:
    label = str(name or getattr(fn, "__name__", repr(fn)))
    if not inspect.iscoroutinefunction(fn):
        raise StepDefinitionError(
            label,
            f"step {label} must be an async function (async def {label}(context, ...)): "
            "steps are coroutines, as in Cerebelum",
        )
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].name != "context":
        raise StepDefinitionError(label, f"step {label}: the first parameter must be `context`")
    for p in params[1:]:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise StepDefinitionError(
                label,
                f"step {label}: parameter {p.name!r} must be a plain named parameter "
                "(it receives the output of the step of that name, or the workflow inputs)",
            )
    options = getattr(fn, _OPTIONS, {})
    checks: dict[str, Callable[[Any], Any]] = {}
    poll: Poll | None = options.get("poll")
    if poll is not None and callable(poll.condition):
        checks["poll"] = poll.condition
    stepdef = StepDef(
        name=_check_name(label),
        kind="python",
        fn=fn,
        parameters=tuple(p.name for p in params[1:]),
        queue=queue,
        timeout=timeout,
        sleep=options.get("sleep"),
        approval=options.get("approval"),
        poll=poll,
        retry=options.get("retry"),
        callback=options.get("callback"),
        checks=checks,
    )
    FUNCTIONS[stepdef.function] = stepdef
    StepRegistry.register(stepdef)
    return stepdef


@overload
def step(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    queue: str | None = None,
    timeout: float | None = None,
) -> StepDef: ...
@overload
def step(
    fn: None = None,
    *,
    name: str | None = None,
    queue: str | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], StepDef]: ...
def step(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    queue: str | None = None,
    timeout: float | None = None,
) -> Any:
    """Make an async function a step: ``@step`` or ``@step(queue="gpu", timeout=300)``.

    Parameters after ``context`` receive the outputs of the steps they are named after;
    ``inputs`` receives the workflow inputs. ``timeout`` (seconds) limits each attempt.
    """
    if fn is not None:
        return _from_function(fn, name=name, queue=queue, timeout=timeout)
    return lambda f: _from_function(f, name=name, queue=queue, timeout=timeout)


def sleep_decorator(
    seconds: float | None = None, *, until: str | None = None
) -> Callable[[Any], Any]:
    """Wait before the step runs, without holding a worker: ``@sleep(seconds=60)``."""
    if (seconds is None) == (until is None):
        raise DefinitionError("@sleep needs exactly one of seconds= or until=")
    if seconds is not None and seconds <= 0:
        raise DefinitionError(f"@sleep(seconds={seconds}) must be positive")
    return lambda target: _attach(target, "sleep", Sleep(seconds=seconds, until=until))


def approval(
    type: str = "manual",
    timeout_minutes: float | None = None,
    *,
    on_timeout: str = "fail",
    users: Sequence[str] = (),
    groups: Sequence[str] = (),
    message: str | None = None,
    required: int | None = None,
    options: Sequence[str] = (),
    allow_self_approval: bool = True,
    schema: dict[str, Any] | None = None,
) -> Callable[[Any], Any]:
    """Wait for a human before the step runs: ``@approval(type="manual", timeout_minutes=60)``.

    ``required=2``: two distinct approvers; ``options=["canary", "full"]``: the approver
    picks one (``output.choice``); ``allow_self_approval=False``: not the creator;
    ``schema``: a JSON Schema for the approval data.

    Approve with ``cerebelum approve WORKFLOW STEP`` (or ``kubectl annotate``); the decision
    and its data reach the step as ``context.approval``. Reject, or a timeout with
    ``on_timeout="fail"``, fails the workflow; ``on_timeout="approve"`` carries on.
    """
    if type != "manual":
        raise DefinitionError(f'@approval(type={type!r}): only type="manual" exists')
    if on_timeout not in ("fail", "approve"):
        raise DefinitionError(f'@approval(on_timeout={on_timeout!r}) must be "fail" or "approve"')
    gate = Approval(
        type=type,
        timeout_minutes=timeout_minutes,
        on_timeout=on_timeout,
        users=tuple(users),
        groups=tuple(groups),
        message=message,
        required=required,
        options=tuple(options),
        allow_self_approval=allow_self_approval,
        schema=schema,
    )
    return lambda target: _attach(target, "approval", gate)


def callback(
    timeout: float | None = None,
    *,
    heartbeat_timeout: float | None = None,
    schema: dict[str, Any] | None = None,
    timeout_goto: str | None = None,
) -> Callable[[Any], Any]:
    """After the step's action, wait for a callback: ``@callback(timeout=1800)``.

    ``timeout`` and ``heartbeat_timeout`` are seconds; ``schema`` is a JSON Schema the
    payload must match; ``timeout_goto`` names a step to go to on timeout (else it fails).
    """
    for label, value in (("timeout", timeout), ("heartbeat_timeout", heartbeat_timeout)):
        if value is not None and value <= 0:
            raise DefinitionError(f"@callback({label}={value}) must be positive")
    wait = Callback(timeout, heartbeat_timeout, schema, timeout_goto)
    return lambda target: _attach(target, "callback", wait)


def poll_decorator(
    condition: str | Callable[[Any], Any],
    interval: float,
    max_attempts: int | None = None,
    timeout: float | None = None,
    *,
    backoff: float | None = None,
    max_interval: float | None = None,
) -> Callable[[Any], Any]:
    """Re-run the step every ``interval`` seconds until ``condition`` holds on its output.

    ``condition`` is a Python callable (evaluated by the worker) or a CEL string on ``output``
    (evaluated by the operator; the only choice for declarative steps). Between attempts the
    step is a deadline in the Workflow's status: no worker is held.
    """
    if max_attempts is None and timeout is None:
        raise DefinitionError("@poll needs max_attempts= or timeout= (or both)")
    if interval <= 0:
        raise DefinitionError(f"@poll(interval={interval}) must be positive")
    spec = Poll(condition, interval, max_attempts, timeout, backoff, max_interval)

    def decorate(target: Any) -> Any:
        if isinstance(target, StepDef) and callable(condition):
            if target.kind != "python":
                raise DefinitionError(
                    f"step {target.name}: a Python poll condition needs a Python step; "
                    "write it in CEL for a declarative step, e.g. \"output.status == 'active'\""
                )
            return _attach(target, "poll", spec, check=condition)
        return _attach(target, "poll", spec)

    return decorate


def retry_decorator(
    max_attempts: int = 3,
    delay: float = 1.0,
    backoff: float = 2.0,
    *,
    max_delay: float | None = None,
    jitter: float = 0.0,
    on: Sequence[type[BaseException] | str] = (),
) -> Retry:
    """Retry a failing step: ``@retry(max_attempts=5, delay=2, backoff=2)``.

    ``max_attempts`` counts the first attempt too. ``on`` limits retries to these exception
    types (or error class names); by default every exception is retried.
    """
    if max_attempts < 1:
        raise DefinitionError(f"@retry(max_attempts={max_attempts}) must be at least 1")
    names = tuple(e if isinstance(e, str) else e.__name__ for e in on)
    return Retry(max_attempts, delay, backoff, max_delay, jitter, names)
