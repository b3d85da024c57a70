"""wf.branch: after a step, go one way or the other on a condition of its output.

Production goes through a canary before the full rollout; anything else skips the canary
(it ends Skipped).
"""

from typing import Any

from cerebelum import Context, step, workflow


@step
async def inspect(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"environment": inputs.get("environment", "staging")}


@step
async def canary(context: Context) -> dict[str, Any]:
    return {"canary": "healthy"}


@step
async def full_rollout(context: Context, inspect: dict[str, Any]) -> dict[str, Any]:
    return {"rolled_out_to": inspect["environment"]}


@workflow
def branch_workflow(wf: Any) -> None:
    wf.timeline(inspect >> canary >> full_rollout)
    wf.branch(
        inspect,
        condition=lambda r: r["environment"] == "production",
        when_true=canary,
        when_false=full_rollout,
    )
