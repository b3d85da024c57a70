"""The in-step pause: a step's own code asked the workflow to wait after its action
(Cerebelum's ``await sleep(...)`` and ``await wait_for_approval(...)`` inside a step).

No wait of its own: it is the sleep or the approval wait, marked ``paused`` so that when it
ends the step succeeds with the output its action gave (``visit.continue_visit``).
"""

from __future__ import annotations

import datetime
from typing import Any

from cerebelum.api.durations import format_time
from cerebelum.api.spec import Step
from cerebelum.api.status import PauseKind, StepPhase
from cerebelum.engine.approval import ask
from cerebelum.engine.run import Run
from cerebelum.engine.sleep import sleep_until
from cerebelum.engine.types import Pause
from cerebelum.engine.visit import succeed

#: The phase each kind of pause waits in.
PHASES = {PauseKind.SLEEP: StepPhase.SLEEPING, PauseKind.APPROVAL: StepPhase.WAITING_FOR_APPROVAL}


def enter(run: Run, step: Step, output: Any, pause: Pause) -> None:
    s = run.s(step.name)
    s.next_attempt_at = None
    if pause.approval:
        deadline = run.later(pause.approval_timeout) if pause.approval_timeout else None
        message = f"the step asked for {pause.approval_type} approval"
        ask(run, step, deadline, message, paused=True)
        return
    until = run.later(pause.sleep or datetime.timedelta(0))
    if until <= run.now:
        succeed(run, step, output)
        return
    s.paused = PauseKind.SLEEP
    sleep_until(run, step, until, message=f"the step asked to sleep until {format_time(until)}")
