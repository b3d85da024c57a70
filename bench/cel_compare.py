"""Compare the two CEL implementations on the expressions a workflow evaluates.

Prints compile and evaluate throughput for each library, and the ratio between them.
Run: python bench/cel_compare.py  (needs both `cel-python` and `common-expression-language`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

EXPRESSIONS = [
    "output.droplet.status == 'active'",
    "output.droplet.networks.v4.exists(n, n.type == 'public')",
    "size(output.items) > 2 && output.items[0].name.startsWith('web')",
    "inputs.region + '-' + workflow.name",
]
ACTIVATION: dict[str, Any] = {
    "output": {
        "droplet": {
            "status": "active",
            "networks": {"v4": [{"type": "private"}, {"type": "public", "ip_address": "1.2.3.4"}]},
        },
        "items": [{"name": "web-1"}, {"name": "db"}, {"name": "web-2"}],
    },
    "inputs": {"region": "nyc3"},
    "workflow": {"name": "deploy"},
}


def rate(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Calls per second of fn, measured over about `seconds`."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()
        count += 50
    return count / elapsed


def bench_rust() -> tuple[float, float]:
    import cel

    def compile_all() -> None:
        for e in EXPRESSIONS:
            cel.compile(e)

    programs = [cel.compile(e) for e in EXPRESSIONS]

    def eval_all() -> None:
        for p in programs:
            p.execute(ACTIVATION)

    return rate(compile_all) * len(EXPRESSIONS), rate(eval_all) * len(EXPRESSIONS)


def bench_celpy() -> tuple[float, float]:
    import celpy
    from celpy.adapter import json_to_cel

    env = celpy.Environment()

    def compile_all() -> None:
        for e in EXPRESSIONS:
            env.program(env.compile(e))

    programs = [env.program(env.compile(e)) for e in EXPRESSIONS]

    def eval_all() -> None:
        # The activation must be converted on every evaluation: outputs change per attempt.
        activation = {k: json_to_cel(v) for k, v in ACTIVATION.items()}
        for p in programs:
            p.evaluate(activation)

    return rate(compile_all) * len(EXPRESSIONS), rate(eval_all) * len(EXPRESSIONS)


def main() -> None:
    rust_c, rust_e = bench_rust()
    py_c, py_e = bench_celpy()
    print(f"{'library':34} {'compile/s':>12} {'evaluate/s':>12}")
    print(f"{'common-expression-language (Rust)':34} {rust_c:12.0f} {rust_e:12.0f}")
    print(f"{'cel-python (pure Python)':34} {py_c:12.0f} {py_e:12.0f}")
    print(f"ratio Rust/Python: compile x{rust_c / py_c:.1f}, evaluate x{rust_e / py_e:.1f}")


if __name__ == "__main__":
    main()
