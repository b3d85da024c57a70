"""Cerebelum's SDK, as its users write it, on ours: our equivalents of its examples and tests.

Each test is one behaviour of Cerebelum's public API (ZeaCl/cerebelum-python v0.3), written
the way its examples and smoke tests use it, run against our package with no cluster:
``wf.execute`` runs the operator's engine locally on a virtual clock.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
from pathlib import Path
from typing import Any

import pytest

import cerebelum
from cerebelum import (
    Context,
    DSLLocalExecutor,
    DSLSerializer,
    ExecutionError,
    ParallelStepGroup,
    ProgressReporter,
    StepComposition,
    StepRegistry,
    WorkflowRegistry,
    approval,
    poll,
    retry,
    sleep,
    step,
    wait_for_approval,
    workflow,
)
from cerebelum.api.durations import parse_time
from cerebelum.sdk.client import ExecutionState, execution_status
from cerebelum.sdk.loader import load_object
from cerebelum.sdk.steps import DefinitionError, WorkflowDefinitionError


def virtual_seconds(result: Any) -> float:
    return (parse_time(result.completed_at) - parse_time(result.started_at)).total_seconds()


# -- 1. execute: local, awaited or not, Cerebelum's result ------------------------------


@step
async def greet(context: Context, inputs: dict[str, Any]) -> str:
    return f"Hello, {inputs.get('name', 'World')}!"


@step
async def shout(context: Context, greet: str) -> dict[str, Any]:
    return {"ok": greet.upper()}


@workflow
def hello_workflow(wf: Any) -> None:
    wf.timeline(greet >> shout)


async def test_execute_awaited_gives_cerebelums_result() -> None:
    result = await hello_workflow.execute({"name": "Alice"})
    assert result.status == "completed"
    assert result.output == {"ok": "HELLO, ALICE!"}  # Cerebelum: the last step's envelope
    assert result.final_result == "HELLO, ALICE!"
    assert result.outputs == {"greet": "Hello, Alice!", "shout": "HELLO, ALICE!"}
    assert result.steps_run == ["greet", "shout"]
    assert result.execution_id and result.error is None


def test_execute_is_a_real_coroutine_for_asyncio_run_and_create_task() -> None:
    """Cerebelum's ``execute`` is an ``async def``: the usual ways of running one work."""
    result = asyncio.run(hello_workflow.execute({"name": "Carlos"}))
    assert result.final_result == "HELLO, CARLOS!"

    async def two_at_once() -> list[Any]:
        tasks = [asyncio.create_task(hello_workflow.execute({"name": name})) for name in ("a", "b")]
        return [t.final_result for t in await asyncio.gather(*tasks)]

    assert asyncio.run(two_at_once()) == ["HELLO, A!", "HELLO, B!"]


def test_execute_sync_runs_at_once_outside_an_event_loop() -> None:
    assert hello_workflow.execute_sync({"name": "Carlos"}).final_result == "HELLO, CARLOS!"


async def test_execute_sync_inside_a_loop_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"result = await wf.execute"):
        hello_workflow.execute_sync({})


async def test_dsl_local_executor_runs_a_workflow() -> None:
    result = await DSLLocalExecutor().execute(hello_workflow, {"name": "Eve"})
    assert result.final_result == "HELLO, EVE!"


# -- 2. the envelope: {"ok": v} passes v on, {"error": r} fails with r --------------------


