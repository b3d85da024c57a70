"""Cerebelum's in-step helpers, inside the steps' own code.

`await sleep(ms)` and `await wait_for_approval(...)` end their step with `data` as its output;
the workflow then waits (a deadline, or a decision, in the Workflow's status: no worker is
held) before the next step. `await poll(...)` and `await retry(...)` wait inside the step.

cerebelum approve helpers-workflow review
"""

from typing import Any

from cerebelum import Context, poll, retry, sleep, step, wait_for_approval, workflow


@step
async def request_review(context: Context, inputs: dict[str, Any]) -> None:
    await sleep(1500, data={"document": inputs.get("document", "spec-v1")})


@step
async def review(context: Context, request_review: dict[str, Any]) -> None:
    await wait_for_approval(data={"document": request_review["document"]}, timeout_ms=600_000)


@step
async def publish(context: Context, review: dict[str, Any]) -> dict[str, Any]:
    looks: list[int] = []
    found = await poll(
        lambda: {"url": f"https://docs.example/{review['document']}"} if len(looks) >= 2 else None,
        interval=200,
        max_attempts=10,
        on_attempt=lambda n, _: looks.append(n),
    )
    tries: list[int] = []

    async def upload() -> str:
        tries.append(len(tries) + 1)
        if len(tries) < 3:
            raise ConnectionError("storage busy")
        return "uploaded"

    status = await retry(upload, max_attempts=5, delay=100, backoff=2.0, on_error=ConnectionError)
    return {"url": found["url"], "looks": len(looks), "upload": status, "tries": len(tries)}


@workflow
def helpers_workflow(wf: Any) -> None:
    wf.timeline([request_review, review, publish])
