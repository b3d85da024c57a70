"""The dependency graph of a spec: who waits for whom, and who a goto resets."""

from __future__ import annotations

from collections.abc import Iterable

from cerebelum.api.spec import WorkflowSpec


class InvalidSpec(ValueError):
    """The spec cannot run (the CRD refuses most such specs; this guards the rest)."""


class Graph:
    def __init__(self, spec: WorkflowSpec) -> None:
        self.order = [step.name for step in spec.steps]
        if len(set(self.order)) != len(self.order):
            raise InvalidSpec("step names must be unique")
        self.deps: dict[str, list[str]] = {}
        previous: str | None = None
        for step in spec.steps:
            self.deps[step.name] = step.dependencies(previous)
            previous = step.name
        known = set(self.order)
        for name, deps in self.deps.items():
            for dep in deps:
                if dep not in known:
                    raise InvalidSpec(f"step {name!r} depends on unknown step {dep!r}")
            for target in spec.step(name).goto_targets():
                if target not in known:
                    raise InvalidSpec(f"step {name!r} routes to unknown step {target!r}")
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

    def descendants(self, name: str) -> set[str]:
        return self._closure([name], self.dependents)

    def ancestors(self, name: str) -> set[str]:
        return self._closure([name], self.deps)