@step
async def validate_age(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    if inputs["age"] < 18:
        return {"error": "too_young"}
    return {"ok": {"age": inputs["age"]}}


@step
async def welcome(context: Context, validate_age: dict[str, Any]) -> dict[str, Any]:
    return {"welcomed_at_age": validate_age["age"]}  # the value, not {"ok": ...}


@workflow
def onboarding(wf: Any) -> None:
    wf.timeline(validate_age >> welcome)


async def test_ok_passes_its_value_on_and_error_fails_the_step() -> None:
    result = await onboarding.execute({"age": 30})
    assert result.outputs["validate_age"] == {"age": 30}
    assert result.final_result == {"welcomed_at_age": 30}
    with pytest.raises(ExecutionError, match=r"step 'validate_age'.*too_young") as failure:
        await onboarding.execute({"age": 15})
    assert failure.value.result.status == "failed"
    assert failure.value.result.steps_run == ["validate_age"]
    quiet = await onboarding.execute({"age": 15}, raise_on_failure=False)
    assert quiet.status == "failed" and "too_young" in (quiet.error or "")


# -- 3. a list timeline is sequential ----------------------------------------------------


@step
async def fetch_price(context: Context, inputs: dict[str, Any]) -> int:
    return 10


@step
async def fetch_quantity(context: Context, fetch_price: int) -> dict[str, int]:
    return {"price": fetch_price, "quantity": 3}


@step
async def calculate_total(context: Context, fetch_quantity: dict[str, int]) -> int:
    return fetch_quantity["price"] * fetch_quantity["quantity"]


@workflow
def cart_workflow(wf: Any) -> None:
    wf.timeline([fetch_price, fetch_quantity, calculate_total])


async def test_a_list_timeline_runs_in_order() -> None:
    result = await cart_workflow.execute({})
    assert result.final_result == 30
    assert result.steps_run == ["fetch_price", "fetch_quantity", "calculate_total"]
    assert [s["name"] for s in cart_workflow.render()["spec"]["steps"]] == result.steps_run
    assert "dependsOn" not in cart_workflow.render()["spec"]["steps"][1]


# -- 4. diverge to a step, with from_step= ------------------------------------------------


@step
async def check_user(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    if inputs["age"] < 18:
        return {"error": "user_too_young"}
    return {"tier": "standard"}


@step
async def send_welcome(context: Context, check_user: dict[str, Any]) -> str:
    return "welcome"


@step
async def send_rejection(context: Context, inputs: dict[str, Any]) -> str:
    return f"sorry, {inputs['age']} is too young"


@step
async def log_rejection(context: Context, send_rejection: str) -> dict[str, str]:
    return {"logged": send_rejection}


@workflow
def user_onboarding(wf: Any) -> None:
    wf.timeline(check_user >> send_welcome)
    wf.diverge(from_step=check_user, patterns={"user_too_young": send_rejection >> log_rejection})


async def test_diverge_routes_an_error_to_a_handler_off_the_timeline() -> None:
    young = await user_onboarding.execute({"age": 12})
    assert young.status == "completed"  # the diverge handled the error
    assert young.steps_run == ["check_user", "send_rejection", "log_rejection"]
    assert young.final_result == {"logged": "sorry, 12 is too young"}
    assert young.workflow_status is not None
    assert young.workflow_status.steps["send_welcome"].phase == "Skipped"
    adult = await user_onboarding.execute({"age": 40})
    assert adult.steps_run == ["check_user", "send_welcome"]
    assert adult.workflow_status is not None
    assert adult.workflow_status.steps["send_rejection"].phase == "Skipped"


@step
async def attempt_count(context: Context, inputs: dict[str, Any]) -> dict[str, int]:
    return {"visit": context.visit}


@step
async def gate(context: Context, attempt_count: dict[str, int]) -> dict[str, Any]:
    if attempt_count["visit"] < 3:
        return {"error": "again"}
    return attempt_count


@workflow
def looping(wf: Any) -> None:
    wf.timeline(attempt_count >> gate)
    wf.diverge(gate, {"again": attempt_count})


async def test_diverge_to_an_earlier_step_of_the_timeline_loops() -> None:
    result = await looping.execute({})
    assert result.final_result == {"visit": 3}
    assert result.steps_run == ["attempt_count", "gate"] * 3


# -- 5. in-step helpers, on the virtual clock ---------------------------------------------


@step
async def request_deploy(context: Context, inputs: dict[str, Any]) -> None:
    await sleep(datetime.timedelta(days=7), data={"requested": inputs["version"]})


@step
async def review(context: Context, request_deploy: dict[str, Any]) -> None:
    await wait_for_approval(data={"version": request_deploy["requested"]}, timeout_ms=3_600_000)


@step
async def deploy(context: Context, review: dict[str, Any]) -> dict[str, Any]:
    seen: list[int] = []

    def droplet_ready() -> dict[str, Any]:
        return {"ip": "10.0.0.1"} if len(seen) >= 4 else {}

    found = await poll(
        droplet_ready,
        interval=30_000,
        max_attempts=10,
        success_condition=lambda d: "ip" in d,
        on_attempt=lambda n, _: seen.append(n),
    )

    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("refused")
        return "ssh ok"

    ssh = await retry(flaky, max_attempts=5, delay=2000, backoff=2.0, on_error=ConnectionError)
    return {"version": review["version"], "ip": found["ip"], "ssh": ssh, "looks": seen}


@workflow
def release(wf: Any) -> None:
    wf.timeline(request_deploy >> review >> deploy)


async def test_in_step_sleep_approval_poll_and_retry_run_on_virtual_time() -> None:
    result = await release.execute({"version": "1.2"}, approvals={"review": True})
    assert result.final_result == {
        "version": "1.2",
        "ip": "10.0.0.1",
        "ssh": "ssh ok",
        "looks": [1, 2, 3, 4, 5],
    }
    assert result.outputs["request_deploy"] == {"requested": "1.2"}  # the sleep's data
    # 7 days asleep, then 5 looks 30 s apart and retries after 2 s and 4 s.
    assert virtual_seconds(result) == 7 * 86400 + 4 * 30 + 2 + 4


async def test_an_in_step_approval_nobody_gives_times_out_or_waits() -> None:
    unscripted = await release.execute({"version": "1"})
    assert unscripted.status == "waiting_for_approval" and unscripted.waiting_for == ["review"]
    timed_out = await release.execute({"version": "1"}, approvals={}, raise_on_failure=False)
    assert timed_out.status == "failed" and "ApprovalTimeout" in (timed_out.error or "")
    rejected = await release.execute(
        {"version": "1"},
        approvals={"review": {"approve": False, "reason": "not today"}},
        raise_on_failure=False,
    )
    assert rejected.status == "failed" and "not today" in (rejected.error or "")


@step
@approval(timeout_minutes=60 * 24)
async def publish(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    assert context.approval is not None
    return {"channel": context.approval["data"]["channel"], "by": context.approval["decidedBy"]}


@workflow
def gated(wf: Any) -> None:
    wf.timeline(publish)


async def test_scripted_approvals_decide_approval_gates() -> None:
    unscripted = await gated.execute({})
    assert unscripted.status == "waiting_for_approval" and unscripted.waiting_for == ["publish"]

    def reviewer(step_name: str, request: Any) -> Any:
        return {"approve": True, "data": {"channel": "stable"}, "by": "alice"}

    result = await gated.execute({}, approvals=reviewer)
    assert result.final_result == {"channel": "stable", "by": "alice"}


def test_sleep_poll_and_retry_are_decorators_and_helpers_told_apart() -> None:
    with pytest.raises(DefinitionError, match=r"@sleep\(60\) is ambiguous.*@sleep\(seconds=0.06\)"):

        @step
        @sleep(60)
        async def ambiguous(context: Context) -> None:
            return None

    with pytest.raises(DefinitionError, match="success_condition belong to the awaitable helper"):
        poll(lambda o: True, interval=5, max_attempts=3, success_condition=bool)(greet)
    with pytest.raises(DefinitionError, match="@sleep needs exactly one of"):
        sleep(seconds=1, until="x")  # type: ignore[call-overload]  # the misuse refused at run time

    async def misuse() -> None:
        await retry(max_attempts=3)  # type: ignore[misc]  # the misuse refused at run time

    with pytest.raises(DefinitionError, match=r"await retry\(fn, \*args"):
        asyncio.run(misuse())


# -- 6. the names Cerebelum's users import ------------------------------------------------


def test_cerebelums_names_import_from_cerebelum_and_cerebelum_dsl() -> None:
    import cerebelum.dsl as dsl

    for name in [
        "step",
        "workflow",
        "Context",
        "StepComposition",
        "ParallelStepGroup",
        "DSLSerializer",
        "DSLLocalExecutor",
        "sleep",
        "wait_for_approval",
        "poll",
        "retry",
        "ProgressReporter",
        "StepRegistry",
        "WorkflowRegistry",
        "ExecutionClient",
        "ExecutionStatus",
        "ExecutionState",
        "SleepInfo",
        "ApprovalInfo",
    ]:
        assert hasattr(cerebelum, name), name
    for name in [
        "step",
        "workflow",
        "Context",
        "StepMetadata",
        "WorkflowMetadata",
        "StepComposition",
        "ParallelStepGroup",
        "StepRegistry",
        "WorkflowRegistry",
        "WorkflowBuilder",
        "DSLSerializer",
        "DSLLocalExecutor",
        "sleep",
        "wait_for_approval",
        "poll",
        "retry",
        "ProgressReporter",
        "DSLError",
        "StepDefinitionError",
        "WorkflowDefinitionError",
    ]:
        assert hasattr(dsl, name), name


def test_context_step_and_workflow_as_cerebelum_builds_them() -> None:
    ctx = Context(
        inputs={"user_id": 123},
        execution_id="exec_001",
        workflow_name="test_wf",
        step_name="test_step",
        attempt=1,
    )
    assert (ctx.inputs, ctx.execution_id, ctx.attempt) == ({"user_id": 123}, "exec_001", 1)
    with pytest.raises(AttributeError):
        ctx.attempt = 2  # type: ignore[misc]
    assert (welcome.has_context, welcome.has_inputs, welcome.dependencies) == (
        True,
        False,
        ["validate_age"],
    )
    assert StepRegistry.get("welcome") is welcome
    assert WorkflowRegistry.get("onboarding") is onboarding
    assert hello_workflow.name == "hello_workflow"  # Cerebelum's spelling
    assert hello_workflow.render()["metadata"]["name"] == "hello-workflow"  # the object's

    @workflow(core_url="custom:9999")
    def custom_workflow(wf: Any) -> None:
        wf.timeline(greet)

    assert custom_workflow.core_url == "custom:9999"
    assert custom_workflow.validate().is_valid


async def test_a_step_called_directly_returns_what_cerebelum_returns() -> None:
    ctx = Context(workflow_name="w", step_name="greet", inputs={})
    assert await greet(ctx, inputs={"name": "Bo"}) == {"ok": "Hello, Bo!"}
    assert await shout(ctx, greet="hi") == {"ok": "HI"}  # an envelope stays as it is
    assert await validate_age(ctx, inputs={"age": 3}) == {"error": "too_young"}
    assert await validate_age(ctx, inputs={}) == {"error": "'age'"}  # an exception


def test_compositions_and_the_serializer_show_the_structure() -> None:
    composition = greet >> [shout, welcome] >> calculate_total
    assert isinstance(composition, StepComposition)
    assert len(composition.items) == 3 and composition.items[0] is greet
    assert isinstance(composition.items[1], ParallelStepGroup)
    assert [s.name for s in composition.steps] == ["greet", "shout", "welcome", "calculate_total"]
    definition = DSLSerializer.to_workflow_definition("hello_workflow", hello_workflow.builder)
    assert definition.timeline == ["greet", "shout"]
    assert definition.steps_metadata["shout"].dependencies == ["greet"]
    assert '"kind": "Workflow"' in DSLSerializer.serialize_to_json(hello_workflow)


def test_definition_mistakes_raise_cerebelums_errors(capsys: pytest.CaptureFixture[str]) -> None:
    @workflow
    def empty_workflow(wf: Any) -> None:
        pass  # Cerebelum refuses it when it is validated or run, not when it is defined

    with pytest.raises(WorkflowDefinitionError) as empty:
        empty_workflow.validate()
    assert empty.value.workflow_name == "empty_workflow"
    assert "timeline" in empty.value.errors[0].lower()
    with pytest.raises(WorkflowDefinitionError, match="must not be async"):

        @workflow
        async def async_workflow(wf: Any) -> None:
            pass

    ProgressReporter(Context(workflow_name="w", step_name="long")).update(50, "half way")
    assert "[long] ██████████░░░░░░░░░░ 50% - half way" in capsys.readouterr().out


# -- 8. a module whose name starts with a digit -------------------------------------------


def test_a_module_named_like_cerebelums_tutorials_renders(tmp_path: Path) -> None:
    source = tmp_path / "07_compat_tutorial.py"
    source.write_text(
        "from cerebelum import step, workflow, Context\n"
        "@step\n"
        "async def hi(context: Context, inputs: dict):\n"
        "    return 'hi ' + inputs['name']\n"
        "@workflow\n"
        "def hello_world(wf):\n"
        "    wf.timeline(hi)\n"
    )
    try:
        wf = load_object(f"{source}:hello_world")
        manifest = wf.render({"name": "Ann"})
        assert manifest["spec"]["steps"][0]["python"]["function"] == "07_compat_tutorial:hi"
        assert "07_compat_tutorial:hi" in cerebelum.FUNCTIONS
        assert wf.execute_sync({"name": "Ann"}).final_result == "hi Ann"
    finally:
        sys.modules.pop("07_compat_tutorial", None)
        sys.path.remove(str(tmp_path))


# -- 9. the status client ------------------------------------------------------------------


def test_execution_status_reads_a_workflow_as_cerebelums_client_would() -> None:
    now = parse_time("2030-01-01T00:10:00Z")
    body = {
        "metadata": {"name": "deploy-7", "namespace": "prod"},
        "spec": {
            "inputs": {"v": 1},
            "steps": [{"name": "build"}, {"name": "nap"}, {"name": "ship"}],
        },
        "status": {
            "phase": "Sleeping",
            "currentStep": "nap",
            "startedAt": "2030-01-01T00:00:00Z",
            "steps": {
                "build": {
                    "phase": "Succeeded",
                    "startedAt": "2030-01-01T00:00:00Z",
                    "finishedAt": "2030-01-01T00:02:00Z",
                    "output": {"image": "x"},
                },
                "nap": {
                    "phase": "Sleeping",
                    "startedAt": "2030-01-01T00:02:00Z",
                    "sleepUntil": "2030-01-01T00:12:00Z",
                },
            },
        },
    }
    view = execution_status(body, now)
    assert view.execution_id == "prod/deploy-7" and view.status == ExecutionState.SLEEPING
    assert (view.current_step_name, view.current_step_index, view.total_steps) == ("nap", 1, 3)
    assert round(view.progress_percentage, 1) == 33.3
    assert view.step_outputs == {"build": {"image": "x"}}
    assert view.completed_steps[0].duration_seconds == 120
    assert view.sleep_info is not None
    assert (view.sleep_info.duration_ms, view.sleep_info.remaining_ms) == (600_000, 120_000)
    assert view.elapsed_seconds == 600 and view.approval_info is None


# -- 10. the last gaps: Cerebelum's own tests' names and behaviours ------------------------


def test_dsl_has_the_names_cerebelum_code_catches_and_builds() -> None:
    from cerebelum import dsl

    for name in (
        "StepExecutionError",
        "DependencyError",
        "WorkflowValidator",
        "DivergeRule",
        "BranchRule",
    ):
        assert hasattr(dsl, name), name
    assert issubclass(dsl.DependencyError, dsl.WorkflowDefinitionError)


@step
async def explode(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    raise ValueError("Something went wrong!")


@workflow
def exploding(wf: Any) -> None:
    wf.timeline(explode)


async def test_a_failed_step_raises_step_execution_error_with_the_original_exception() -> None:
    from cerebelum.dsl import StepExecutionError

    with pytest.raises(StepExecutionError) as caught:
        await exploding.execute({})
    assert caught.value.step_name == "explode"
    assert isinstance(caught.value.original_error, ValueError)
    assert caught.value.execution_id and "Something went wrong!" in caught.value.message


def test_a_parameter_naming_no_step_is_a_dependency_error() -> None:
    from cerebelum.dsl import DependencyError

    @step
    async def needs_missing(context: Context, missing_step: dict[str, Any]) -> dict[str, Any]:
        return {}

    with pytest.raises(DependencyError) as caught:

        @workflow
        def broken(wf: Any) -> None:
            wf.timeline(needs_missing)

    assert (caught.value.step_name, caught.value.dependency) == ("needs_missing", "missing_step")


@step
async def check_inventory(context: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"in_stock": inputs["stock"] > 0}


@step
async def process_order(context: Context, inputs: dict[str, Any]) -> str:
    return "processed"


@step
async def backorder(context: Context, inputs: dict[str, Any]) -> str:
    return "backordered"


def test_a_branch_target_off_the_timeline_is_a_handler_and_the_rule_is_kept() -> None:
    @workflow
    def shop(wf: Any) -> None:
        wf.timeline(check_inventory >> process_order)
        wf.branch(
            after=check_inventory,
            condition=lambda out: out["in_stock"],
            when_true=process_order,
            when_false=backorder,
        )

    [rule] = shop.builder.get_branch_rules()
    assert rule.when_true is not None and rule.when_false is not None
    assert (rule.after.name, rule.when_true.name, rule.when_false.name) == (
        "check_inventory",
        "process_order",
        "backorder",
    )
    assert shop.execute_sync({"stock": 0}).final_result == "backordered"
    assert shop.execute_sync({"stock": 3}).steps_run == ["check_inventory", "process_order"]


def test_workflow_validator_reports_an_empty_timeline_and_a_circular_dependency() -> None:
    from cerebelum.dsl import WorkflowValidator

    ok = WorkflowValidator(
        workflow_name="ok", timeline=[greet, shout], diverge_rules=[], branch_rules=[]
    )
    assert ok.validate().is_valid
    empty = WorkflowValidator(workflow_name="empty", timeline=[], diverge_rules=[], branch_rules=[])
    report = empty.validate()
    assert not report.is_valid and "empty timeline" in report.errors[0].lower()
    backwards = WorkflowValidator(workflow_name="backwards", timeline=[shout, greet])
    report = backwards.validate()
    assert not report.is_valid and "circular dependency" in report.errors[0].lower()


def test_composition_items_and_parallel_group_steps_as_cerebelums_tests_read_them() -> None:
    composition = greet >> [shout, explode]
    assert len(composition.items) == 2 and composition.items[0] == greet
    group = composition.items[1]
    assert isinstance(group, ParallelStepGroup) and [s.name for s in group.steps] == [
        "shout",
        "explode",
    ]
