"""Cerebelum's first tutorial, as its users write it: a module whose name starts with a digit.

cerebelum apply examples/python/01_hello_world.py:hello_world_workflow --input name=Alice
python examples/python/01_hello_world.py      # runs it here, with no cluster
"""

import asyncio
from typing import Any

from cerebelum import Context, step, workflow


@step
async def greet(context: Context, inputs: dict[str, Any]) -> str:
    return f"Hello, {inputs.get('name', 'World')}!"


@workflow
def hello_world_workflow(wf: Any) -> None:
    wf.timeline(greet)


async def main() -> None:
    result = await hello_world_workflow.execute({"name": "Alice"})
    print(f"Output: {result.output}  Status: {result.status}")


if __name__ == "__main__":
    asyncio.run(main())
