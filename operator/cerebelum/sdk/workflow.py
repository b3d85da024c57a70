"""``@workflow``: a timeline of steps plus routing, checked and rendered to a manifest.

The function decorated with ``@workflow`` runs once, at import time, against a builder
(``wf``); everything it declares is validated there, so a cycle or a parameter naming no
step is an import error naming the step, not a failed workflow in the cluster.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, overload

from pydantic import ValidationError

from cerebelum.api import API_VERSION, KIND
from cerebelum.api.base import describe_errors
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.steprun import DEFAULT_QUEUE
from cerebelum.api.workflowtemplate import TEMPLATE_KIND, WorkflowTemplateSpec
from cerebelum.sdk.local import ExecutionResult, execute, execute_sync, run
from cerebelum.sdk.registry import WorkflowRegistry
from cerebelum.sdk.steps import (
    FUNCTIONS,
    DefinitionError,
    DependencyError,
    Retry,
    StepDef,
    Timeline,
    WaitDecl,
    WorkflowDefinitionError,
    as_group,
    duration,
    reference,
)


@dataclass(frozen=True)
class Goto:
    """``back_to(step)`` / ``skip_to(step)``: where a diverge pattern sends the workflow."""

    target: StepDef
    direction: str  # back_to | skip_to


def back_to(target: StepDef) -> Goto:
    """Go back to an earlier step (or this one): a loop, capped by the visit limit."""
    return Goto(target, "back_to")


def skip_to(target: StepDef) -> Goto:
    """Skip ahead to a later step; the steps in between are Skipped."""
    return Goto(target, "skip_to")


@dataclass(frozen=True)
class ValidationReport:
    """What ``wf.validate()`` returns, as in Cerebelum."""

    is_valid: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cel:
    """A diverge pattern or branch condition written in CEL on ``output`` and ``error``."""

    expression: str


def cel(expression: str) -> Cel:
    return Cel(expression)


_SUCCESS = "error == null"
_FAILURE = "error != null"
_ACTIONS = ("retry", "failed", "fail", "continue")


def _error_classes(pattern: str) -> list[str]:
    """Error classes a pattern such as "timeout" names: timeout, Timeout, TimeoutError."""
    title = pattern[:1].upper() + pattern[1:]
    return list(dict.fromkeys([pattern, title, f"{title}Error"]))


def _pattern_condition(pattern: str | Cel) -> tuple[str, bool]:
    """CEL for a diverge pattern, and whether it matches failures only."""
    if isinstance(pattern, Cel):
        return pattern.expression, False
    if pattern in ("ok", "success"):
        return _SUCCESS, False
    if pattern in ("error", "failed", "*"):
        return _FAILURE, True
    classes = ", ".join(f"'{c}'" for c in _error_classes(pattern))
    text = pattern.replace("\\", "\\\\").replace("'", "\\'")
    return (
        f"{_FAILURE} && (error.errorClass in [{classes}] || error.message.contains('{text}'))",
        True,
    )


@dataclass(frozen=True)
class DivergeRule:
    """``wf.diverge(from_step, patterns)`` as given (Cerebelum's name)."""

    from_step: StepDef
    patterns: dict[Any, Any]


@dataclass(frozen=True)
class BranchRule:
    """``wf.branch(after, condition, when_true, when_false)`` as given (Cerebelum's name)."""

    after: StepDef
    condition: Any
    when_true: StepDef | None
    when_false: StepDef | None


class WorkflowBuilder:
    """The ``wf`` a @workflow function receives."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.line: Timeline | None = None
        #: Steps that run once after the timeline ends, however it ends (spec.finally).
        self.final: Timeline | None = None
        self.rules: dict[str, list[dict[str, Any]]] = {}
        self.retries: dict[str, Retry] = {}
        #: Steps reached only through wf.diverge, off the timeline: chains, in order.
        self.handlers: list[list[StepDef]] = []
        #: The rules as given (Cerebelum's introspection), besides what they render to.
        self.diverge_rules: list[DivergeRule] = []
        self.branch_rules: list[BranchRule] = []

    def get_diverge_rules(self) -> list[DivergeRule]:
        return list(self.diverge_rules)

    def get_branch_rules(self) -> list[BranchRule]:
        return list(self.branch_rules)

    def _known(self, stepdef: Any, role: str) -> StepDef:
        if not isinstance(stepdef, StepDef):
            raise DefinitionError(f"workflow {self._name}: {role} must be a step, not {stepdef!r}")
        if self.line is None:
            raise DefinitionError(f"workflow {self._name}: call wf.timeline(...) before {role}")
        if stepdef not in self.line.steps:
            raise DefinitionError(
                f"workflow {self._name}: step {stepdef.name} ({role}) is not in the timeline"
            )
        return stepdef

    def timeline(self, line: Timeline | StepDef | list[StepDef]) -> WorkflowBuilder:
        """The steps in order: ``a >> [b, c] >> d`` (a list inside ``>>`` runs in parallel),
        or a plain list ``[a, b, c]``, which is sequential, as in Cerebelum. Calling it again
        appends to the timeline."""
        if isinstance(line, StepDef):
            line = Timeline([[line]])
        elif isinstance(line, (list, tuple)):
            line = Timeline([as_group(s) for s in line])
        if not isinstance(line, Timeline):
            raise DefinitionError(
                f"workflow {self._name}: wf.timeline takes steps joined with >>, not {line!r}"
            )
        if self.line is not None:
            line = Timeline(self.line.groups + line.groups)
        if not line.groups:
            raise DefinitionError(
                f"workflow {self._name}: empty timeline: give wf.timeline at least one step"
            )
        seen: dict[str, StepDef] = {}
        for s in line.steps:
            if s.name in seen:
                raise DefinitionError(
                    f"workflow {self._name}: step {s.name} appears twice in the timeline, which "
                    f"would be a cycle; loop with wf.diverge(step, {{...: back_to({s.name})}})"
                )
            seen[s.name] = s
        self.line = line
        self._check_parameters()
        return self

    def finally_steps(self, line: Timeline | StepDef | list[StepDef]) -> WorkflowBuilder:
        """Cleanup that runs once after the timeline ends for any reason (success, failure,
        cancel, the deadline), as ``spec.finally``. Same forms as ``timeline``; a step may
        take the output of any timeline step (None if that step did not succeed) or of an
        earlier finally step."""
        if isinstance(line, StepDef):
            line = Timeline([[line]])
        elif isinstance(line, (list, tuple)):
            line = Timeline([as_group(s) for s in line])
        if not isinstance(line, Timeline) or not line.groups:
            raise DefinitionError(
                f"workflow {self._name}: wf.finally_steps takes steps joined with >>, not {line!r}"
            )
        if self.final is not None:
            line = Timeline(self.final.groups + line.groups)
        main = {s.name for s in self.line.steps} if self.line is not None else set()
        seen: set[str] = set()
        for index, group in enumerate(line.groups):
            for s in group:
                if s.name in main or s.name in seen:
                    raise DefinitionError(
                        f"workflow {self._name}: finally step {s.name} is already a step of "
                        "the workflow; a step runs in the timeline or in finally, not both"
                    )
                for param in s.parameters:
                    earlier = {t.name for g in line.groups[:index] for t in g}
                    if param != "inputs" and param not in main | earlier:
                        raise DependencyError(
                            self._name,
                            s.name,
                            param,
                            f"workflow {self._name}: finally step {s.name} has a parameter "
                            f"{param!r} that names no timeline step and no earlier finally step",
                        )
            seen |= {s.name for s in group}
        self.final = line
        return self

    def _order(self) -> dict[str, int]:
        assert self.line is not None
        return {s.name: i for i, group in enumerate(self.line.groups) for s in group}

    def _check_parameters(self) -> None:
        order = self._order()
        for name, index in order.items():
            s = self._by_name(name)
            for param in s.parameters:
                if param == "inputs":
                    continue
                if param not in order:
                    raise DependencyError(
                        self._name,
                        name,
                        param,
                        f"workflow {self._name}: step {name} has a parameter {param!r} that "
                        f"names no step of the workflow (steps: {', '.join(order)}; or `inputs`)",
                    )
                if order[param] >= index:
                    where = "in parallel with" if order[param] == index else "after"
                    raise DependencyError(
                        self._name,
                        name,
                        param,
                        f"workflow {self._name}: step {name} needs the output of {param}, which "
                        f"runs {where} it: a circular dependency (move {param} before {name} in "
                        "the timeline)",
                    )

    def _by_name(self, name: str) -> StepDef:
        assert self.line is not None
        return next(s for s in self.line.steps if s.name == name)

    def _goto(self, source: StepDef, goto: Goto) -> str:
        order = self._order()
        target = self._known(goto.target, f"the target of {goto.direction}")
        if goto.direction == "back_to" and order[target.name] > order[source.name]:
            raise DefinitionError(
                f"workflow {self._name}: step {source.name}: back_to({target.name}) must name "
                f"an earlier step; use skip_to for a later one"
            )
        if goto.direction == "skip_to" and order[target.name] <= order[source.name]:
            raise DefinitionError(
                f"workflow {self._name}: step {source.name}: skip_to({target.name}) must name "
                f"a later step; use back_to for an earlier one"
            )
        return target.name

    def diverge(self, from_step: StepDef, patterns: dict[Any, Any]) -> WorkflowBuilder:
        """Route on the step's result: {pattern: action}, first match wins.

        Patterns: "ok", "error", an error name such as "timeout" (matches the error class
        Timeout/TimeoutError or a message containing it, e.g. a step returning
        ``{"error": "timeout"}``), or cel("..."). Actions: "retry" (or retry(...) with
        limits), "failed", "continue", back_to(step), skip_to(step), or a step or ``a >> b``
        to go to, as in Cerebelum. A target off the timeline is a handler: it runs only when
        routed to, and the workflow ends after it.
        """
        s = self._known(from_step, "wf.diverge")
        if not patterns:
            raise DefinitionError(f"workflow {self._name}: wf.diverge({s.name}, {{}}) is empty")
        self.diverge_rules.append(DivergeRule(s, dict(patterns)))
        rules = self.rules.setdefault(s.name, [])
        for pattern, action in patterns.items():
            if not isinstance(pattern, (str, Cel)):
                raise DefinitionError(
                    f"workflow {self._name}: step {s.name}: diverge pattern {pattern!r} must be "
                    'a string ("ok", "error", "timeout", ...) or cel("...")'
                )
            condition, failure_only = _pattern_condition(pattern)
            if action == "retry" or isinstance(action, Retry):
                self._diverge_retry(s, pattern, failure_only, action)
            elif action in ("failed", "fail"):
                rules.append({"when": condition, "fail": f"step {s.name}: {pattern} (wf.diverge)"})
            elif action == "continue":
                rules.append({"when": condition, "continue": True})
            elif isinstance(action, Goto):
                rules.append({"when": condition, "goto": self._goto(s, action)})
            elif isinstance(action, (StepDef, Timeline)):
                rules.append({"when": condition, "goto": self._route_to(action)})
            else:
                raise DefinitionError(
                    f"workflow {self._name}: step {s.name}: diverge action {action!r} must be "
                    f"one of {', '.join(_ACTIONS)}, retry(...), back_to(step), skip_to(step), "
                    "or a step to go to"
                )
        return self

    def _route_to(self, target: StepDef | Timeline) -> str:
        """The step a diverge goes to; a target off the timeline becomes a handler chain."""
        assert self.line is not None
        chain = target.steps if isinstance(target, Timeline) else [target]
        head = chain[0]
        if head in self.line.steps or any(head in h for h in self.handlers):
            return head.name
        known = {s.name for s in self.line.steps} | {s.name for h in self.handlers for s in h}
        for s in chain:
            if s.name in known:
                raise DefinitionError(
                    f"workflow {self._name}: step {s.name} is already in the workflow; a "
                    "handler chain off the timeline must be made of new steps"
                )
            known.add(s.name)
            for param in s.parameters:
                if param != "inputs" and param not in known:
                    raise DefinitionError(
                        f"workflow {self._name}: handler step {s.name} has a parameter "
                        f"{param!r} that names no step before it"
                    )
        self.handlers.append(list(chain))
        return head.name

    def _diverge_retry(
        self, s: StepDef, pattern: str | Cel, failure_only: bool, action: str | Retry
    ) -> None:
        if not failure_only:
            raise DefinitionError(
                f"workflow {self._name}: step {s.name}: retry needs an error pattern "
                f'("error", "timeout", ...), not {pattern!r}; use @poll to repeat on success'
            )
        if s.retry is not None:
            raise DefinitionError(
                f"workflow {self._name}: step {s.name} has @retry and a diverge retry; keep one"
            )
        base = action if isinstance(action, Retry) else DIVERGE_RETRY
        assert isinstance(pattern, str)
        classes = () if pattern in ("error", "failed", "*") else tuple(_error_classes(pattern))
        previous = self.retries.get(s.name)
        if previous is not None:
            classes = () if not (previous.on and classes) else previous.on + classes
        self.retries[s.name] = replace(base, on=classes)

    def branch(
        self,
        after: StepDef,
        condition: str | Cel | Callable[[Any], Any],
        when_true: StepDef | None = None,
        when_false: StepDef | None = None,
    ) -> None:
        """After ``after`` succeeds, go to ``when_true`` or ``when_false`` (None: carry on).

        ``condition`` is a Python callable on the output (a Python step only: the worker
        evaluates it) or CEL on ``output``.
        """
        s = self._known(after, "wf.branch")
        self.branch_rules.append(BranchRule(s, condition, when_true, when_false))
        if callable(condition) and not isinstance(condition, Cel):
            if s.kind != "python":
                raise DefinitionError(
                    f"workflow {self._name}: step {s.name} is declarative, so its branch "
                    'condition must be CEL, e.g. "output.status == 200"'
                )
            check = "branch" if "branch" not in s.checks else f"branch{len(s.checks) + 1}"
            s.checks[check] = condition
            registered = FUNCTIONS.get(s.function)
            if registered is not None and registered is not s:
                registered.checks[check] = condition
            test = f"checks.{check}"
        else:
            test = condition.expression if isinstance(condition, Cel) else condition
        rules = self.rules.setdefault(s.name, [])
        for target, when in ((when_true, f"{_SUCCESS} && ({test})"), (when_false, _SUCCESS)):
            if target is None:
                rules.append({"when": when, "continue": True})
            elif not isinstance(target, StepDef):
                raise DefinitionError(
                    f"workflow {self._name}: a branch target must be a step, not {target!r}"
                )
            else:  # off the timeline: a handler, as diverge targets are
                rules.append({"when": when, "goto": self._route_to(target)})


#: What a bare "retry" in wf.diverge means: up to 10 attempts, 1s doubling to at most 1m.
DIVERGE_RETRY = Retry(max_attempts=10, delay=1.0, backoff=2.0, max_delay=60.0)


def _input_property(value: Any) -> dict[str, Any]:
    """A schema property for a default input value: its JSON type, and the value."""
    kinds: tuple[tuple[type, str], ...] = (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (dict, "object"),
        (list, "array"),
    )
    prop: dict[str, Any] = {"default": value}
    for kind, name in kinds:
        if isinstance(value, kind):
            prop["type"] = name
            break
    return prop


def _dns_name(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "workflow"


class WorkflowDef:
    """A defined workflow: ``render()`` gives the Workflow manifest."""

    def __init__(
        self,
        fn: Callable[[WorkflowBuilder], Any],
        *,
        name: str | None,
        queue: str | None,
        inputs: dict[str, Any] | None,
        active_deadline: float | None,
        max_step_visits: int | None,
        core_url: str = "localhost:9090",
        register: bool = True,
    ) -> None:
        #: The name as written (Cerebelum's spelling, e.g. ``user_workflow``); the Workflow
        #: object is named ``resource_name``, the DNS-safe form (``user-workflow``).
        self.name = name or fn.__name__
        self.resource_name = _dns_name(self.name)
        self.core_url = core_url
        self.definition_func = fn
        self.queue = queue or DEFAULT_QUEUE
        self.inputs = dict(inputs or {})
        self.active_deadline = active_deadline
        self.max_step_visits = max_step_visits
        if inspect.iscoroutinefunction(fn):
            raise WorkflowDefinitionError(
                self.name,
                [f"workflow {self.name}: the definition must not be async (def, not async def)"],
            )
        self.builder = WorkflowBuilder(self.name)
        try:
            fn(self.builder)
            if self.builder.line is not None:
                self._spec(importable=False)  # every remaining mistake shows now, at import
        except WorkflowDefinitionError:
            raise
        except DefinitionError as exc:
            raise WorkflowDefinitionError(self.name, [str(exc)]) from None
        if register:
            WorkflowRegistry.register(self)

    def _complete(self) -> Timeline:
        """The timeline; a definition that never set one is refused when it is validated,
        rendered or run (as Cerebelum does), not when it is defined."""
        if self.builder.line is None:
            raise WorkflowDefinitionError(
                self.name,
                [f"workflow {self.name}: empty timeline: it never calls wf.timeline(...)"],
            )
        return self.builder.line

    @property
    def steps(self) -> list[StepDef]:
        """Every step: the timeline's, then handlers reached only through wf.diverge."""
        return self._complete().steps + [s for h in self.builder.handlers for s in h]

    @property
    def finally_steps(self) -> list[StepDef]:
        """The steps of ``wf.finally_steps``: they run after all the others."""
        return self.builder.final.steps if self.builder.final is not None else []

    def validate(self) -> ValidationReport:
        """Cerebelum's check: mistakes raise at definition here (a missing timeline now),
        so a defined workflow is valid; the report says so, and warns about steps a worker
        could not import."""
        warnings = [
            f"step {s.name} is defined inside a function: wf.execute() runs it, a worker cannot"
            for s in self.steps
            if s.fn is not None and "<locals>" in s.fn.__qualname__
        ]
        return ValidationReport(is_valid=True, errors=[], warnings=warnings)

    async def execute(
        self, inputs: dict[str, Any] | None = None, **options: Any
    ) -> ExecutionResult:
        """Run the workflow here, without a cluster, on the operator's own engine and a
        virtual clock (see ``cerebelum.sdk.local.run``): ``await wf.execute(...)``, or
        ``asyncio.run(wf.execute(...))``, as in Cerebelum."""
        return await execute(self, inputs or {}, options)

    def execute_sync(self, inputs: dict[str, Any] | None = None, **options: Any) -> ExecutionResult:
        """``execute``, run at once from code that is not async (outside an event loop)."""
        return execute_sync(self, inputs or {}, options)

    def _dependencies(self) -> dict[str, list[str]] | None:
        """dependsOn per step, or None when the timeline is a plain chain (list order).
        A handler chain hangs after the timeline's last step: never a root that would start
        with the workflow."""
        line = self._complete()
        if all(len(group) == 1 for group in line.groups):
            return None
        deps: dict[str, list[str]] = {}
        previous: list[str] = []
        for group in line.groups:
            for s in group:
                deps[s.name] = list(previous)
            previous = [s.name for s in group]
        for chain in self.builder.handlers:
            before = previous
            for s in chain:
                deps[s.name] = list(before)
                before = [s.name]
        return deps

    def _render_step(
        self, s: StepDef, deps: dict[str, list[str]] | None, importable: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"name": s.name}
        if deps is not None:
            out["dependsOn"] = deps[s.name]
        if s.timeout is not None:
            out["timeout"] = duration(s.timeout)
        retry = s.retry or self.builder.retries.get(s.name)
        # A diverge "retry" pattern stands in for a @retry the step does not have.
        waits: list[WaitDecl] = [w for w in s.waits() if w is not None and not isinstance(w, Retry)]
        if retry is not None:
            waits.append(retry)
        for wait in waits:
            if wait.before_action:
                out[wait.key] = wait.render(s)
        if s.kind == "python":
            out["python"] = self._render_python(s, importable)
        elif s.kind is not None:
            out[s.kind] = s.action
        for wait in waits:
            if not wait.before_action:
                out[wait.key] = wait.render(s)
        rules = list(self.builder.rules.get(s.name, []))
        if s.name in self._ends():
            rules.append({"when": _SUCCESS, "end": True})
        if rules:
            out["next"] = rules
        return out

    def _ends(self) -> set[str]:
        """Steps after which the workflow ends: with handlers off the timeline, the last step
        of the timeline and of each handler chain (else the next in the list would run)."""
        handlers = self.builder.handlers
        line = self.builder.line
        if not handlers or line is None:
            return set()
        last = line.groups[-1]
        if len(last) > 1:
            raise DefinitionError(
                f"workflow {self.name}: the timeline ends with parallel steps "
                f"({', '.join(s.name for s in last)}); with handlers off the timeline it must "
                "end with one step: add a final step after them"
            )
        return {last[0].name} | {chain[-1].name for chain in handlers}

    def _render_python(self, s: StepDef, importable: bool) -> dict[str, Any]:
        assert s.fn is not None
        if importable and "<locals>" in s.fn.__qualname__:
            raise DefinitionError(
                f"step {s.name} is defined inside a function ({s.fn.__qualname__}): a worker "
                f"imports steps as module:name, so it could never find this one. Define it at "
                f"the top level of {s.fn.__module__}; wf.execute() runs it locally as it is"
            )
        arguments = {
            p: "${{ inputs }}" if p == "inputs" else "${{ steps." + p + ".output }}"
            for p in s.parameters
        }
        python: dict[str, Any] = {"function": reference(s), "queue": s.queue or self.queue}
        if arguments:
            python["arguments"] = arguments
        if s.checks:
            python["checks"] = sorted(s.checks)
        return python

    def render(
        self,
        inputs: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """The Workflow manifest, checked against the same models as the CRD."""
        spec = self._spec(inputs, importable=True)
        metadata: dict[str, Any] = {"name": _dns_name(name) if name else self.resource_name}
        if namespace:
            metadata["namespace"] = namespace
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}

    def render_template(
        self,
        *,
        name: str | None = None,
        namespace: str | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The WorkflowTemplate manifest: the same steps, and an inputs schema. ``inputs``
        is that schema (JSON Schema: ``{"properties": {...}, "required": [...]}``); without
        it, each of the workflow's default inputs becomes an optional input of its type."""
        spec = self._spec(importable=True)
        defaults = spec.pop("inputs", None) or {}
        if inputs is None:
            inputs = {"properties": {k: _input_property(v) for k, v in defaults.items()}}
        spec["inputs"] = inputs
        try:
            WorkflowTemplateSpec.model_validate(spec)
        except ValidationError as exc:
            problems = describe_errors(exc, "spec.")
            raise DefinitionError(f"workflow {self.name}: {problems}") from None
        metadata: dict[str, Any] = {"name": _dns_name(name) if name else self.resource_name}
        if namespace:
            metadata["namespace"] = namespace
        return {
            "apiVersion": API_VERSION,
            "kind": TEMPLATE_KIND,
            "metadata": metadata,
            "spec": spec,
        }

    def _spec(self, inputs: dict[str, Any] | None = None, *, importable: bool) -> dict[str, Any]:
        """The spec; ``importable`` also requires every Python step to be importable by a
        worker (the local runner does not need that)."""
        deps = self._dependencies()
        spec: dict[str, Any] = {}
        merged = {**self.inputs, **(inputs or {})}
        if merged:
            spec["inputs"] = merged
        if self.active_deadline is not None:
            spec["activeDeadline"] = duration(self.active_deadline)
        if self.max_step_visits is not None:
            spec["maxStepVisits"] = self.max_step_visits
        spec["steps"] = [self._render_step(s, deps, importable) for s in self.steps]
        final = self.builder.final
        if final is not None:
            chain = all(len(group) == 1 for group in final.groups)
            final_deps: dict[str, list[str]] | None = None if chain else {}
            previous: list[str] = []
            for group in final.groups:
                for s in group:
                    if final_deps is not None:
                        final_deps[s.name] = list(previous)
                previous = [s.name for s in group]
            spec["finally"] = [self._render_step(s, final_deps, importable) for s in final.steps]
        try:
            WorkflowSpec.model_validate(spec)
        except ValidationError as exc:
            problems = describe_errors(exc, "spec.")
            raise DefinitionError(f"workflow {self.name}: {problems}") from None
        return spec


@overload
def workflow(
    fn: Callable[[WorkflowBuilder], Any],
    *,
    name: str | None = None,
    queue: str | None = None,
    inputs: dict[str, Any] | None = None,
    active_deadline: float | None = None,
    max_step_visits: int | None = None,
    core_url: str = "localhost:9090",
) -> WorkflowDef: ...
@overload
def workflow(
    fn: None = None,
    *,
    name: str | None = None,
    queue: str | None = None,
    inputs: dict[str, Any] | None = None,
    active_deadline: float | None = None,
    max_step_visits: int | None = None,
    core_url: str = "localhost:9090",
) -> Callable[[Callable[[WorkflowBuilder], Any]], WorkflowDef]: ...
def workflow(
    fn: Callable[[WorkflowBuilder], Any] | None = None,
    *,
    name: str | None = None,
    queue: str | None = None,
    inputs: dict[str, Any] | None = None,
    active_deadline: float | None = None,
    max_step_visits: int | None = None,
    core_url: str = "localhost:9090",
) -> Any:
    """Define a workflow: ``@workflow`` or ``@workflow(name="deploy", queue="droplets")``.

    The function receives ``wf`` and calls ``wf.timeline(a >> b >> [c, d] >> e)``, then
    optionally ``wf.diverge`` and ``wf.branch``. ``queue`` is where its Python steps run.
    ``core_url`` is accepted for Cerebelum compatibility and kept, unused: the cluster is
    the engine here.
    """

    def define(f: Callable[[WorkflowBuilder], Any]) -> WorkflowDef:
        return WorkflowDef(
            f,
            name=name,
            queue=queue,
            inputs=inputs,
            active_deadline=active_deadline,
            max_step_visits=max_step_visits,
            core_url=core_url,
        )

    return define(fn) if fn is not None else define


class DSLLocalExecutor:
    """Cerebelum's local executor: ``await DSLLocalExecutor().execute(wf, inputs)``."""

    async def execute(self, workflow: Any, input_data: dict[str, Any]) -> ExecutionResult:
        if not isinstance(workflow, WorkflowDef):
            raise TypeError(f"DSLLocalExecutor.execute takes a @workflow, not {workflow!r}")
        return await run(workflow, input_data)


class WorkflowValidator:
    """Cerebelum's validator of a timeline and its rules, without defining a workflow:
    ``WorkflowValidator(workflow_name=, timeline=[...], diverge_rules=, branch_rules=)
    .validate()`` gives a ``ValidationReport`` whose errors are the ones ``@workflow`` would
    raise (an empty timeline, a circular dependency, a rule naming an unknown step...)."""

    def __init__(
        self,
        workflow_name: str,
        timeline: Any,
        diverge_rules: list[DivergeRule] | None = None,
        branch_rules: list[BranchRule] | None = None,
    ) -> None:
        self.workflow_name = workflow_name
        self.timeline = timeline
        self.diverge_rules = list(diverge_rules or [])
        self.branch_rules = list(branch_rules or [])

    def validate(self) -> ValidationReport:
        def define(wf: WorkflowBuilder) -> None:
            wf.timeline(self.timeline)
            for d in self.diverge_rules:
                wf.diverge(d.from_step, d.patterns)
            for b in self.branch_rules:
                wf.branch(b.after, b.condition, b.when_true, b.when_false)

        define.__name__ = self.workflow_name
        try:
            wf = WorkflowDef(
                define,
                name=self.workflow_name,
                queue=None,
                inputs=None,
                active_deadline=None,
                max_step_visits=None,
                register=False,
            )
            return wf.validate()
        except WorkflowDefinitionError as exc:
            return ValidationReport(is_valid=False, errors=list(exc.errors), warnings=[])
        except DefinitionError as exc:
            return ValidationReport(is_valid=False, errors=[str(exc)], warnings=[])
