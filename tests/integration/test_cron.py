"""CronWorkflows on the real API server, with `@every` schedules a few seconds apart (the
cron fields, time zones and every policy are tested with fake time in
tests/unit/test_schedule.py)."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cerebelum.api.durations import parse_time
from tests.harness import Cluster
from tests.harness.cli import cerebelum
from tests.harness.cluster import eventually
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import wait_for_phase

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STEPS = [{"name": "hello", "noop": {"with": {"at": "${{ workflow.name }}"}}}]


def cron(name: str, schedule: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cerebelum.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": name},
        "spec": {"schedule": schedule, "workflowSpec": {"steps": STEPS}, **spec},
    }


def runs(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "-n", namespace, "get", "workflows", "-l", f"cerebelum.io/cron-workflow={name}"
    )["items"]
    return items


def scheduled(run: dict[str, Any]) -> datetime.datetime:
    return parse_time(run["metadata"]["annotations"]["cerebelum.io/scheduled-time"])


def suspend(cluster: Cluster, namespace: str, name: str) -> None:
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "cronworkflow",
        name,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":true}}',
    )


def test_a_schedule_starts_one_run_per_time_and_keeps_its_history_bounded(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(cron("tick", "@every 2s", successfulHistoryLimit=2), namespace)
    eventually(
        lambda: (
            len(
                [
                    r
                    for r in runs(cluster, namespace, "tick")
                    if r.get("status", {}).get("phase") == "Succeeded"
                ]
            )
            >= 2
            or None
        ),
        timeout=20,
    )
    time.sleep(4.5)  # two more scheduled times: the oldest runs are pruned
    obj = cluster.kubectl_json("-n", namespace, "get", "cronworkflow", "tick")
    status = obj["status"]
    last, nxt = parse_time(status["lastScheduleTime"]), parse_time(status["nextScheduleTime"])
    assert (nxt - last).total_seconds() == 2
    assert int(last.timestamp()) % 2 == 0, "@every times are multiples of the interval"

    def pruned() -> bool:
        # A run that has just finished is pruned when its CronWorkflow next looks: at once.
        done = [
            r
            for r in runs(cluster, namespace, "tick")
            if r.get("status", {}).get("phase") == "Succeeded"
        ]
        return len(done) <= 2

    eventually(pruned, timeout=5)
    every = runs(cluster, namespace, "tick")
    for run in every:
        assert run["metadata"]["name"] == f"tick-{int(scheduled(run).timestamp())}"
        assert run["metadata"]["ownerReferences"][0]["kind"] == "CronWorkflow"
    assert status.get("lastSuccessfulTime")
    table = cluster.kubectl("-n", namespace, "get", "cronworkflows").stdout
    assert "NEXT" in table and "SCHEDULE" in table and "@every 2s" in table
    explained = cluster.kubectl("explain", "cronworkflow.spec.concurrencyPolicy").stdout
    assert "Forbid" in explained


def test_killing_the_operator_across_scheduled_times_yields_exactly_one_run(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(cron("nightly", "@every 2s", successfulHistoryLimit=100), namespace)
    eventually(lambda: runs(cluster, namespace, "nightly") or None, timeout=10)
    operator.kill()
    killed = datetime.datetime.now(datetime.UTC)
    time.sleep(7)  # three scheduled times pass with no operator
    restarted = datetime.datetime.now(datetime.UTC)
    operator.start()
    eventually(
        lambda: any(scheduled(r) > killed for r in runs(cluster, namespace, "nightly")) or None,
        timeout=10,
    )
    suspend(cluster, namespace, "nightly")
    every = runs(cluster, namespace, "nightly")
    times = sorted(scheduled(r) for r in every)
    assert len(times) == len(set(times)), "one Workflow per scheduled time"
    after = sorted((r for r in every if scheduled(r) > killed), key=scheduled)
    first = after[0]
    created = parse_time(first["metadata"]["creationTimestamp"])  # whole seconds
    assert created >= restarted.replace(microsecond=0), "started by the restarted operator"
    # It is the most recent time due when the operator looked, not the oldest missed one:
    # the three or more times that fell in the gap were dropped, never started in a burst.
    # The operator looked at some instant L >= `restarted`, and the most recent due time t
    # then has t <= L < t + 2 s, so t > restarted - 2 s, however long the restarted
    # operator took to import and list (the oldest missed time is about restarted - 7 s).
    # (How long after t it was created is not bounded: a slow start may pass t by over 2 s.)
    assert scheduled(first) > restarted - datetime.timedelta(seconds=2), (restarted, times)
    gap = [t for t in times if killed < t <= restarted]
    assert len(gap) <= 1, f"a burst of missed runs: {times}"


def test_two_replicas_with_leader_election_never_double_create(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    cp = cluster.control_plane
    if cp is None:
        pytest.skip(
            "tells the replicas apart by client-certificate users of the local control plane"
        )
    replicas = [
        OperatorProcess(
            cluster,
            namespace,
            tmp_path / f"{name}.log",
            env={
                "KUBECONFIG": str(cp.kubeconfig_for_user(name, ("system:masters",))),
                "CEREBELUM_LEADER_ELECTION": "true",
                "CEREBELUM_LEASE_NAMESPACE": namespace,
                "CEREBELUM_POD_NAME": name,
                "CEREBELUM_LEASE_SECONDS": "3",
                "CEREBELUM_LEASE_RENEW_SECONDS": "1",
            },
        )
        for name in ("cron-a", "cron-b")
    ]
    try:
        for replica in replicas:
            replica.start()
        cluster.apply(cron("often", "@every 1s", successfulHistoryLimit=100), namespace)
        eventually(lambda: len(runs(cluster, namespace, "often")) >= 3 or None, timeout=15)
        holder = cluster.kubectl_json("-n", namespace, "get", "lease", "cerebelum-operator")
        leader = holder["spec"]["holderIdentity"]
        next(r for r in replicas if r.log_path.name.startswith(leader)).kill()
        count = len(runs(cluster, namespace, "often"))
        eventually(lambda: len(runs(cluster, namespace, "often")) >= count + 3 or None, timeout=20)
        suspend(cluster, namespace, "often")
    finally:
        for replica in replicas:
            replica.stop()
    created: dict[str, list[str]] = {}
    for line in cp.audit_log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (
            ref.get("resource") == "workflows"
            and ref.get("namespace") == namespace
            and event.get("verb") == "create"
            and event.get("stage") == "ResponseComplete"
            and (event.get("responseStatus") or {}).get("code") == 201
        ):
            created.setdefault(ref.get("name") or "", []).append(event["user"]["username"])
    names = [r["metadata"]["name"] for r in runs(cluster, namespace, "often")]
    assert sorted(created) == sorted(names)
    assert all(len(users) == 1 for users in created.values()), created
    users = {u for us in created.values() for u in us}
    assert users == {"cron-a", "cron-b"}, "both replicas led in turn, and each created some"
    times = sorted(scheduled(r) for r in runs(cluster, namespace, "often"))
    assert len(times) == len(set(times))


def test_the_example_waits_for_its_time_and_cron_trigger_runs_it_now(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "template.yaml"))
    cluster.kubectl("-n", namespace, "delete", "workflow", "release-1-4-2")
    cluster.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "cron.yaml"))
    status = eventually(
        lambda: (
            cluster.kubectl_json("-n", namespace, "get", "cronworkflow", "nightly-release")
            .get("status", {})
            .get("nextScheduleTime")
        ),
        timeout=10,
    )
    nxt = parse_time(status).astimezone(ZoneInfo("Europe/Madrid"))
    assert (nxt.hour, nxt.minute, nxt.weekday() < 5) == (3, 0, True)
    assert runs(cluster, namespace, "nightly-release") == []
    ran = cerebelum(
        cluster, namespace, "cron", "trigger", "nightly-release", "--watch", "--timeout", "30"
    )
    assert ran.returncode == 0, ran.stderr
    [run] = runs(cluster, namespace, "nightly-release")
    assert run["metadata"]["name"].startswith("nightly-release-manual-")
    done = wait_for_phase(cluster, namespace, run["metadata"]["name"], "Succeeded")
    assert done["status"]["steps"]["canary"]["output"]["to"] == "staging"
    assert done["spec"]["templateRef"]["resourceVersion"]
    missing = cerebelum(cluster, namespace, "cron", "trigger", "nope")
    assert missing.returncode != 0 and "CronWorkflow" in missing.stderr
    assert "not found" in missing.stderr


def test_a_bad_schedule_is_refused_by_kubectl_apply_or_reported_by_the_operator(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    refused = cluster.kubectl(
        "-n", namespace, "apply", "-f", "-", stdin=json.dumps(cron("bad", "* * *")), check=False
    )
    assert refused.returncode != 0 and "spec.schedule" in refused.stderr
    cluster.apply(cron("late", "61 * * * *"), namespace)
    obj = eventually(
        lambda: (
            cluster.kubectl_json("-n", namespace, "get", "cronworkflow", "late")
            .get("status", {})
            .get("message")
        ),
        timeout=10,
    )
    assert "minute: '61' is outside 0-59" in obj
    assert runs(cluster, namespace, "late") == []
