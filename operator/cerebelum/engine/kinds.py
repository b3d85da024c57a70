"""Every step kind, wired in one table: the stages of a visit in order, the wait of each
waiting phase, and the handler of each input type.

Adding a step kind is one module under ``engine/`` plus its line here (the whole list of
files is in docs/architecture.md, and ``tests/unit/test_architecture.py`` checks it).
"""

from __future__ import annotations

from cerebelum.engine import approval, attempt, callback, poll, retry, sleep
from cerebelum.engine.run import Kinds
from cerebelum.engine.types import ActionResult, ApprovalDecision, CallbackDelivery

KINDS = Kinds(
    stages=(sleep.STAGE, approval.STAGE, attempt.STAGE, callback.STAGE),
    waits={
        wait.phase: wait
        for wait in (sleep.STAGE, approval.STAGE, callback.STAGE, poll.WAIT, retry.WAIT)
    },
    inputs={
        ActionResult: attempt.on_result,
        ApprovalDecision: approval.on_decision,
        CallbackDelivery: callback.on_callback,
    },
)
