"""The dependency graph of a spec: who waits for whom, and who a goto resets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cerebelum.api.spec import Step


class InvalidSpec(ValueError):
    """The spec cannot run (the CRD refuses most such specs; this guards the rest)."""


class Graph:
    """The graph of one list of steps: ``spec.steps`` or ``spec.finally`` (``part``), which
    run one after the other and never refer to each other's steps."""

    def __init__(self, steps: Sequence[Step], part: str = "steps") -> None:
        self.part = part
        self.order = [step.name for step in steps]
        if len(set(self.order)) != len(self.order):
            raise InvalidSpec(f"step names must be unique (spec.{part})")
        by_name = {step.name: step for step in steps}
        self.deps: dict[str, list[str]] = {}
        previous: str | None = None
        for step in steps:
            self.deps[step.name] = step.dependencies(previous)
            previous = step.name
        known = set(self.order)
        for name, deps in self.deps.items():
            for dep in deps:
                if dep not in known:
                    raise InvalidSpec(
                        f"step {name!r} depends on {dep!r}, which is not a step of spec.{part}"
                    )
            for target in by_name[name].goto_targets():
                if target not in known:
                    raise InvalidSpec(
                        f"step {name!r} routes to {target!r}, which is not a step of spec.{part}"
                    )
        self.dependents: dict[str, list[str]] = {name: [] for name in self.order}
        for name, deps in self.deps.items():
            for dep in deps:
                self.dependents[dep].append(name)
        self._check_acyclic()

    def _check_acyclic(self) -> None:
        state: dict[str, int] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = " -> ".join([*path[path.index(name) :], name])
                raise InvalidSpec(f"dependsOn forms a cycle: {cycle} (use next[].goto for loops)")
            state[name] = 1
            for dep in self.deps[name]:
                visit(dep, [*path, name])
            state[name] = 2

        for name in self.order:
            visit(name, [])

    def _closure(self, start: Iterable[str], edges: dict[str, list[str]]) -> set[str]:
        seen: set[str] = set()
        stack = list(start)
        while stack:
            for nxt in edges[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def field(self, name: str) -> str:
        """Where a step is in the spec, for messages: ``spec.steps[2]``."""
        return f"spec.{self.part}[{self.order.index(name)}]"

    def descendants(self, name: str) -> set[str]:
        return self._closure([name], self.dependents)

    def ancestors(self, name: str) -> set[str]:
        return self._closure([name], self.deps)
