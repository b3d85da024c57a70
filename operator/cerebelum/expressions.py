"""CEL evaluation and ``${{ expr }}`` interpolation.

Expressions come from users, so every failure becomes an ``ExpressionError`` that names the
field and the expression; the engine turns it into a step error, never a crash. A string
that is exactly one ``${{ expr }}`` keeps the expression's type (a number stays a number);
otherwise results are spliced into the string.

The CEL library is native code that parses by recursion: an expression of ~15,000 terms
overflows the stack and kills the process (SIGSEGV, no Python exception). So nothing is
compiled before ``check_bounds`` has checked its size, nesting and term count, far below
that point (measured: 12,000 terms pass, 15,000 crash; we allow 1,024 characters, which
is at most ~512 terms). The same limits are enforced at admission by the API models.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import cel

_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.S)

#: Longest expression accepted (a condition, or one ``${{ }}``).
MAX_EXPRESSION_LENGTH = 1024
#: Deepest nesting of (), [] and {} accepted.
MAX_NESTING = 32
#: Most ``${{ }}`` in one string.
MAX_TEMPLATES_PER_STRING = 32
#: Largest string that holds ``${{ }}``.
MAX_TEMPLATE_STRING = 16 * 1024
#: Largest sum of all templated strings of one action (interpolation work per attempt).
MAX_TEMPLATED_BYTES = 64 * 1024
_OPENERS, _CLOSERS = "([{", ")]}"


class ExpressionError(Exception):
    """A user expression failed to compile or evaluate."""

    def __init__(self, field: str, expression: str, problem: str) -> None:
        self.field = field
        self.expression = expression
        self.problem = problem
        super().__init__(f"{field}: expression {expression!r}: {problem}")


class _TooBig(Exception):
    """An expression refused before parsing (it could crash the native parser)."""


def bounds_problem(expression: str) -> str | None:
    """Why ``expression`` is too big to hand to the parser, or None if it is fine."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        return f"is {len(expression)} characters long, over the limit of {MAX_EXPRESSION_LENGTH}"
    depth = deepest = 0
    quote = ""
    for ch in expression:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif ch in _CLOSERS:
            depth = max(depth - 1, 0)
    if deepest > MAX_NESTING:
        return f"nests brackets {deepest} deep, over the limit of {MAX_NESTING}"
    return None


def template_problem(value: str) -> str | None:
    """Why a string with ``${{ }}`` is beyond the limits, or None."""
    if "${{" not in value:
        return None
    if len(value) > MAX_TEMPLATE_STRING:
        return (
            f"a string with ${{{{ }}}} is {len(value)} characters long, over the limit of "
            f"{MAX_TEMPLATE_STRING}"
        )
    count = value.count("${{")
    if count > MAX_TEMPLATES_PER_STRING:
        return f"holds {count} ${{{{ }}}} expressions, over the limit of {MAX_TEMPLATES_PER_STRING}"
    for match in _TEMPLATE.finditer(value):
        problem = bounds_problem(match.group(1).strip())
        if problem:
            return f"expression {_preview(match.group(1))} {problem}"
    return None


def templated_problems(value: Any, field: str) -> list[str]:
    """Every limit broken by the templated strings in ``value`` (recursively), by field."""
    problems: list[str] = []
    total = 0

    def walk(item: Any, where: str) -> None:
        nonlocal total
        if isinstance(item, dict):
            for k, v in item.items():
                walk(v, f"{where}.{k}")
        elif isinstance(item, list):
            for i, v in enumerate(item):
                walk(v, f"{where}[{i}]")
        elif isinstance(item, str) and "${{" in item:
            total += len(item)
            problem = template_problem(item)
            if problem:
                problems.append(f"{where}: {problem}")

    walk(value, field)
    if total > MAX_TEMPLATED_BYTES:
        problems.append(
            f"{field}: its strings with ${{{{ }}}} add up to {total} characters, over the limit "
            f"of {MAX_TEMPLATED_BYTES}"
        )
    return problems


def _preview(expression: str) -> str:
    text = expression.strip()
    return repr(text if len(text) <= 60 else text[:57] + "...")


@lru_cache(maxsize=4096)
def _compile(expression: str) -> Any:
    problem = bounds_problem(expression)
    if problem:
        raise _TooBig(problem)
    return cel.compile(expression)


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
        raise ExpressionError(field, _preview(expression)[1:-1], str(exc)) from None
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
        raise ExpressionError(field, _preview(value)[1:-1], problem)
    # "${{ a }} ${{ b }}" also matches the pattern as a whole: only one template keeps its type.
    whole = _TEMPLATE.fullmatch(value.strip()) if value.count("${{") == 1 else None
    if whole:
        return _to_json(evaluate(whole.group(1), activation, field=field))
    return _TEMPLATE.sub(
        lambda m: _as_text(_to_json(evaluate(m.group(1), activation, field=field))), value
    )


def check_syntax(expression: str, *, field: str) -> None:
    """Compile only: used to refuse bad expressions before anything runs."""
    try:
        _compile(expression.strip())
    except _TooBig as exc:
        raise ExpressionError(field, _preview(expression)[1:-1], str(exc)) from None
    except Exception as exc:
        raise ExpressionError(field, expression, f"does not compile: {_describe(exc)}") from None
