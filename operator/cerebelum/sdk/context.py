"""``Context``: what a step function receives first, as in Cerebelum."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Context:
    """Who is running and which attempt this is.

    ``attempt`` counts the attempts of this visit of the step, from 1: retries and poll
    attempts increase it (Cerebelum never did). ``idempotency_key`` is the same for every
    attempt of one visit: tag side effects with it (e.g. a droplet tag) and look it up
    first, so an attempt taken over from a dead worker does not repeat what it did.

    ``fencing_token`` grows with every claim of the attempt (a takeover gets a larger one).
    A worker that froze past its lease may wake up and carry on: its result is refused,
    but its side effects are not, unless the system it writes to refuses a token smaller
    than one it has seen. Pass the token along (a header, a conditional write) where that
    system can check it; with the idempotency key, that makes a step exactly-once.
    """

    workflow_name: str
    step_name: str
    inputs: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    visit: int = 1
    namespace: str = "default"
    idempotency_key: str = ""
    #: The step's approval record ({decision, decidedBy, reason, data}), if it had a gate.
    approval: dict[str, Any] | None = None
    #: When this attempt times out, if the step has a timeout.
    deadline: datetime.datetime | None = None
    #: This worker's claim number on the attempt: larger for a later claimant (0: local).
    fencing_token: int = 0
    #: Cerebelum's name for the run; by default the Workflow object, namespace/name.
    execution_id: str = ""

    def __post_init__(self) -> None:
        if not self.execution_id:
            object.__setattr__(self, "execution_id", f"{self.namespace}/{self.workflow_name}")
