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
