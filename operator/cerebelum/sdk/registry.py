"""Cerebelum's registries: every ``@step`` and ``@workflow`` defined so far, by name.

Cerebelum users look definitions up by name (``StepRegistry.get("fetch_user")``). Workers do
not use these: they find functions by ``module:qualname`` in ``FUNCTIONS``, which two steps
of the same name in different modules cannot confuse. Here a later definition of a name
replaces an earlier one, as in Cerebelum.
"""

from __future__ import annotations

from typing import Any, ClassVar


class _Registry:
    _items: ClassVar[dict[str, Any]]

    @classmethod
    def register(cls, item: Any) -> None:
        cls._items[item.name] = item

    @classmethod
    def get(cls, name: str) -> Any:
        return cls._items.get(name)

    @classmethod
    def all(cls) -> dict[str, Any]:
        return dict(cls._items)

    @classmethod
    def clear(cls) -> None:
        cls._items.clear()


class StepRegistry(_Registry):
    """Steps by name (``StepDef``)."""

    _items: ClassVar[dict[str, Any]] = {}


class WorkflowRegistry(_Registry):
    """Workflows by name (``WorkflowDef``)."""

    _items: ClassVar[dict[str, Any]] = {}
