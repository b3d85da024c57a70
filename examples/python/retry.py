"""@retry: a failing step is tried again with backoff; context.attempt says which try."""

from typing import Any

from cerebelum import Context, retry, step, workflow


@step
@retry(max_attempts=4, delay=0.2, backoff=2, on=[ConnectionError])
async def call_flaky_service(context: Context) -> dict[str, Any]:
    if context.attempt < 3:
        raise ConnectionError(f"service unavailable (attempt {context.attempt})")
    return {"answered_on_attempt": context.attempt}


@workflow
def retry_workflow(wf: Any) -> None:
    wf.timeline(call_flaky_service)
