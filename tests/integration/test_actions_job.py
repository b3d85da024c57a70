"""The job action through the real operator; the test plays job controller and kubelet."""

from __future__ import annotations

import pytest

from tests.fakes import job_controller as jobs
from tests.harness import Cluster
from tests.harness.cluster import eventually
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import get, wait_for_phase, wait_for_step_phase, workflow

SECRET = "job-secret-value-never-read-by-the-operator"


@pytest.fixture(autouse=True)
def _fake_controller_needed(cluster: Cluster) -> None:
    if not cluster.is_local:
        pytest.skip("plays the job controller, which a real cluster runs itself")


def job_step(**extra: object) -> dict[str, object]:
    return {
        "name": "configure",
        "job": {
            "image": "registry.example.com/configure:1.0",
            "args": ["--host", "${{ inputs.host }}"],
            "env": {"TARGET": "${{ inputs.host }}"},
            "envFromSecrets": [
                {"name": "API_TOKEN", "secretKeyRef": {"name": "api", "key": "token"}}
            ],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        },
        **extra,
    }


def test_job_success_with_json_output(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(workflow("cfg", [job_step()], inputs={"host": "10.0.0.5"}), namespace)
    [name] = jobs.wait_for_jobs(cluster, namespace, "cfg", 1)
    job = cluster.kubectl_json("-n", namespace, "get", "job", name)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--host", "10.0.0.5"]
    env = {e["name"]: e for e in container["env"]}
    assert env["TARGET"]["value"] == "10.0.0.5"
    assert env["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "api", "key": "token"}
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Workflow",
        "cfg",
        get(cluster, namespace, "cfg")["metadata"]["uid"],
    )
    assert get(cluster, namespace, "cfg")["status"]["steps"]["configure"]["phase"] == "Running"
    jobs.complete(cluster, namespace, name, output={"configured": True, "packages": 12})
    done = wait_for_phase(cluster, namespace, "cfg", ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", done["status"]["message"]
    assert done["status"]["steps"]["configure"]["output"] == {"configured": True, "packages": 12}


def test_job_failure_then_success_on_retry(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    retry = {"limit": 2, "retryOn": ["JobFailed"], "backoff": {"delay": "100ms"}}
    cluster.apply(workflow("again", [job_step(retry=retry)], inputs={"host": "h"}), namespace)
    [first] = jobs.wait_for_jobs(cluster, namespace, "again", 1)
    jobs.fail(cluster, namespace, first)
    names = jobs.wait_for_jobs(cluster, namespace, "again", 2)
    assert names[0] == first and names[1] != first, "each attempt runs its own Job"
    jobs.complete(cluster, namespace, names[1])
    done = wait_for_phase(cluster, namespace, "again", ("Succeeded", "Failed"))
    step = done["status"]["steps"]["configure"]
    assert done["status"]["phase"] == "Succeeded" and step["attempts"] == 2
    assert step["output"] == {"job": names[1], "succeeded": True}


def test_job_failure_is_fatal_by_default(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(workflow("broken", [job_step()], inputs={"host": "h"}), namespace)
    [name] = jobs.wait_for_jobs(cluster, namespace, "broken", 1)
    jobs.fail(
        cluster,
        namespace,
        name,
        reason="DeadlineExceeded",
        message="Job was active longer than specified",
    )
    done = wait_for_phase(cluster, namespace, "broken", "Failed")
    error = done["status"]["steps"]["configure"]["error"]
    assert error["errorClass"] == "JobFailed"
    assert "DeadlineExceeded" in error["message"] and name in error["message"]


def test_job_timeout_deletes_the_job(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(workflow("slow", [job_step(timeout="1s")], inputs={"host": "h"}), namespace)
    jobs.wait_for_jobs(cluster, namespace, "slow", 1)
    done = wait_for_phase(cluster, namespace, "slow", "Failed", timeout=20)
    assert done["status"]["steps"]["configure"]["error"]["errorClass"] == "Timeout"
    eventually(lambda: jobs.jobs_of(cluster, namespace, "slow") == [], timeout=10)


def test_operator_restart_adopts_the_running_job(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(workflow("adopt", [job_step()], inputs={"host": "h"}), namespace)
    [name] = jobs.wait_for_jobs(cluster, namespace, "adopt", 1)
    wait_for_step_phase(cluster, namespace, "adopt", "configure", "Running")
    operator.kill()
    operator.start()
    jobs.complete(cluster, namespace, name, output={"ok": 1})
    done = wait_for_phase(cluster, namespace, "adopt", ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded"
    assert [j["metadata"]["name"] for j in jobs.jobs_of(cluster, namespace, "adopt")] == [name]
    assert SECRET not in operator.logs()
