"""@poll: re-run a step until a condition on its output holds; nothing is held in between.

The condition is a Python callable (the worker evaluates it) or a CEL string.
"""

from typing import Any

from cerebelum import Context, poll, step, workflow


@step
@poll(condition=lambda r: r["ready"], interval=0.5, max_attempts=10)
async def wait_until_ready(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    # Ready on the third look: context.attempt counts the poll's attempts.
    return {"ready": context.attempt >= inputs.get("ready_on", 3), "looks": context.attempt}


@step
@poll(condition="output.count >= 2", interval=0.5, timeout=30)
async def wait_with_cel(context: Context) -> dict[str, Any]:
    return {"count": context.attempt}


@workflow
def poll_workflow(wf: Any) -> None:
    wf.timeline(wait_until_ready >> wait_with_cel)
