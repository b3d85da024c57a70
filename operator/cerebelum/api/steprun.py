"""``StepRun``: one attempt of a Python step, handed from the operator to a worker.

The operator never imports user code. For a ``python`` step it creates a StepRun; a worker
of the StepRun's queue claims it by writing ``status.claimedBy`` with an optimistic-concurrency
update (the API server's resourceVersion check lets exactly one worker win), renews its lease
while the function runs, and writes the result. A claim whose lease has run out (its worker
died) may be taken by another worker. The operator reads the result and advances the workflow.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from cerebelum.api.base import ApiModel
from cerebelum.api.status import StepError

STEPRUN_KIND = "StepRun"
STEPRUN_PLURAL = "stepruns"

LABEL_QUEUE = "cerebelum.io/queue"
LABEL_WORKFLOW = "cerebelum.io/workflow"
LABEL_STEP = "cerebelum.io/step"

DEFAULT_QUEUE = "default"


class StepRunSpec(ApiModel):
    """What to run: written once by the operator."""

    workflow: str = Field(description="Name of the Workflow this attempt belongs to.")
    step: str = Field(description="Name of the step.")
    function: str = Field(description="The function as module:name.")
    queue: str = Field(description="The worker queue that runs it.")
    arguments: dict[str, Any] | None = Field(
        default=None,
        description="Keyword arguments after the context (earlier outputs, inputs).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    inputs: dict[str, Any] | None = Field(
        default=None,
        description="The workflow's inputs (context.inputs).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    approval: dict[str, Any] | None = Field(
        default=None,
        description="The step's approval decision, if it had a gate (context.approval).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    attempt: int = Field(ge=1, description="Attempt number within the visit (context.attempt).")
    visit: int = Field(ge=1, description="How many times the step has been entered.")
    idempotency_key: str = Field(
        description="The same for every attempt of one visit: deduplicate side effects with it."
    )
    deadline: str | None = Field(
        default=None, description="When the attempt times out (the step's timeout); unset: never."
    )
    checks: list[str] | None = Field(
        default=None, description="Python conditions to evaluate on the output (poll, branch)."
    )


class StepRunPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (StepRunPhase.SUCCEEDED, StepRunPhase.FAILED)


#: Longest in-step wait, in milliseconds: the same year as any duration of a spec.
MAX_PAUSE_MS = 366 * 86400 * 1000


class StepRunPause(ApiModel):
    """The function ended with ``await sleep(...)`` or ``await wait_for_approval(...)``: its
    result is the wait's data, and the workflow waits before the step counts as done."""

    sleep_ms: int | None = Field(
        default=None, ge=0, le=MAX_PAUSE_MS, description="Sleep this long after the step."
    )
    approval_type: str | None = Field(
        default=None, max_length=63, description="Wait for a human decision (its type)."
    )
    approval_timeout_ms: int | None = Field(
        default=None,
        ge=0,
        le=MAX_PAUSE_MS,
        description="Fail the step if nobody decides within this long.",
    )


class StepRunStatus(ApiModel):
    """Written by the worker that holds the claim."""

    phase: StepRunPhase = Field(default=StepRunPhase.PENDING, description="The attempt's phase.")
    claimed_by: str | None = Field(default=None, description="The worker holding the claim.")
    claimed_at: str | None = Field(default=None, description="When that worker claimed it.")
    lease_expires_at: str | None = Field(
        default=None,
        description="Unless renewed by then, another worker may take the claim over.",
    )
    claims: int = Field(
        default=0,
        description="How many times it was claimed (1 + takeovers); the current claim's "
        "fencing token.",
    )
    result_claim: int | None = Field(
        default=None,
        description="The claim (fencing token) under which the result was written; a result "
        "whose token is not the current claim is stale and ignored.",
    )
    finished_at: str | None = Field(default=None, description="When the function returned.")
    result: dict[str, Any] | None = Field(
        default=None,
        description='Cerebelum\'s result shape: {"ok": value} or {"error": message}.',
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    error: StepError | None = Field(default=None, description="The error, when it failed.")
    checks: dict[str, bool] | None = Field(
        default=None, description="Values of the Python conditions on the output."
    )
    pause: StepRunPause | None = Field(
        default=None, description="The step asked the workflow to wait after it."
    )
    message: str | None = Field(default=None, description="Human-readable detail.")
