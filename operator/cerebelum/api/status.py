"""The ``status`` of a Workflow: the polling API.

Everything a user or a tool needs to follow a workflow is here: the phase, what each step
is doing, every deadline it waits for, decisions and who made them, outputs and errors, a
``Succeeded`` condition for ``kubectl wait``, and a bounded history of transitions.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from cerebelum.api.base import ApiModel


class WorkflowPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SLEEPING = "Sleeping"
    POLLING = "Polling"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED, WorkflowPhase.CANCELLED)


class StepPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SLEEPING = "Sleeping"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    POLLING = "Polling"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    SKIPPED = "Skipped"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in (
            StepPhase.SUCCEEDED,
            StepPhase.SKIPPED,
            StepPhase.FAILED,
            StepPhase.CANCELLED,
        )

    @property
    def done(self) -> bool:
        """Finished in a way that lets dependents run."""
        return self in (StepPhase.SUCCEEDED, StepPhase.SKIPPED)


class PauseKind(StrEnum):
    """How a step's own code asked the workflow to wait after it (Cerebelum's in-step
    ``await sleep(...)`` / ``await wait_for_approval(...)``)."""

    SLEEP = "Sleep"
    APPROVAL = "Approval"


class StepError(ApiModel):
    """Why a step (or one attempt of it) failed."""

    error_class: str = Field(description="Error class, e.g. Timeout, Transient, ExpressionError.")
    message: str = Field(description="What went wrong.")
    retryable: bool = Field(default=False, description="Whether the action said it may be retried.")


class ApprovalStatus(ApiModel):
    """The state of a step's approval gate."""

    requested_at: str | None = Field(default=None, description="When the step started waiting.")
    deadline: str | None = Field(
        default=None, description="When the wait times out (unset: never)."
    )
    decision: str | None = Field(default=None, description="Approved, Rejected or TimedOut.")
    decided_by: str | None = Field(
        default=None, description="Who decided (set by the admission webhook)."
    )
    decided_at: str | None = Field(default=None, description="When it was decided.")
    reason: str | None = Field(default=None, description="The reason given with the decision.")
    message: str | None = Field(default=None, description="The approval's message for approvers.")
    data: Any | None = Field(
        default=None,
        description="Data given with the approval (cerebelum.io/approval-data), for the step.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class StepStatus(ApiModel):
    """What one step is doing or did (its latest visit)."""

    phase: StepPhase = Field(default=StepPhase.PENDING, description="The step's phase.")
    visits: int = Field(
        default=0, ge=0, description="How many times the step has started (loops revisit)."
    )
    attempts: int = Field(
        default=0, ge=0, description="Attempts of the action in the current visit."
    )
    started_at: str | None = Field(default=None, description="When the current visit started.")
    finished_at: str | None = Field(default=None, description="When the current visit finished.")
    last_attempt_at: str | None = Field(
        default=None, description="When the latest attempt started."
    )
    next_attempt_at: str | None = Field(
        default=None, description="When the next poll or retry attempt starts."
    )
    poll_started_at: str | None = Field(
        default=None, description="When polling started (for poll.timeout)."
    )
    sleep_until: str | None = Field(default=None, description="When the sleep ends.")
    paused: PauseKind | None = Field(
        default=None,
        description=(
            "The action finished and asked to wait (an in-step sleep or wait_for_approval): "
            "the step succeeds with its output when the wait ends."
        ),
    )
    idempotency_key: str | None = Field(
        default=None, description="Key given to the action; the same for every attempt of a visit."
    )
    approval: ApprovalStatus | None = Field(default=None, description="The approval gate, if any.")
    output: Any | None = Field(
        default=None,
        description="The action's output (size-limited).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    error: StepError | None = Field(default=None, description="The latest error.")
    checks: dict[str, bool] | None = Field(
        default=None,
        description="Python conditions (poll, branch) the worker evaluated on the latest output.",
    )
    message: str | None = Field(default=None, description="Human-readable detail of the phase.")


class Condition(ApiModel):
    """A Kubernetes-style condition."""

    type: str = Field(description="Condition type, e.g. Succeeded.")
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str = Field(description="When status last changed.")
    observed_generation: int | None = Field(default=None, description="The spec generation seen.")


class Transition(ApiModel):
    """One entry of the audit trail."""

    time: str = Field(description="When it happened.")
    step: str | None = Field(default=None, description="The step (unset: the workflow).")
    phase: str = Field(description="The phase entered.")
    reason: str = Field(description="Why.")
    message: str | None = Field(default=None, description="Detail.")


class WorkflowStatus(ApiModel):
    """The observed state of the workflow: this is its polling API."""

    phase: WorkflowPhase = Field(default=WorkflowPhase.PENDING, description="The workflow's phase.")
    current_step: str | None = Field(
        default=None, description="The first active step (see currentSteps)."
    )
    current_steps: list[str] | None = Field(default=None, description="All active steps.")
    progress: str | None = Field(default=None, description="Finished steps out of all, e.g. 3/5.")
    started_at: str | None = Field(default=None, description="When the workflow started.")
    finished_at: str | None = Field(default=None, description="When it finished.")
    next_wake_at: str | None = Field(
        default=None, description="The earliest deadline it waits for."
    )
    observed_generation: int | None = Field(
        default=None, description="The spec generation acted on."
    )
    total_visits: int = Field(
        default=0, ge=0, description="Step starts so far, against spec.maxStepVisits."
    )
    message: str | None = Field(default=None, description="Why it is in this phase.")
    conditions: list[Condition] | None = Field(
        default=None, description="Succeeded, with reason and message."
    )
    steps: dict[str, StepStatus] = Field(
        default_factory=dict, description="Each step's state, by name."
    )
    history: list[Transition] | None = Field(
        default=None, description="The latest transitions (bounded)."
    )
