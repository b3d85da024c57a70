"""The demo behind `make demo`: Cerebelum's droplet deployment, shown to the end.

It runs inside `python -m cerebelum.devcluster run -- ...`, so KUBECONFIG points at a fresh
local control plane and the pinned kubectl is first on PATH. DigitalOcean is the local fake
API (tests/fakes/digitalocean.py) speaking the real wire format to the real pydo client; the
droplet's "SSH port" and the configuration endpoint are local servers too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.digitalocean import FakeDigitalOcean  # noqa: E402
from tests.harness.sshd import SshServer, keygen  # noqa: E402

from cerebelum.kube.command import operator_argv  # noqa: E402

EXAMPLE = ROOT / "examples" / "digitalocean-droplet.yaml"
TOKEN = "demo-token-not-a-real-one"


def kubectl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def show(name: str, title: str) -> None:
    print(f"\n$ kubectl get workflow {name}   # {title}")
    print(kubectl("get", "workflow", name, "-o", "wide"), end="", flush=True)


def main() -> int:
    print("installing the CRDs from crds/ ...", flush=True)
    kubectl("apply", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/workflows.cerebelum.io", "--timeout=60s")
    kubectl("create", "secret", "generic", "do-token", f"--from-literal=token={TOKEN}")
    work = Path(tempfile.mkdtemp(prefix="cerebelum-demo-"))
    key = work / "id_ed25519"
    public = keygen(key, "cerebelum-demo")
    kubectl("create", "secret", "generic", "ssh-key", f"--from-file=id_ed25519={key}")
    with FakeDigitalOcean(TOKEN, active_after=4.0) as fake_do, SshServer(work / "sshd") as sshd:
        sshd.authorize(public)  # the key "installed on the droplet"
        print(
            f"fake DigitalOcean API at {fake_do.url}; the droplet's sshd is "
            f"{sshd.user}@127.0.0.1:{sshd.port} (OpenSSH, config in {sshd.dir})"
        )
        log = work / "operator.log"
        print(f"starting the operator (log: {log}) ...", flush=True)
        env = {**os.environ, "CEREBELUM_DIGITALOCEAN_ENDPOINT": fake_do.url}
        with log.open("wb") as out:
            operator = subprocess.Popen(
                operator_argv(), stdout=out, stderr=subprocess.STDOUT, env=env
            )
        try:
            return run_example(sshd, fake_do)
        finally:
            operator.terminate()
            operator.wait(timeout=15)


def run_example(sshd: SshServer, fake_do: FakeDigitalOcean) -> int:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["spec"]["inputs"].update(sshPort=sshd.port, sshUser=sshd.user)
    name = manifest["metadata"]["name"]
    print(f"\n$ kubectl apply -f examples/{EXAMPLE.name}   # inputs pointed at the local servers")
    print(
        "  create_droplet >> wait_for_droplet_ready (poll 3s) >> verify_ssh (ssh login) >> "
        "configure_server (a script over ssh)"
    )
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    seen = ""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = json.loads(kubectl("get", "workflow", name, "-o", "json")).get("status", {})
        marker = f"{status.get('phase')}/{status.get('currentStep')}"
        if marker != seen:
            show(name, status.get("phase") or "created")
            seen = marker
        if status.get("phase") in ("Succeeded", "Failed", "Cancelled"):
            break
        time.sleep(0.3)
    print(f"\n$ kubectl wait --for=condition=Succeeded workflow/{name}")
    print(kubectl("wait", "--for=condition=Succeeded", f"workflow/{name}", "--timeout=30s"), end="")
    status = json.loads(kubectl("get", "workflow", name, "-o", "json"))["status"]
    print("\nper-step status:")
    for step in (s["name"] for s in manifest["spec"]["steps"]):
        s = status["steps"][step]
        print(f"  {step:24} {s['phase']:10} attempts={s.get('attempts', 0)}")
    ready = status["steps"]["wait_for_droplet_ready"]["output"]["droplet"]
    public = [n["ip_address"] for n in ready["networks"]["v4"] if n["type"] == "public"]
    configured = status["steps"]["configure_server"].get("output") or {}
    print(
        f"\ndroplet {ready['id']} ({ready['name']}) is {ready['status']} at {public[0]}; "
        f"droplets created by the fake API: {fake_do.droplet_count}"
    )
    print(f"host key pinned on first use: {configured.get('hostKeyFingerprint')}")
    print(
        "configure_server printed:\n  "
        + (configured.get("stdout") or "").strip().replace("\n", "\n  ")
    )
    return 0 if status["phase"] == "Succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
