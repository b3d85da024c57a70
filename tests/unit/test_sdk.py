"""The Python DSL renders what a user would write by hand, and refuses mistakes at import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cerebelum import (
    Context,
    DefinitionError,
    approval,
    approval_step,
    back_to,
    cel,
    http_step,
    poll,
    retry,
    skip_to,
    sleep,
    sleep_step,
    step,
    tcp_step,
    workflow,
)
from cerebelum.cli import main as cli_main
from cerebelum.sdk import FUNCTIONS
from cerebelum.sdk.loader import load_object

ROOT = Path(__file__).resolve().parents[2]
MODULE = __name__


@step
async def fetch(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"url": inputs["url"], "attempt": context.attempt}


@step
async def left(context: Context, fetch: dict[str, Any]) -> dict[str, Any]:
    return {"side": "left"}


@step
async def right(context: Context, fetch: dict[str, Any]) -> dict[str, Any]:
    return {"side": "right"}


@step(queue="reports", timeout=90)
async def join(context: Context, left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    return {"both": [left["side"], right["side"]]}


@step
@sleep(seconds=60)
async def wait_time(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    return inputs


@step
@poll(condition=lambda r: r.get("ip") is not None, interval=5, max_attempts=20)
async def wait_for_ip(context: Context, fetch: dict[str, Any]) -> dict[str, Any]:
    return {"ip": None}


@step
@approval(type="manual", timeout_minutes=60, groups=["ops"])
async def wait_approval(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"approved": True}


@step
@retry(max_attempts=4, delay=2, backoff=3, on=[ConnectionError, "Timeout"])
async def flaky(context: Context) -> dict[str, Any]:
    return {}


@step
async def finish(context: Context) -> dict[str, Any]:
    return {}


def steps_of(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in manifest["spec"]["steps"]}


def test_a_timeline_renders_python_steps_with_their_arguments() -> None:
    @workflow(inputs={"url": "https://example.com"})
    def chain(wf: Any) -> None:
        wf.timeline(fetch >> wait_for_ip >> finish)

    manifest = chain.render({"extra": 1}, namespace="ops")
    assert manifest["apiVersion"] == "cerebelum.io/v1alpha1" and manifest["kind"] == "Workflow"
    assert manifest["metadata"] == {"name": "chain", "namespace": "ops"}
    assert manifest["spec"]["inputs"] == {"url": "https://example.com", "extra": 1}
    s = steps_of(manifest)
    assert "dependsOn" not in s["fetch"]  # a plain chain keeps the list order
    assert s["fetch"]["python"] == {
        "function": f"{MODULE}:fetch",
        "queue": "default",
        "arguments": {"inputs": "${{ inputs }}"},
    }
    assert s["wait_for_ip"]["python"]["arguments"] == {"fetch": "${{ steps.fetch.output }}"}
    assert s["finish"]["python"] == {"function": f"{MODULE}:finish", "queue": "default"}


def test_parallel_groups_become_depends_on() -> None:
    @workflow
    def fan(wf: Any) -> None:
        wf.timeline(fetch >> [left, right] >> join)

    s = steps_of(fan.render())
    assert s["fetch"]["dependsOn"] == []
    assert s["left"]["dependsOn"] == ["fetch"] and s["right"]["dependsOn"] == ["fetch"]
    assert s["join"]["dependsOn"] == ["left", "right"]
    assert s["join"]["python"]["queue"] == "reports" and s["join"]["timeout"] == "90s"


def test_the_promised_decorators_render_to_sleep_poll_approval_and_retry() -> None:
    @workflow
    def waits(wf: Any) -> None:
        wf.timeline(fetch >> wait_time >> wait_for_ip >> wait_approval >> flaky)

    s = steps_of(waits.render())
    assert s["wait_time"]["sleep"] == {"duration": "1m"}
    assert s["wait_for_ip"]["poll"] == {"until": "checks.poll", "interval": "5s", "maxAttempts": 20}
    assert s["wait_for_ip"]["python"]["checks"] == ["poll"]
    assert FUNCTIONS[f"{MODULE}:wait_for_ip"].checks["poll"]({"ip": "1.2.3.4"}) is True
    assert s["wait_approval"]["approval"] == {
        "timeout": "1h",
        "onTimeout": "Fail",
        "approvers": {"groups": ["ops"]},
    }
    assert s["flaky"]["retry"] == {
        "limit": 3,  # max_attempts counts the first attempt; limit counts retries
        "backoff": {"delay": "2s", "factor": 3},
        "retryOn": ["ConnectionError", "Timeout"],
    }


def test_decorators_work_above_step_too_and_poll_takes_cel() -> None:
    probe = poll("output.ready == true", interval=0.5, timeout=30)(
        http_step("probe", "https://svc/health")
    )

    @workflow
    def declared(wf: Any) -> None:
        wf.timeline(probe)

    s = steps_of(declared.render())
    assert s["probe"]["poll"] == {
        "until": "output.ready == true",
        "interval": "500ms",
        "timeout": "30s",
    }
    assert s["probe"]["http"] == {"url": "https://svc/health", "method": "GET"}


@poll(lambda r: r["n"] > 1, interval=1, max_attempts=3)
@step
async def decorated_above(context: Context) -> dict[str, Any]:
    return {"n": context.attempt}


def test_a_decorator_above_step_reaches_the_worker_too() -> None:
    registered = FUNCTIONS[f"{MODULE}:decorated_above"]
    assert registered is decorated_above and registered.poll is not None
    assert registered.checks["poll"]({"n": 2}) is True


def test_diverge_maps_patterns_to_retry_and_next_rules() -> None:
    @workflow
    def routed(wf: Any) -> None:
        wf.timeline(fetch >> wait_for_ip >> finish)
        wf.diverge(wait_for_ip, {"timeout": "retry", "error": "failed"})
        wf.diverge(finish, {"ok": back_to(fetch)})
        wf.diverge(fetch, {cel("output.url == ''"): skip_to(finish), "error": "continue"})

    s = steps_of(routed.render())
    assert s["wait_for_ip"]["retry"]["retryOn"] == ["timeout", "Timeout", "TimeoutError"]
    assert s["wait_for_ip"]["retry"]["limit"] == 9
    assert s["wait_for_ip"]["next"] == [
        {"when": "error != null", "fail": "step wait_for_ip: error (wf.diverge)"}
    ]
    assert s["finish"]["next"] == [{"when": "error == null", "goto": "fetch"}]
    assert s["fetch"]["next"] == [
        {"when": "output.url == ''", "goto": "finish"},
        {"when": "error != null", "continue": True},
    ]


def test_a_retry_object_tunes_a_diverge_retry() -> None:
    @workflow
    def tuned(wf: Any) -> None:
        wf.timeline(fetch >> finish)
        wf.diverge(fetch, {"error": retry(max_attempts=2, delay=0.25)})

    assert steps_of(tuned.render())["fetch"]["retry"] == {
        "limit": 1,
        "backoff": {"delay": "250ms", "factor": 2.0},
    }


def test_branch_with_cel_and_with_a_python_condition() -> None:
    check = http_step("check", "https://svc/status")

    @workflow
    def branching(wf: Any) -> None:
        wf.timeline(fetch >> check >> left >> right >> finish)
        wf.branch(check, "output.status == 200", when_true=left, when_false=right)
        wf.branch(fetch, lambda r: r["url"].startswith("https"), when_false=finish)

    s = steps_of(branching.render())
    assert s["check"]["next"] == [
        {"when": "error == null && (output.status == 200)", "goto": "left"},
        {"when": "error == null", "goto": "right"},
    ]
    assert s["fetch"]["python"]["checks"] == ["branch"]
    assert s["fetch"]["next"] == [
        {"when": "error == null && (checks.branch)", "continue": True},
        {"when": "error == null", "goto": "finish"},
    ]
    assert FUNCTIONS[f"{MODULE}:fetch"].checks["branch"]({"url": "https://x"}) is True
    del FUNCTIONS[f"{MODULE}:fetch"].checks["branch"]  # keep other tests' renders unchanged


def test_a_workflow_of_declarative_steps_needs_no_worker() -> None:
    @workflow(name="No_Code Deploy")
    def declarative(wf: Any) -> None:
        wf.timeline(
            tcp_step("ssh", "${{ inputs.host }}", 22, timeout=5)
            >> sleep_step("settle", seconds=30)
            >> approval_step("go_live", timeout_minutes=15, on_timeout="approve")
        )

    manifest = declarative.render({"host": "10.0.0.1"})
    assert manifest["metadata"]["name"] == "no-code-deploy"
    s = steps_of(manifest)
    assert not any("python" in x for x in s.values())
    assert s["ssh"]["tcp"] == {"host": "${{ inputs.host }}", "port": 22, "connectTimeout": "5s"}
    assert s["settle"] == {"name": "settle", "sleep": {"duration": "30s"}}
    assert s["go_live"]["approval"] == {"timeout": "15m", "onTimeout": "Approve"}


async def test_a_step_called_directly_returns_cerebelums_envelope() -> None:
    context = Context(workflow_name="w", step_name="fetch", attempt=2)
    assert await fetch(context, inputs={"url": "u"}) == {"ok": {"url": "u", "attempt": 2}}
    assert await fetch(context, inputs={}) == {"error": "'url'"}  # the KeyError, as Cerebelum


def test_the_reference_documents_examples_render_from_their_files() -> None:
    droplet = load_object(str(ROOT / "examples/python/droplet.py") + ":deploy_workflow")
    s = steps_of(droplet.render())
    assert list(s) == [
        "create_droplet",
        "wait_for_droplet_ready",
        "verify_ssh_access",
        "go_live",
        "configure_server",
    ]
    assert s["create_droplet"]["python"]["function"] == "droplet:create_droplet"
    assert s["wait_for_droplet_ready"]["poll"]["maxAttempts"] == 30


def test_cli_render_prints_the_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    target = "examples/python/droplet.py:deploy_workflow"
    code = cli_main(["render", str(ROOT / target), "--input", "ssh_port=2222", "-o", "json"])
    assert code == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["spec"]["inputs"]["ssh_port"] == 2222
    assert cli_main(["render", str(ROOT / target), "--name", "web-1"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["metadata"]["name"] == "web-1"
    assert cli_main(["render", str(ROOT / target), "--template", "-o", "json"]) == 0
    template = json.loads(capsys.readouterr().out)
    assert template["kind"] == "WorkflowTemplate" and "properties" in template["spec"]["inputs"]


def test_cli_render_explains_a_bad_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["render", str(ROOT / "examples/python/droplet.py:create_droplet")]) == 1
    assert "is not a @workflow" in capsys.readouterr().err
    assert cli_main(["render", "no_such_module_anywhere:wf"]) == 1
    assert "cannot load no_such_module_anywhere:wf" in capsys.readouterr().err


# -- mistakes, raised at definition time with the step named --------------------------------


def test_a_sync_function_is_refused() -> None:
    def plain(context: Context) -> dict[str, Any]:
        return {}

    with pytest.raises(DefinitionError, match="step plain must be an async function"):
        step(plain)


def test_the_first_parameter_must_be_context() -> None:
    async def backwards(inputs: dict[str, Any], context: Context) -> None:
        return None

    with pytest.raises(
        DefinitionError, match="step backwards: the first parameter must be `context`"
    ):
        step(backwards)


def test_a_step_defined_in_a_function_runs_locally_but_does_not_render() -> None:
    @step
    async def nested(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"seen": inputs["x"]}

    @workflow
    def local_only(wf: Any) -> None:
        wf.timeline(nested)

    assert local_only.execute_sync({"x": 1}).final_result == {"seen": 1}
    assert local_only.validate().warnings == [
        "step nested is defined inside a function: wf.execute() runs it, a worker cannot"
    ]
    with pytest.raises(
        DefinitionError,
        match=r"step nested is defined inside a function \(test_a_step_defined_in_a_function_"
        r"runs_locally_but_does_not_render.<locals>.nested\): a worker imports steps as "
        r"module:name, so it could never find this one. Define it at the top level of "
        r"tests.unit.test_sdk; wf.execute\(\) runs it locally as it is",
    ):
        local_only.render()


def test_a_parameter_naming_no_step_is_refused() -> None:
    with pytest.raises(
        DefinitionError, match="step left has a parameter 'fetch' that names no step"
    ):

        @workflow
        def missing(wf: Any) -> None:
            wf.timeline(left >> finish)


def test_a_dependency_that_runs_later_is_a_cycle() -> None:
    with pytest.raises(
        DefinitionError, match="step left needs the output of fetch, which runs after it"
    ):

        @workflow
        def backwards(wf: Any) -> None:
            wf.timeline(left >> fetch)

    with pytest.raises(DefinitionError, match="which runs in parallel with it"):

        @workflow
        def sideways(wf: Any) -> None:
            wf.timeline(wait_time >> [fetch, left])


def test_a_step_twice_in_the_timeline_is_a_cycle() -> None:
    with pytest.raises(DefinitionError, match="step fetch appears twice in the timeline"):

        @workflow
        def loop(wf: Any) -> None:
            wf.timeline(fetch >> finish >> fetch)


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        ({"ok": back_to(finish)}, r"back_to\(finish\) must name an earlier step"),
        ({"ok": skip_to(fetch)}, r"skip_to\(fetch\) must name a later step"),
        ({"ok": "retry"}, "retry needs an error pattern"),
        ({"error": "explode"}, "diverge action 'explode' must be one of"),
        ({"error": back_to(left)}, "step left .* is not in the timeline"),
    ],
)
def test_bad_diverge_routes_are_refused(patterns: dict[Any, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):

        @workflow
        def routed(wf: Any) -> None:
            wf.timeline(fetch >> wait_for_ip >> finish)
            wf.diverge(wait_for_ip, patterns)


def test_other_definition_mistakes() -> None:
    with pytest.raises(DefinitionError, match="@poll needs max_attempts= or timeout="):
        poll(lambda r: True, interval=1)(http_step("probe", "https://x"))
    with pytest.raises(DefinitionError, match="@sleep needs exactly one of"):
        sleep(seconds=1, until="2030-01-01T00:00:00Z")  # type: ignore[call-overload]  # the misuse refused at run time
    with pytest.raises(DefinitionError, match=r"sleep\(\) needs a duration"):
        sleep()  # type: ignore[call-overload]  # the misuse refused at run time
    with pytest.raises(
        DefinitionError, match="step probe: a Python poll condition needs a Python step"
    ):
        poll(lambda r: True, interval=1, max_attempts=3)(http_step("probe", "https://x"))
    with pytest.raises(DefinitionError, match="step bad: tcp: port"):
        tcp_step("bad", "host", port=None)  # type: ignore[arg-type]

    @workflow
    def empty(wf: Any) -> None:
        pass  # refused when validated, rendered or run, as Cerebelum does; not at definition

    for use in (empty.validate, empty.render, lambda: empty.execute_sync({})):
        with pytest.raises(DefinitionError, match=r"never calls wf\.timeline"):
            use()

    check = http_step("check", "https://x")
    with pytest.raises(
        DefinitionError, match="step check is declarative, so its branch condition must be CEL"
    ):

        @workflow
        def branching(wf: Any) -> None:
            wf.timeline(check >> finish)
            wf.branch(check, lambda r: True, when_false=finish)


@step
async def boom(context: Context, fetch: dict[str, Any]) -> dict[str, Any]:
    raise ConnectionError("host down")


@step
async def tidy(context: Context, fetch: dict[str, Any]) -> dict[str, Any]:
    return {"cleaned": fetch["url"]}


def test_finally_steps_render_to_spec_finally_and_run_after_a_failure() -> None:
    @workflow(inputs={"url": "https://example.com"})
    def with_cleanup(wf: Any) -> None:
        wf.timeline(fetch >> boom)
        wf.finally_steps(tidy)

    manifest = with_cleanup.render()
    assert [s["name"] for s in manifest["spec"]["steps"]] == ["fetch", "boom"]
    assert manifest["spec"]["finally"] == [
        {
            "name": "tidy",
            "python": {
                "function": f"{MODULE}:tidy",
                "queue": "default",
                "arguments": {"fetch": "${{ steps.fetch.output }}"},
            },
        }
    ]
    result = with_cleanup.execute_sync(raise_on_failure=False)
    assert result.status == "failed"
    assert result.outputs["tidy"] == {"cleaned": "https://example.com"}
    assert result.steps_run[-1] == "tidy"


def test_a_finally_step_already_in_the_timeline_is_refused() -> None:
    with pytest.raises(DefinitionError, match="finally step fetch is already a step"):

        @workflow
        def twice(wf: Any) -> None:
            wf.timeline(fetch >> boom)
            wf.finally_steps(fetch)


def test_a_workflow_renders_as_a_template_whose_inputs_come_from_its_defaults() -> None:
    @workflow(inputs={"url": "https://example.com", "retries": 3})
    def fetcher(wf: Any) -> None:
        wf.timeline(fetch >> finish)

    manifest = fetcher.render_template(namespace="ops")
    assert manifest["kind"] == "WorkflowTemplate" and manifest["metadata"]["namespace"] == "ops"
    assert manifest["spec"]["inputs"] == {
        "properties": {
            "url": {"default": "https://example.com", "type": "string"},
            "retries": {"default": 3, "type": "integer"},
        }
    }
    assert [s["name"] for s in manifest["spec"]["steps"]] == ["fetch", "finish"]
    schema = {"properties": {"url": {"type": "string"}}, "required": ["url"]}
    assert fetcher.render_template(inputs=schema)["spec"]["inputs"] == schema
