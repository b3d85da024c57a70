"""Workflows run by the real operator against the real API server, driven with kubectl."""

from __future__ import annotations

from pathlib import Path

from cerebelum.api.durations import parse_time
from tests.harness import Cluster
from tests.harness.cluster import eventually
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import get, wait_for_phase, wait_for_step_phase, workflow


def test_sleep_wakes_within_a_second_of_its_deadline(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow(
            "nap",
            [
                {"name": "nap", "sleep": {"duration": "2s"}},
                {"name": "after", "noop": {"with": {"ok": True}}},
            ],
        ),
        namespace,
    )
    sleeping = wait_for_step_phase(cluster, namespace, "nap", "nap", "Sleeping")
    assert sleeping["status"]["phase"] == "Sleeping"
    assert sleeping["status"]["nextWakeAt"] == sleeping["status"]["steps"]["nap"]["sleepUntil"]
    done = wait_for_phase(cluster, namespace, "nap", "Succeeded", timeout=15)
    steps = done["status"]["steps"]
    late = (
        parse_time(steps["nap"]["finishedAt"]) - parse_time(steps["nap"]["sleepUntil"])
    ).total_seconds()
    assert 0 <= late < 1.0, f"woke {late:.3f}s after the deadline"
    assert steps["after"]["output"] == {"ok": True}
    assert done["status"]["progress"] == "2/2"


