"""Action kinds: one module each, each declaring its ``ActionKind`` (what runs, whether it is
local, the check of its parameters, its settings). This registry collects them; the
engine reads them only through ``CATALOG``, which the driver's callers pass in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cerebelum.actions import digitalocean, http, job, local, python, ssh, tcp
from cerebelum.actions.base import Action, ActionContext, ActionKind, execute
from cerebelum.actions.errors import ActionError

KINDS: dict[str, ActionKind] = {
    kind.name: kind
    for kind in (
        local.NOOP,
        local.FAIL,
        http.KIND,
        tcp.KIND,
        ssh.KIND,
        digitalocean.KIND,
        job.KIND,
        python.KIND,
    )
}
#: The callable of each kind.
REGISTRY: dict[str, Action] = {name: kind.run for name, kind in KINDS.items()}


class Catalog:
    """The engine's view of the action kinds (``engine.ActionCatalog``)."""

    def is_local(self, kind: str) -> bool:
        known = KINDS.get(kind)
        return known is not None and known.local

    def problem(self, kind: str, raw: dict[str, Any], params: dict[str, Any]) -> str | None:
        known = KINDS.get(kind)
        return known.check(raw, params) if known is not None and known.check else None


CATALOG = Catalog()


def params_problem(kind: str, raw: dict[str, Any], params: dict[str, Any]) -> str | None:
    """Why ``params`` (interpolated from ``raw``) cannot be used by a ``kind`` action."""
    return CATALOG.problem(kind, raw, params)


class ActionSettings:
    """Each action kind's settings, by kind: its defaults, the environment's values, or
    replaced field by field (``with_values``)."""

    def __init__(self, by_kind: Mapping[str, Any]) -> None:
        self._by_kind = dict(by_kind)

    @classmethod
    def defaults(cls) -> ActionSettings:
        return cls({n: k.settings() for n, k in KINDS.items() if k.settings is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ActionSettings:
        return cls({n: k.settings.from_env(env) for n, k in KINDS.items() if k.settings})

    def of(self, kind: str) -> Any:
        """The settings of ``kind`` (None for a kind without settings)."""
        return self._by_kind.get(kind)

    def with_values(self, kind: str, **changes: Any) -> ActionSettings:
        return ActionSettings({**self._by_kind, kind: replace(self._by_kind[kind], **changes)})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActionSettings) and other._by_kind == self._by_kind

    def __repr__(self) -> str:
        return f"ActionSettings({self._by_kind!r})"


__all__ = [
    "CATALOG",
    "KINDS",
    "REGISTRY",
    "Action",
    "ActionContext",
    "ActionError",
    "ActionKind",
    "ActionSettings",
    "execute",
    "params_problem",
]
