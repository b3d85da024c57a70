"""Callback waits from Python: ``@callback`` and ``callback_step`` render what a user would
write by hand, the manifest passes the CRD's model, and the local runner takes scripted
callbacks as it takes scripted approvals."""

from __future__ import annotations

from typing import Any

import pytest

from cerebelum import (
    Context,
    DefinitionError,
    callback,
    callback_step,
    http_step,
    output_step,
    step,
    workflow,
)
from cerebelum.api.spec import WorkflowSpec

SCHEMA = {"type": "object", "required": ["artifact"]}


@step
@callback(timeout=1800, heartbeat_timeout=60, schema=SCHEMA)
async def build(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"queued": True}


trigger = callback(timeout=600)(
    http_step(
        "trigger",
        "https://ci.example/builds",
        method="POST",
        body={"callback": "${{ callback.url }}"},
    )
)


def _steps(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    WorkflowSpec.model_validate(manifest["spec"])  # what the API server would accept
    return {s["name"]: s for s in manifest["spec"]["steps"]}


def test_callback_renders_after_the_action() -> None:
    @workflow
    def ci(wf: Any) -> None:
        wf.timeline(trigger >> build >> callback_step("manual_ok", timeout=300))

    s = _steps(ci.render())
    assert s["trigger"]["callback"] == {"timeout": "10m"}
    assert s["trigger"]["http"]["body"] == {"callback": "${{ callback.url }}"}
    assert s["build"]["callback"] == {"timeout": "30m", "heartbeatTimeout": "1m", "schema": SCHEMA}
    assert list(s["build"]) == ["name", "python", "callback"]  # the wait comes after the action
    assert s["manual_ok"] == {"name": "manual_ok", "callback": {"timeout": "5m"}}


def test_a_non_positive_timeout_is_refused_at_definition() -> None:
    with pytest.raises(DefinitionError, match="must be positive"):
        callback(timeout=0)


async def test_the_local_runner_takes_scripted_callbacks() -> None:
    # The action hands out the URL (a local run's URL is served by nobody: it is scripted).
    handed = callback(timeout=600)(output_step("trigger", {"url": "${{ callback.url }}"}))

    @workflow
    def local(wf: Any) -> None:
        wf.timeline(
            handed >> output_step("deploy", {"artifact": "${{ steps.trigger.output.artifact }}"})
        )

    done = await local.execute({}, callbacks={"trigger": {"artifact": "a.tgz"}})
    assert done.status == "completed"
    assert done.outputs["trigger"] == {"artifact": "a.tgz"}
    assert done.outputs["deploy"] == {"artifact": "a.tgz"}


async def test_without_a_script_a_wait_with_no_timeout_stops_the_run_and_says_so() -> None:
    @workflow
    def forever(wf: Any) -> None:
        wf.timeline(callback_step("signal"))

    result = await forever.execute({})
    assert result.status == "waiting_for_callback" and result.waiting_for == ["signal"]
    failed = await forever.execute({}, callbacks={"signal": {"fail": "no"}}, raise_on_failure=False)
    assert failed.status == "failed" and "CallbackFailed: no" in (failed.error or "")


async def test_an_unscripted_wait_with_a_timeout_times_out_on_the_virtual_clock() -> None:
    @workflow
    def late(wf: Any) -> None:
        wf.timeline(callback_step("signal", timeout=3600))

    result = await late.execute({}, raise_on_failure=False)
    assert result.status == "failed" and "CallbackTimeout" in (result.error or "")


def test_approval_options_render_for_teams() -> None:
    from cerebelum import approval_step

    gate = approval_step(
        "go", timeout_minutes=30, required=2, options=["canary", "full"], allow_self_approval=False
    )

    @workflow
    def team(wf: Any) -> None:
        wf.timeline(gate)

    assert _steps(team.render())["go"]["approval"] == {
        "timeout": "30m",
        "onTimeout": "Fail",
        "required": 2,
        "options": ["canary", "full"],
        "allowSelfApproval": False,
    }