def test_poll_succeeds_on_attempt_three(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow(
            "poll",
            [
                {
                    "name": "wait_ready",
                    "noop": {"with": {"n": "${{ step.attempt }}"}},
                    "poll": {"until": "output.n >= 3", "interval": "300ms", "maxAttempts": 10},
                }
            ],
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "poll", "Succeeded")
    step = done["status"]["steps"]["wait_ready"]
    assert step["attempts"] == 3 and step["output"] == {"n": 3}


def test_kubectl_wait_for_condition_succeeded_returns(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow(
            "quick", [{"name": "a", "noop": {}}, {"name": "b", "sleep": {"duration": "500ms"}}]
        ),
        namespace,
    )
    cluster.kubectl(
        "-n", namespace, "wait", "--for=condition=Succeeded", "workflow/quick", "--timeout=20s"
    )
    table = cluster.kubectl("-n", namespace, "get", "workflows").stdout
    assert "Succeeded" in table and "2/2" in table
    # status.phase is a selectable field: the API server filters on it.
    cluster.apply(workflow("later", [{"name": "nap", "sleep": {"duration": "1h"}}]), namespace)
    wait_for_phase(cluster, namespace, "later", "Sleeping")
    selected = cluster.kubectl(
        "-n", namespace, "get", "cbwf", "--field-selector", "status.phase=Succeeded", "-o", "name"
    ).stdout.split()
    assert selected == ["workflow.cerebelum.io/quick"]


def test_failure_is_visible_to_kubectl_wait_and_events(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow(
            "broken",
            [
                {
                    "name": "a",
                    "fail": {"errorClass": "Boom", "message": "it broke", "retryable": False},
                }
            ],
        ),
        namespace,
    )
    cluster.kubectl(
        "-n",
        namespace,
        "wait",
        "--for=condition=Succeeded=False",
        "workflow/broken",
        "--timeout=20s",
    )
    obj = get(cluster, namespace, "broken")
    assert obj["status"]["phase"] == "Failed"
    assert "it broke" in obj["status"]["message"]
    events = cluster.kubectl(
        "-n",
        namespace,
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=broken",
        "-o",
        'jsonpath={range .items[*]}{.reason}: {.message}{"\\n"}{end}',
    ).stdout
    # One Event for the reconciliation that failed it, naming the step's failure too.
    assert events.strip().splitlines() == [
        "WorkflowFailed: step a failed: Boom: it broke (also: StepFailed: step a failed: Boom: "
        "it broke)"
    ]


def test_approval_with_kubectl_annotate(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow(
            "gate",
            [
                {"name": "go_live", "approval": {"timeout": "10m"}},
                {"name": "after", "noop": {"with": {"v": "${{ steps.go_live.output.ticket }}"}}},
            ],
        ),
        namespace,
    )
    waiting = wait_for_phase(cluster, namespace, "gate", "WaitingForApproval")
    assert waiting["status"]["steps"]["go_live"]["approval"]["deadline"]
    cluster.kubectl(
        "-n",
        namespace,
        "annotate",
        "workflow",
        "gate",
        "cerebelum.io/approve=go_live",
        "cerebelum.io/reason=change 42 approved",
        'cerebelum.io/approval-data={"ticket": 42}',
    )
    done = wait_for_phase(cluster, namespace, "gate", "Succeeded")
    approval = done["status"]["steps"]["go_live"]["approval"]
    assert approval["decision"] == "Approved" and approval["reason"] == "change 42 approved"
    assert done["status"]["steps"]["after"]["output"] == {"v": 42}
    # Removed right after the status write that recorded the decision.
    eventually(
        lambda: (
            not any(
                k.startswith("cerebelum.io/")
                for k in get(cluster, namespace, "gate")["metadata"].get("annotations", {})
            )
        )
    )


def test_rejection_fails_the_workflow(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow("gate", [{"name": "go_live", "approval": {}}, {"name": "after", "noop": {}}]),
        namespace,
    )
    wait_for_phase(cluster, namespace, "gate", "WaitingForApproval")
    cluster.kubectl(
        "-n",
        namespace,
        "annotate",
        "workflow",
        "gate",
        "cerebelum.io/reject=go_live",
        "cerebelum.io/reason=not during the freeze",
    )
    done = wait_for_phase(cluster, namespace, "gate", "Failed")
    assert done["status"]["steps"]["go_live"]["approval"]["decision"] == "Rejected"
    assert "not during the freeze" in done["status"]["message"]
    assert done["status"]["steps"]["after"]["phase"] == "Cancelled"


def test_approval_timeout_follows_on_timeout(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow(
            "gate",
            [
                {
                    "name": "go_live",
                    "approval": {"timeout": "1s", "onTimeout": "Goto", "timeoutGoto": "escalate"},
                },
                {"name": "deploy", "noop": {}},
                {"name": "escalate", "noop": {"with": {"paged": True}}},
            ],
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "gate", "Succeeded", timeout=20)
    steps = done["status"]["steps"]
    assert steps["go_live"]["approval"]["decision"] == "TimedOut"
    assert steps["deploy"]["phase"] == "Skipped"
    assert steps["escalate"]["output"] == {"paged": True}


def test_retry_with_backoff_succeeds_and_fails(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    retry = {"limit": 3, "backoff": {"delay": "200ms", "factor": 2}}
    cluster.apply(
        workflow("flaky", [{"name": "call", "fail": {"times": 2}, "retry": retry}]), namespace
    )
    cluster.apply(workflow("dead", [{"name": "call", "fail": {}, "retry": retry}]), namespace)
    ok = wait_for_phase(cluster, namespace, "flaky", "Succeeded")
    assert ok["status"]["steps"]["call"]["attempts"] == 3
    dead = wait_for_phase(cluster, namespace, "dead", "Failed", timeout=20)
    call = dead["status"]["steps"]["call"]
    assert call["attempts"] == 4 and call["error"]["errorClass"] == "Transient"
    # 200ms + 400ms + 800ms of backoff at least between the first and the last attempt
    spent = (parse_time(call["lastAttemptAt"]) - parse_time(call["startedAt"])).total_seconds()
    assert spent >= 1.4


def test_diverge_loop_runs_and_the_visit_cap_stops_a_runaway(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow(
            "loop",
            [
                {"name": "count", "noop": {"with": {"n": "${{ step.visit }}"}}},
                {
                    "name": "check",
                    "noop": {},
                    "next": [{"when": "steps.count.output.n < 4", "goto": "count"}],
                },
            ],
        ),
        namespace,
    )
    cluster.apply(
        workflow(
            "runaway", [{"name": "spin", "noop": {}, "next": [{"goto": "spin"}]}], maxStepVisits=25
        ),
        namespace,
    )
    done = wait_for_phase(cluster, namespace, "loop", "Succeeded")
    assert done["status"]["steps"]["count"]["visits"] == 4
    failed = wait_for_phase(cluster, namespace, "runaway", "Failed")
    assert "maxStepVisits=25" in failed["status"]["message"]
    assert failed["status"]["conditions"][0]["reason"] == "Failed"


def test_cancel_by_annotation_stops_a_sleeping_workflow_at_once(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(workflow("long", [{"name": "nap", "sleep": {"duration": "1h"}}]), namespace)
    wait_for_phase(cluster, namespace, "long", "Sleeping")
    cluster.kubectl("-n", namespace, "annotate", "workflow", "long", "cerebelum.io/cancel=true")
    done = wait_for_phase(cluster, namespace, "long", "Cancelled", timeout=10)
    assert done["status"]["steps"]["nap"]["phase"] == "Cancelled"
    assert "nextWakeAt" not in done["status"]


def test_operator_restart_loses_no_sleeping_workflow(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    names = [f"sleeper-{i}" for i in range(20)]
    items = [
        workflow(n, [{"name": "nap", "sleep": {"duration": "4s"}}, {"name": "after", "noop": {}}])
        for n in names
    ]
    # A gate waiting an hour: the restarted operator takes a waiting workflow's timer from
    # status without reconciling it, unless there is input for it, as this approval given
    # while the operator is down.
    gate = [{"name": "gate", "approval": {"timeout": "1h"}}, {"name": "after", "noop": {}}]
    items.append(workflow("gated", gate))
    cluster.apply({"apiVersion": "v1", "kind": "List", "items": items}, namespace)
    for n in names:
        wait_for_phase(cluster, namespace, n, "Sleeping")
    wait_for_phase(cluster, namespace, "gated", "WaitingForApproval")
    operator.kill()
    for n in names:
        assert get(cluster, namespace, n)["status"]["phase"] == "Sleeping"
    cluster.kubectl("-n", namespace, "annotate", "workflow", "gated", "cerebelum.io/approve=gate")
    operator.start()
    for n in names:
        done = wait_for_phase(cluster, namespace, n, "Succeeded", timeout=30)
        nap = done["status"]["steps"]["nap"]
        assert parse_time(nap["finishedAt"]) >= parse_time(nap["sleepUntil"]), f"{n} woke early"
    approved = wait_for_phase(cluster, namespace, "gated", "Succeeded", timeout=30)
    assert approved["status"]["steps"]["gate"]["phase"] == "Succeeded"


def test_actions_run_as_tasks_after_their_attempt_is_recorded(
    cluster: Cluster, namespace: str, tmp_path: Path, crds: None
) -> None:
    """The path every action with I/O takes: status records the attempt, then it runs,
    so a watcher sees the step Running before it sees it Succeeded."""
    operator = OperatorProcess(
        cluster,
        namespace,
        tmp_path / "operator.log",
        env={"CEREBELUM_INLINE_LOCAL_ACTIONS": "false"},
    )
    operator.start()
    watch = cluster.kubectl_watch(
        "-n", namespace, "get", "workflows", "-o", 'jsonpath={.status.steps.a.phase}{"\\n"}'
    )
    try:
        cluster.apply(
            workflow(
                "tasks",
                [
                    {"name": "a", "noop": {"with": {"v": 1}}},
                    {
                        "name": "b",
                        "fail": {"times": 1},
                        "retry": {"limit": 2, "backoff": {"delay": "100ms"}},
                    },
                    {
                        "name": "c",
                        "noop": {"with": {"n": "${{ step.attempt }}"}},
                        "poll": {"until": "output.n >= 2", "interval": "100ms", "maxAttempts": 5},
                    },
                    {
                        "name": "d",
                        "noop": {"with": {"sum": "${{ steps.a.output.v + steps.c.output.n }}"}},
                    },
                ],
            ),
            namespace,
        )
        done = wait_for_phase(cluster, namespace, "tasks", "Succeeded")
        steps = done["status"]["steps"]
        assert (steps["b"]["attempts"], steps["c"]["attempts"], steps["d"]["output"]) == (
            2,
            2,
            {"sum": 3},
        )
    finally:
        operator.stop()
        watch.terminate()
    seen = [line.strip() for line in watch.communicate(timeout=10)[0].splitlines() if line.strip()]
    assert "Running" in seen and seen.index("Running") < seen.index("Succeeded"), seen
