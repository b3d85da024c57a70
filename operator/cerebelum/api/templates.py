"""Size limits of user expressions and of strings holding ``${{ }}``, as plain string checks.

The CEL library is native code that parses by recursion: an expression of ~15,000 terms
overflows the stack and kills the process (SIGSEGV, no Python exception). So nothing is
compiled before ``bounds_problem`` has checked its size, nesting and term count, far below
that point (measured: 12,000 terms pass, 15,000 crash; we allow 1,024 characters, which is
at most ~512 terms). The API models enforce the same limits at admission, and
``cerebelum.expressions`` before it compiles, so the rules live here, below both.
"""

from __future__ import annotations

import re
from typing import Any

TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.S)

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
    for match in TEMPLATE.finditer(value):
        problem = bounds_problem(match.group(1).strip())
        if problem:
            return f"expression {preview(match.group(1))} {problem}"
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


def preview(expression: str) -> str:
    text = expression.strip()
    return repr(text if len(text) <= 60 else text[:57] + "...")
