"""wf.diverge: route on a step's result — retry, failed, continue, back_to, skip_to.

Here `check` asks to go round again until its third visit (a loop, capped by the visit
limit), and a failing `optional_cleanup` is tolerated with "continue".
"""

from typing import Any

from cerebelum import Context, back_to, cel, step, workflow


@step
async def prepare(context: Context) -> dict[str, Any]:
    return {"round": context.visit}


@step
async def check(context: Context, prepare: dict[str, Any]) -> dict[str, Any]:
    return {"round": prepare["round"], "done": prepare["round"] >= 3}


@step
async def optional_cleanup(context: Context) -> dict[str, Any]:
    raise RuntimeError("nothing to clean")


@step
async def finish(context: Context, check: dict[str, Any]) -> dict[str, Any]:
    return {"rounds": check["round"]}


@workflow
def diverge_workflow(wf: Any) -> None:
    wf.timeline(prepare >> check >> optional_cleanup >> finish)
    wf.diverge(check, {cel("!output.done"): back_to(prepare), "timeout": "retry"})
    wf.diverge(optional_cleanup, {"error": "continue"})
