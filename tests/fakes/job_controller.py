"""Play the job controller and the kubelet for the job action's tests.

The local control plane has no controller-manager and no kubelet, so no Pod ever runs. The
tests finish Jobs the way those components would, through the real API: a Pod labelled for
the Job, terminated with a termination message, and the Job's status conditions.
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

from tests.harness import Cluster


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def jobs_of(cluster: Cluster, namespace: str, workflow: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "-n", namespace, "get", "jobs", "-l", f"cerebelum.io/workflow={workflow}"
    )["items"]
    labels = [j["metadata"]["labels"] for j in items]
    order = [(int(lab["cerebelum.io/visit"]), int(lab["cerebelum.io/attempt"])) for lab in labels]
    return [job for _, job in sorted(zip(order, items, strict=True), key=lambda pair: pair[0])]


def wait_for_jobs(
    cluster: Cluster, namespace: str, workflow: str, count: int, timeout: float = 20
) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [j["metadata"]["name"] for j in jobs_of(cluster, namespace, workflow)]
        if len(names) >= count:
            return names
        time.sleep(0.1)
    raise AssertionError(f"{workflow}: fewer than {count} jobs after {timeout}s")


def complete(cluster: Cluster, namespace: str, job: str, output: Any = None) -> None:
    """The Job's pod exits 0 (with ``output`` as JSON termination message); the Job completes."""
    now = _now()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job}-pod",
            "labels": {"job-name": job, "batch.kubernetes.io/job-name": job},
        },
        "spec": {"restartPolicy": "Never", "containers": [{"name": "step", "image": "busybox"}]},
    }
    cluster.kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(pod))
    terminated: dict[str, Any] = {
        "exitCode": 0,
        "reason": "Completed",
        "startedAt": now,
        "finishedAt": now,
    }
    if output is not None:
        terminated["message"] = json.dumps(output)
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "pod",
        f"{job}-pod",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "phase": "Succeeded",
                    "containerStatuses": [
                        {
                            "name": "step",
                            "image": "busybox",
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {"terminated": terminated},
                        }
                    ],
                }
            }
        ),
    )
    _conditions(
        cluster,
        namespace,
        job,
        [("SuccessCriteriaMet", "Completed"), ("Complete", "Completed")],
        {"succeeded": 1, "completionTime": now},
        now=now,
    )


def fail(
    cluster: Cluster,
    namespace: str,
    job: str,
    reason: str = "BackoffLimitExceeded",
    message: str = "Job has reached the specified backoff limit",
) -> None:
    _conditions(
        cluster,
        namespace,
        job,
        [("FailureTarget", reason), ("Failed", reason)],
        {"failed": 1},
        now=_now(),
        message=message,
    )


def _conditions(
    cluster: Cluster,
    namespace: str,
    job: str,
    types: list[tuple[str, str]],
    extra: dict[str, Any],
    *,
    now: str,
    message: str = "",
) -> None:
    status = {
        "startTime": now,
        **extra,
        "conditions": [
            {
                "type": t,
                "status": "True",
                "reason": r,
                "message": message,
                "lastTransitionTime": now,
                "lastProbeTime": now,
            }
            for t, r in types
        ],
    }
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "job",
        job,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
