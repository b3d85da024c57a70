"""WorkflowTemplates on the real API server: kubectl refuses bad inputs (through the
webhook), the operator applies defaults and freezes the steps, and `cerebelum submit`
runs one."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from tests.harness import Cluster
from tests.harness.cli import cerebelum
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import get, wait_for_phase, wait_for_step_phase

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/template.yaml"
TEMPLATE, WORKFLOW = list(yaml.safe_load_all(EXAMPLE.read_text()))


def from_template(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "cerebelum.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"templateRef": {"name": "release"}, "inputs": inputs},
    }


def test_the_example_runs_with_its_defaults_applied(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.kubectl("-n", namespace, "apply", "-f", str(EXAMPLE))
    done = wait_for_phase(cluster, namespace, "release-1-4-2", ("Succeeded", "Failed"), timeout=30)
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    spec = done["spec"]
    assert spec["inputs"] == {"version": "1.4.2", "environment": "staging", "canaryPercent": 10}
    template = cluster.kubectl_json("-n", namespace, "get", "workflowtemplate", "release")
    assert spec["templateRef"]["resourceVersion"] == template["metadata"]["resourceVersion"]
    steps = done["status"]["steps"]
    assert steps["canary"]["output"] == {"release": "1.4.2", "to": "staging", "percent": 10}
    assert steps["report"]["output"] == {"outcome": "Succeeded"}
    events = cluster.kubectl("-n", namespace, "get", "events", "-o", "json").stdout
    assert "TemplateResolved" in events


def test_editing_or_deleting_the_template_does_not_change_a_running_workflow(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    slow = copy.deepcopy(TEMPLATE)
    slow["spec"]["steps"][1]["sleep"]["duration"] = "4s"
    cluster.apply(slow, namespace)
    cluster.apply(from_template("first", {"version": "2.0.0"}), namespace)
    wait_for_step_phase(cluster, namespace, "first", "bake", "Sleeping", timeout=20)
    edited = copy.deepcopy(slow)
    edited["spec"]["steps"][2]["noop"]["with"] = {"released": "tampered"}
    cluster.apply(edited, namespace)
    cluster.apply(from_template("second", {"version": "2.0.1"}), namespace)
    wait_for_step_phase(cluster, namespace, "second", "bake", "Sleeping", timeout=20)
    cluster.kubectl("-n", namespace, "delete", "workflowtemplate", "release")
    first = wait_for_phase(cluster, namespace, "first", ("Succeeded", "Failed"), timeout=30)
    second = wait_for_phase(cluster, namespace, "second", ("Succeeded", "Failed"), timeout=30)
    assert first["status"]["steps"]["promote"]["output"] == {"released": "2.0.0"}
    assert second["status"]["steps"]["promote"]["output"] == {"released": "tampered"}
    assert (
        first["spec"]["templateRef"]["resourceVersion"]
        != (second["spec"]["templateRef"]["resourceVersion"])
    )


def test_without_the_webhook_bad_inputs_or_a_missing_template_fail_the_workflow(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(TEMPLATE, namespace)
    cluster.apply(from_template("bad", {"version": "latest", "canaryPercent": "ten"}), namespace)
    failed = wait_for_phase(cluster, namespace, "bad", "Failed", timeout=20)
    message = failed["status"]["message"]
    assert "spec.inputs.version: must match" in message
    assert "spec.inputs.canaryPercent: must be of type integer" in message
    assert failed["status"]["conditions"][0]["reason"] == "InvalidInputs"
    assert "steps" not in get(cluster, namespace, "bad")["spec"], "nothing was copied"
    ghost = from_template("ghost", {"version": "1.0.0"})
    ghost["spec"]["templateRef"]["name"] = "nowhere"
    cluster.apply(ghost, namespace)
    failed = wait_for_phase(cluster, namespace, "ghost", "Failed", timeout=20)
    assert "there is no WorkflowTemplate nowhere" in failed["status"]["message"]


def test_kubectl_apply_refuses_a_bad_input_naming_the_field(
    cluster: Cluster, namespace: str, webhook_operator: OperatorProcess
) -> None:
    cluster.apply(TEMPLATE, namespace)
    bad = from_template("bad", {"version": "1.0.0", "environment": "mars"})
    refused = cluster.kubectl(
        "-n", namespace, "apply", "-f", "-", stdin=json.dumps(bad), check=False
    )
    assert refused.returncode != 0
    assert "spec.inputs.environment: must be one of ['staging', 'production']" in refused.stderr
    cluster.apply(from_template("good", {"version": "1.0.0"}), namespace)
    done = wait_for_phase(cluster, namespace, "good", ("Succeeded", "Failed"), timeout=30)
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")


def test_cerebelum_submit_runs_a_template_and_templates_lists_it(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    cluster.apply(TEMPLATE, namespace)
    listed = cerebelum(cluster, namespace, "templates")
    assert listed.returncode == 0, listed.stderr
    assert "release" in listed.stdout and "version*:string" in listed.stdout
    refused = cerebelum(cluster, namespace, "submit", "--from", "template/release")
    assert refused.returncode != 0
    assert "spec.inputs.version: required, and not given" in refused.stderr
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("version: 3.1.0\nenvironment: staging\n")
    ran = cerebelum(
        cluster,
        namespace,
        "submit",
        "--from",
        "template/release",
        "--inputs",
        str(inputs),
        "-p",
        "environment=production",
        "-p",
        "canaryPercent=50",
        "--watch",
        "--timeout",
        "30",
    )
    assert ran.returncode == 0, ran.stderr
    name = ran.stdout.split()[1].split("/")[1]
    assert name.startswith("release-")
    done = get(cluster, namespace, name)
    assert done["status"]["steps"]["canary"]["output"] == {
        "release": "3.1.0",
        "to": "production",
        "percent": 50,
    }
