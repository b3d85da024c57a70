"""The reference document's recommended workflow, as the Cerebelum team wrote it.

Only two things differ from the document: the DigitalOcean calls use pydo's return shapes
(``client.droplets.get(droplet_id)["droplet"]``, dicts instead of attributes), and the SSH
check logs in on SSH_PORT as SSH_USER (in tests, a local sshd's port and the user it lets
in) instead of 22 as root. Its dedicated polling step loops with ``await asyncio.sleep(3)``:
that works, but holds a worker for the whole wait. ``droplet.py`` is the same workflow with
``@poll``, which holds nothing.

``blocking_workflow`` is the anti-pattern the document warns about: one step that creates
the droplet and then loops with ``time.sleep(5)`` until it has an IP. It works here too —
each step runs on a thread of its own — but it holds that thread the whole time.

    cerebelum worker examples/python/reference.py     # needs DIGITALOCEAN_TOKEN
    cerebelum apply examples/python/reference.py:deploy_workflow --watch
"""

import asyncio
import os
import time

import paramiko
import pydo

from cerebelum import Context, step, workflow

digital_ocean_client = pydo.Client(
    token=os.environ.get("DIGITALOCEAN_TOKEN", ""),
    endpoint=os.environ.get("DIGITALOCEAN_ENDPOINT", "https://api.digitalocean.com"),
)
SSH_PORT = int(os.environ.get("SSH_PORT", "22"))
SSH_USER = os.environ.get("SSH_USER", "root")
DROPLET = {"region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}


def public_ip(droplet: dict) -> str | None:
    networks = droplet["networks"]["v4"]
    return next((n["ip_address"] for n in networks if n["type"] == "public"), None)


@step
async def create_droplet(context: Context, inputs: dict) -> dict:
    """Create the droplet - returns immediately"""
    droplet = digital_ocean_client.droplets.create(
        body={"name": f"web-{context.workflow_name}", **DROPLET}
    )["droplet"]
    return {"droplet_id": droplet["id"], "status": "creating"}


@step
async def wait_for_droplet_ready(context: Context, create_droplet: dict) -> dict:
    """Step dedicated to polling - waits until the IP is available"""
    droplet_id = create_droplet["droplet_id"]
    max_attempts = 30  # 30 * 3s = 90s max
    for attempt in range(1, max_attempts + 1):
        print(f"[{attempt}/{max_attempts}] Checking droplet {droplet_id}...")
        droplet = digital_ocean_client.droplets.get(droplet_id)["droplet"]
        if droplet["status"] == "active" and public_ip(droplet):
            return {
                "droplet_id": droplet_id,
                "ip": public_ip(droplet),
                "ready": True,
                "attempts": attempt,
            }
        await asyncio.sleep(3)
    raise TimeoutError(f"Droplet {droplet_id} IP not ready after 90s")


@step
async def verify_ssh_access(context: Context, wait_for_droplet_ready: dict) -> dict:
    """Check SSH is reachable - with retry"""
    ip = wait_for_droplet_ready["ip"]
    for attempt in range(1, 11):  # 10 attempts
        try:
            ssh = paramiko.SSHClient()
            ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            ssh.connect(ip, port=SSH_PORT, username=SSH_USER, timeout=5)
            ssh.close()
            return {"ip": ip, "ssh_ready": True}
        except Exception as e:
            if attempt == 10:
                raise ConnectionError(f"SSH not ready: {e}") from e
            await asyncio.sleep(5)
    raise AssertionError("unreachable")


@step
async def configure_server(context: Context, verify_ssh_access: dict) -> dict:
    """Configure - SSH already guaranteed"""
    ip = verify_ssh_access["ip"]  # noqa: F841 - your configuration goes here
    return {"configured": True}


@workflow
def deploy_workflow(wf):
    wf.timeline(
        create_droplet
        >> wait_for_droplet_ready  # polling step
        >> verify_ssh_access  # verification step
        >> configure_server
    )


# -- the anti-pattern -------------------------------------------------------------------


@step
async def create_and_wait(context: Context, inputs: dict) -> dict:
    """Creates the droplet and blocks until it has an IP: what not to do."""
    droplet = digital_ocean_client.droplets.create(
        body={"name": f"blocking-{context.workflow_name}", **DROPLET}
    )["droplet"]
    while True:
        droplet = digital_ocean_client.droplets.get(droplet["id"])["droplet"]
        if droplet["status"] == "active" and public_ip(droplet):
            return {"droplet_id": droplet["id"], "ip": public_ip(droplet)}
        time.sleep(5)  # blocks the step


@step
async def report(context: Context, create_and_wait: dict) -> dict:
    return {"ip": create_and_wait["ip"]}


@workflow
def blocking_workflow(wf):
    wf.timeline(create_and_wait >> report)
