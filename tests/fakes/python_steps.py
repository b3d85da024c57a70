"""Step functions the integration tests hand to real `cerebelum worker` processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from cerebelum import Context, step

#: This file, as a worker is given it.
PATH = Path(__file__).resolve()


@step
async def echo(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": inputs, "step": context.step_name, "attempt": context.attempt}


@step
async def slow(context: Context) -> dict[str, Any]:
    await asyncio.sleep(30)
    return {"slept": 30}


@step
async def blocking(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    """Blocks its thread (time.sleep inside async def) for inputs.seconds."""
    time.sleep(float(inputs.get("seconds", 3)))
    return {"blocked": True}


@step
async def fenced_effect(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    """Blocks for inputs.seconds, then applies a side effect at inputs.url/effect, tagged
    with the attempt's idempotency key and this worker's fencing token."""
    import json
    import urllib.error
    import urllib.request

    time.sleep(float(inputs.get("seconds", 0)))
    request = urllib.request.Request(
        f"{inputs['url']}/effect",
        method="POST",
        data=b"{}",
        headers={
            "Idempotency-Key": context.idempotency_key,
            "X-Fencing-Token": str(context.fencing_token),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return dict(json.loads(reply.read()), token=context.fencing_token)
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"side effect refused: HTTP {exc.code}") from None
