"""CEL evaluation and ``${{ expr }}`` interpolation.

Expressions come from users, so every failure becomes an ``ExpressionError`` that names the
field and the expression; the engine turns it into a step error, never a crash. A string
that is exactly one ``${{ expr }}`` keeps the expression's type (a number stays a number);
otherwise results are spliced into the string.

Nothing is compiled before ``cerebelum.api.templates`` has checked its size and nesting:
the CEL library is native code that a large enough expression crashes (see there).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from cerebelum.api.templates import TEMPLATE, bounds_problem, preview, template_problem


def _cel() -> Any:
    """The CEL library, imported on first use. ``import cel`` also imports the library's
    interactive shell (prompt_toolkit): a quarter of a second the operator's start-up would
    spend before it wakes the workflows that fell due while it was down. The operator
    calls ``warm_up`` on a thread once its first list is in."""
    import cel

    return cel


def warm_up() -> None:
    """Import the CEL library now (the first expression then does not wait for it)."""
    _cel()


class ExpressionError(Exception):
    """A user expression failed to compile or evaluate."""

    def __init__(self, field: str, expression: str, problem: str) -> None:
        self.field = field
        self.expression = expression
        self.problem = problem
        super().__init__(f"{field}: expression {expression!r}: {problem}")


class _TooBig(Exception):
    """An expression refused before parsing (it could crash the native parser)."""


@lru_cache(maxsize=4096)
def _compile(expression: str) -> Any:
    problem = bounds_problem(expression)
    if problem:
        raise _TooBig(problem)
    return _cel().compile(expression)


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no such key: {exc.args[0] if exc.args else exc}"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if isinstance(exc, ValueError) else text


def evaluate(expression: str, activation: Mapping[str, Any], *, field: str) -> Any:
    """Evaluate one CEL expression against ``activation``."""
    try:
        program = _compile(expression.strip())
    except _TooBig as exc:
        raise ExpressionError(field, preview(expression)[1:-1], str(exc)) from None
    except Exception as exc:  # the library raises ValueError for syntax, others for odd input
        raise ExpressionError(field, expression, f"does not compile: {_describe(exc)}") from None
    try:
        return program.execute(dict(activation))
    except Exception as exc:
        raise ExpressionError(field, expression, _describe(exc)) from None


def evaluate_bool(expression: str, activation: Mapping[str, Any], *, field: str) -> bool:
    """Evaluate a condition; anything but a boolean result is an error, not a guess."""
    result = evaluate(expression, activation, field=field)
    if not isinstance(result, bool):
        raise ExpressionError(
            field, expression, f"must be true or false, got {type(result).__name__} {result!r}"
        )
    return result


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _to_json(value: Any) -> Any:
    """CEL results as plain JSON data (timestamps and bytes become strings)."""
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def interpolate(value: Any, activation: Mapping[str, Any], *, field: str) -> Any:
    """Resolve every ``${{ expr }}`` inside ``value`` (strings, lists, dicts, recursively)."""
    if isinstance(value, dict):
        return {k: interpolate(v, activation, field=f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, activation, field=f"{field}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${{" not in value:
        return value
    problem = template_problem(value)
    if problem:
        raise ExpressionError(field, preview(value)[1:-1], problem)
    # "${{ a }} ${{ b }}" also matches the pattern as a whole: only one template keeps its type.
    whole = TEMPLATE.fullmatch(value.strip()) if value.count("${{") == 1 else None
    if whole:
        return _to_json(evaluate(whole.group(1), activation, field=field))
    return TEMPLATE.sub(
        lambda m: _as_text(_to_json(evaluate(m.group(1), activation, field=field))), value
    )


def check_syntax(expression: str, *, field: str) -> None:
    """Compile only: used to refuse bad expressions before anything runs."""
    try:
        _compile(expression.strip())
    except _TooBig as exc:
        raise ExpressionError(field, preview(expression)[1:-1], str(exc)) from None
    except Exception as exc:
        raise ExpressionError(field, expression, f"does not compile: {_describe(exc)}") from None
