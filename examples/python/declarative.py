"""A workflow with no Python code to run: every step is an action the operator runs itself,
so it needs no worker. Values use ${{ }} expressions (CEL)."""

from typing import Any

from cerebelum import approval_step, http_step, output_step, poll, sleep_step, tcp_step, workflow

health = poll("output.status == 200", interval=0.5, max_attempts=20)(
    http_step("health", "${{ inputs.url }}")
)


@workflow(inputs={"url": "http://127.0.0.1:8080/health", "host": "127.0.0.1", "port": 22})
def declarative_workflow(wf: Any) -> None:
    wf.timeline(
        health
        >> tcp_step("port_open", "${{ inputs.host }}", "${{ inputs.port }}", timeout=2)
        >> sleep_step("settle", seconds=1)
        >> approval_step("go_live", timeout_minutes=0.02, on_timeout="approve")
        >> output_step("summary", {"status": "${{ steps.health.output.status }}"})
    )
