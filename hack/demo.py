"""The demo behind `make demo`: CRDs, the operator and a sample workflow, shown to the end.

It runs inside `python -m cerebelum.devcluster run -- ...`, so KUBECONFIG points at a fresh
local control plane and the pinned kubectl is first on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from cerebelum.kube.command import operator_argv

ROOT = Path(__file__).resolve().parents[1]
NAME = "demo-release"
MANIFEST = {
    "apiVersion": "cerebelum.io/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": NAME},
    "spec": {
        "inputs": {"version": "1.4.2"},
        "steps": [
            {"name": "build", "noop": {"with": {"image": "web:${{ inputs.version }}"}}},
            {
                "name": "wait_for_rollout",
                "noop": {"with": {"ready": "${{ step.attempt >= 3 }}"}},
                "poll": {"until": "output.ready", "interval": "1s", "maxAttempts": 10},
            },
            {"name": "soak", "sleep": {"duration": "2s"}},
            {
                "name": "go_live",
                "approval": {"timeout": "5m", "message": "ship ${{ inputs.version }}?"},
            },
            {
                "name": "announce",
                "noop": {"with": {"text": "released ${{ steps.build.output.image }}"}},
            },
        ],
    },
}


def kubectl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def show(title: str) -> None:
    print(f"\n$ kubectl get workflow {NAME}   # {title}")
    print(kubectl("get", "workflow", NAME, "-o", "wide"), end="", flush=True)


def phase() -> str:
    return kubectl("get", "workflow", NAME, "-o", "jsonpath={.status.phase}")


def main() -> int:
    print("installing the CRDs from crds/ ...", flush=True)
    kubectl("apply", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/workflows.cerebelum.io", "--timeout=60s")
    log = Path(tempfile.mkdtemp(prefix="cerebelum-demo-")) / "operator.log"
    print(f"starting the operator (log: {log}) ...", flush=True)
    with log.open("wb") as out:
        operator = subprocess.Popen(
            operator_argv(),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
    try:
        print(
            f"applying workflow {NAME}: build >> poll rollout >> sleep >> approval >> announce",
            flush=True,
        )
        kubectl("apply", "-f", "-", stdin=json.dumps(MANIFEST))
        seen = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            current = phase()
            if current != seen:
                show(current or "created")
                seen = current
            if current == "WaitingForApproval":
                print(
                    f"\n$ kubectl annotate workflow {NAME} cerebelum.io/approve=go_live cerebelum.io/reason=demo"
                )
                kubectl(
                    "annotate",
                    "workflow",
                    NAME,
                    "cerebelum.io/approve=go_live",
                    "cerebelum.io/reason=demo",
                )
            if current in ("Succeeded", "Failed", "Cancelled"):
                break
            time.sleep(0.3)
        print(f"\n$ kubectl wait --for=condition=Succeeded workflow/{NAME}")
        print(
            kubectl("wait", "--for=condition=Succeeded", f"workflow/{NAME}", "--timeout=30s"),
            end="",
        )
        status = json.loads(kubectl("get", "workflow", NAME, "-o", "json"))["status"]
        print("\nper-step status:")
        for step in (s["name"] for s in MANIFEST["spec"]["steps"]):  # type: ignore[index]
            s = status["steps"][step]
            print(
                f"  {step:18} {s['phase']:10} attempts={s.get('attempts', 0)} output={json.dumps(s.get('output'))}"
            )
        print(f"\napproval: {json.dumps(status['steps']['go_live']['approval'])}")
        return 0 if status["phase"] == "Succeeded" else 1
    finally:
        operator.terminate()
        operator.wait(timeout=15)


if __name__ == "__main__":
    raise SystemExit(main())
