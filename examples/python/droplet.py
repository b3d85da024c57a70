"""The reference document's droplet deployment, with the decorators Cerebelum promised.

    create_droplet >> wait_for_droplet_ready (@poll) >> verify_ssh_access (@retry)
        >> go_live (@approval) >> configure_server

Waiting holds nothing: between poll attempts, retries and while the approval is pending,
the workflow is a deadline in its status and no worker thread is busy.

Run it (the worker needs DIGITALOCEAN_TOKEN, and DIGITALOCEAN_ENDPOINT for a fake API):

    cerebelum worker --queue droplets examples/python/droplet.py
    cerebelum apply examples/python/droplet.py:deploy_workflow --input ssh_port=22 --watch
    cerebelum approve deploy-workflow go_live
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pydo

from cerebelum import Context, approval, poll, retry, step, workflow


def digital_ocean_client() -> pydo.Client:
    """pydo against DIGITALOCEAN_ENDPOINT if set (a fake API in tests), else the real one."""
    endpoint = os.environ.get("DIGITALOCEAN_ENDPOINT", "https://api.digitalocean.com")
    return pydo.Client(token=os.environ["DIGITALOCEAN_TOKEN"], endpoint=endpoint)


def public_ip(droplet: dict[str, Any]) -> str | None:
    networks = droplet.get("networks", {}).get("v4", [])
    return next((n["ip_address"] for n in networks if n["type"] == "public"), None)


@step
async def create_droplet(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    """Create the droplet, exactly once: it is tagged with the attempt's idempotency key,
    and an attempt taken over from a dead worker finds it by that tag instead of creating
    a second one."""
    client = digital_ocean_client()
    tag = "cerebelum-" + context.idempotency_key.replace(".", "-")[-50:]
    found = client.droplets.list(tag_name=tag)["droplets"]
    if found:
        return {"droplet_id": found[0]["id"], "status": "creating"}
    droplet = client.droplets.create(
        body={
            "name": f"web-{context.workflow_name}",
            "region": inputs["region"],
            "size": inputs["size"],
            "image": inputs["image"],
            "tags": [tag],
        }
    )["droplet"]
    return {"droplet_id": droplet["id"], "status": "creating"}


@step
@poll(condition=lambda r: r.get("ip") is not None, interval=3, max_attempts=30)
async def wait_for_droplet_ready(
    context: Context, create_droplet: dict[str, Any]
) -> dict[str, Any]:
    """One look per attempt; the poll re-runs it every 3 s until the droplet has an IP."""
    droplet = digital_ocean_client().droplets.get(create_droplet["droplet_id"])["droplet"]
    ip = public_ip(droplet) if droplet["status"] == "active" else None
    return {"droplet_id": droplet["id"], "ip": ip, "attempts": context.attempt}


@step
@retry(max_attempts=10, delay=1, backoff=2, max_delay=5)
async def verify_ssh_access(
    context: Context, inputs: dict[str, Any], wait_for_droplet_ready: dict[str, Any]
) -> dict[str, Any]:
    """One connection attempt to the SSH port; @retry spaces the attempts out."""
    ip = wait_for_droplet_ready["ip"]
    _, writer = await asyncio.wait_for(asyncio.open_connection(ip, inputs["ssh_port"]), 5)
    writer.close()
    return {"ip": ip, "ssh_ready": True}


@step
@approval(type="manual", timeout_minutes=60)
async def go_live(context: Context, verify_ssh_access: dict[str, Any]) -> dict[str, Any]:
    """Runs once someone approves: `cerebelum approve deploy-workflow go_live`."""
    decided_by = (context.approval or {}).get("decidedBy")
    return {"approved": True, "by": decided_by, "ip": verify_ssh_access["ip"]}


@step
async def configure_server(context: Context, go_live: dict[str, Any]) -> dict[str, Any]:
    return {"configured": True, "ip": go_live["ip"]}


@workflow(
    queue="droplets",
    inputs={"region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64", "ssh_port": 22},
)
def deploy_workflow(wf: Any) -> None:
    wf.timeline(
        create_droplet >> wait_for_droplet_ready >> verify_ssh_access >> go_live >> configure_server
    )
