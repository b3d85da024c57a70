"""@approval: a human gate before the step; the decision reaches it as context.approval.

cerebelum approve approval-workflow publish --data '{"channel": "stable"}'
"""

from typing import Any

from cerebelum import Context, approval, step, workflow


@step
async def build(context: Context) -> dict[str, Any]:
    return {"version": "1.2.3"}


@step
@approval(type="manual", timeout_minutes=60)
async def publish(context: Context, build: dict[str, Any]) -> dict[str, Any]:
    decision = context.approval or {}
    return {
        "version": build["version"],
        "channel": (decision.get("data") or {}).get("channel", "beta"),
        "reason": decision.get("reason"),
    }


@workflow
def approval_workflow(wf: Any) -> None:
    wf.timeline(build >> publish)
