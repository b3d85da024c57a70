"""Cerebelum's status client, ported by its constructor: ExecutionClient reads real Workflow
objects through the API server while the operator runs them, and approves through it."""

from __future__ import annotations

import asyncio
from typing import Any

from cerebelum import ExecutionClient, ExecutionState
from tests.harness import Cluster
from tests.harness.operator import OperatorProcess
from tests.harness.workflows import workflow


async def _until(client: ExecutionClient, execution_id: str, state: ExecutionState) -> Any:
    for _ in range(300):
        view = await client.get_execution_status(execution_id)
        if view.status == state:
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"{execution_id} never reached {state}: {view}")


def test_execution_client_follows_a_workflow_and_approves_it(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        workflow(
            "release-1",
            [
                {"name": "build", "noop": {"with": {"image": "app:1"}}},
                {"name": "settle", "sleep": {"duration": "2s"}},
                {"name": "go_live", "approval": {"timeout": "10m", "message": "ship app:1?"}},
            ],
            inputs={"version": 1},
        ),
        namespace,
    )

    async def follow() -> None:
        client = ExecutionClient(namespace=namespace, kubeconfig=str(cluster.kubeconfig))
        try:
            asleep = await _until(client, "release-1", ExecutionState.SLEEPING)
            assert asleep.current_step_name == "settle" and asleep.total_steps == 3
            assert asleep.sleep_info is not None and asleep.sleep_info.duration_ms == 2000
            assert 0 <= asleep.sleep_info.remaining_ms <= 2000
            assert asleep.step_outputs == {"build": {"image": "app:1"}}
            assert asleep.inputs == {"version": 1}
            waiting = await _until(
                client, f"{namespace}/release-1", ExecutionState.WAITING_FOR_APPROVAL
            )
            info = waiting.approval_info
            assert info is not None and info.timeout_ms == 600_000
            assert info.data == {"step": "go_live", "message": "ship app:1?"}
            active = await client.list_active_workflows()
            assert [e.workflow_name for e in active] == ["release-1"]
            await client.approve("release-1", data={"by": "ci"})
            done = await _until(client, "release-1", ExecutionState.COMPLETED)
            assert done.progress_percentage == 100.0 and done.completed_at is not None
            assert [s.step_name for s in done.completed_steps] == ["build", "settle", "go_live"]
            page, total, more = await client.list_executions(status=ExecutionState.COMPLETED)
            assert ([e.execution_id for e in page], total, more) == (
                [f"{namespace}/release-1"],
                1,
                False,
            )
        finally:
            await client.aclose()

    asyncio.run(follow())
