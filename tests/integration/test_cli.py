"""The cerebelum command (and kubectl cerebelum) against the operator, with the user's kubeconfig."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness import Cluster
from tests.harness.cli import cerebelum as cli
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase, wait_for_step_phase, workflow

BIN = Path(sys.executable).parent


def test_status_approve_watch_and_history(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow(
            "release",
            [
                {"name": "build", "noop": {"with": {"v": 1}}},
                {"name": "go_live", "approval": {"timeout": "1h", "message": "ship it?"}},
                {
                    "name": "announce",
                    "noop": {"with": {"text": "${{ steps.go_live.output.ticket }}"}},
                },
            ],
        ),
        namespace,
    )
    wait_for_phase(cluster, namespace, "release", "WaitingForApproval")
    status = cli(cluster, namespace, "status", "release")
    assert status.returncode == 0, status.stderr
    assert "Workflow" in status.stdout and "WaitingForApproval (1/3)" in status.stdout
    assert "waiting for approval until" in status.stdout and "left): ship it?" in status.stdout
    listing = cli(cluster, namespace, "list")
    assert listing.stdout.splitlines()[1].split()[:4] == [
        "release",
        "WaitingForApproval",
        "go_live",
        "1/3",
    ]

    typo = cli(cluster, namespace, "approve", "release", "go_lve")
    assert typo.returncode != 0 and "has no step 'go_lve'" in typo.stderr
    watch = subprocess.Popen(
        [str(BIN / "cerebelum"), "watch", "release", "-n", namespace],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
    )
    assert watch.stdout is not None
    first = watch.stdout.readline()  # approve only once watch has shown the waiting state
    approve = cli(
        cluster,
        namespace,
        "approve",
        "release",
        "go_live",
        "--reason",
        "ok",
        "--data",
        '{"ticket": 7}',
    )
    assert approve.returncode == 0, approve.stderr
    rest, err = watch.communicate(timeout=60)
    out = first + rest
    assert watch.returncode == 0, err
    assert "WaitingForApproval go_live" in first and out.strip().splitlines()[-1].endswith(
        "3/3 Succeeded"
    )
    done = wait_for_phase(cluster, namespace, "release", "Succeeded")
    assert done["status"]["steps"]["announce"]["output"] == {"text": 7}
    history = cli(cluster, namespace, "history", "release")
    assert "ApprovalRequested" in history.stdout and "Succeeded" in history.stdout


def test_watch_exits_non_zero_on_failure_and_reject_and_cancel(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow("broken", [{"name": "a", "fail": {"retryable": False, "message": "nope"}}]),
        namespace,
    )
    failed = cli(cluster, namespace, "watch", "broken")
    assert failed.returncode == 1 and "nope" in failed.stderr
    cluster.apply(workflow("gate", [{"name": "go_live", "approval": {}}]), namespace)
    wait_for_step_phase(cluster, namespace, "gate", "go_live", "WaitingForApproval")
    no_reason = cli(cluster, namespace, "reject", "gate", "go_live")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    assert (
        cli(cluster, namespace, "reject", "gate", "go_live", "--reason", "freeze").returncode == 0
    )
    assert "freeze" in wait_for_phase(cluster, namespace, "gate", "Failed")["status"]["message"]
    cluster.apply(workflow("long", [{"name": "nap", "sleep": {"duration": "1h"}}]), namespace)
    wait_for_phase(cluster, namespace, "long", "Sleeping")
    assert cli(cluster, namespace, "cancel", "long").returncode == 0
    wait_for_phase(cluster, namespace, "long", "Cancelled")
    missing = cli(cluster, namespace, "status", "nosuch")
    assert missing.returncode == 1 and f"workflow {namespace}/nosuch not found" in missing.stderr


def test_kubectl_plugin(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    """kubectl finds kubectl-cerebelum on PATH and passes it every argument after its name."""
    cluster.apply(workflow("quick", [{"name": "a", "noop": {}}]), namespace)
    wait_for_phase(cluster, namespace, "quick", "Succeeded")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [
            str(cluster.kubectl_bin),
            "cerebelum",
            "status",
            "quick",
            "-n",
            namespace,
            "--kubeconfig",
            str(cluster.kubeconfig),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Succeeded (1/1)" in result.stdout
