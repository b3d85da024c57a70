"""Skip a module that needs a real node where none can run, unless CI requires one."""

from __future__ import annotations

import os

import pytest

from cerebelum.devcluster.node import unavailable_reason


def skip_without_node() -> None:
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CEREBELUM_REQUIRE_NODE") == "1":
        raise RuntimeError(f"node e2e required (CEREBELUM_REQUIRE_NODE=1) but {reason}")
    pytest.skip(f"node e2e skipped: {reason}", allow_module_level=True)
