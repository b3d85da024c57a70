"""@sleep: wait before a step runs, as a deadline in status (Cerebelum's `sleeping` state)."""

from typing import Any

from cerebelum import Context, sleep, step, workflow


@step
async def start(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"message": inputs.get("message", "hello")}


@step
@sleep(seconds=2)
async def later(context: Context, start: dict[str, Any]) -> dict[str, Any]:
    return {"message": start["message"], "after_sleep": True}


@workflow
def sleep_workflow(wf: Any) -> None:
    wf.timeline(start >> later)
