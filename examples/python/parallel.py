"""`a >> [b, c] >> d`: b and c run at the same time (on different worker threads), and d
receives both outputs."""

import asyncio
from typing import Any

from cerebelum import Context, step, workflow


@step
async def fetch_order(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"order": inputs.get("order", 42)}


@step
async def check_stock(context: Context, fetch_order: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.5)
    return {"in_stock": True}


@step
async def check_payment(context: Context, fetch_order: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.5)
    return {"paid": True}


@step
async def ship(
    context: Context, check_stock: dict[str, Any], check_payment: dict[str, Any]
) -> dict[str, Any]:
    return {"shipped": check_stock["in_stock"] and check_payment["paid"]}


@workflow
def parallel_workflow(wf: Any) -> None:
    wf.timeline(fetch_order >> [check_stock, check_payment] >> ship)
