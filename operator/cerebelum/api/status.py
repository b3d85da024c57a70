"""The ``status`` of a Workflow: the polling API.

Everything a user or a tool needs to follow a workflow is here: the phase, what each step
is doing, every deadline it waits for, decisions and who made them, outputs and errors, a
``Succeeded`` condition for ``kubectl wait``, and a bounded history of transitions.

This module also holds the one table of phases (``STEP_PHASES``, ``WORKFLOW_PHASES``): per
phase, whether it is final, whether the step waits (and in which field its deadline is),
and what the workflow shows while a step is in it. The engine, the status repair, the
console, the Python status client, the operator's cache, metrics and Events all read it,
so a new phase is described once and no view can miss it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import Field
from pydantic.alias_generators import to_camel

from cerebelum.api.base import ApiModel
from cerebelum.api.durations import Time


class WorkflowPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SLEEPING = "Sleeping"
    POLLING = "Polling"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    WAITING_FOR_CALLBACK = "WaitingForCallback"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def info(self) -> WorkflowPhaseInfo:
        return WORKFLOW_PHASES[self]

    @property
    def finished(self) -> bool:
        return self.info.final


class StepPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SLEEPING = "Sleeping"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    WAITING_FOR_CALLBACK = "WaitingForCallback"
    POLLING = "Polling"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    SKIPPED = "Skipped"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def info(self) -> StepPhaseInfo:
        return STEP_PHASES[self]

    @property
    def finished(self) -> bool:
        return self.info.final

    @property
    def done(self) -> bool:
        """Finished in a way that lets dependents run."""
        return self.info.done


@dataclass(frozen=True)
class StepPhaseInfo:
    """What one step phase means, for everything that reads status."""

    #: The visit is over.
    final: bool = False
    #: Over in a way that lets dependents run.
    done: bool = False
    #: Nothing runs: the step waits for a deadline or for someone outside.
    waiting: bool = False
    #: The StepStatus field (dotted, Python names) holding the deadline it waits for.
    deadline: str | None = None
    #: What views say the step is doing while it waits ("sleeping", "next attempt").
    label: str | None = None
    #: The phase the workflow shows while a step is here; with several active steps, the
    #: lowest ``rank`` wins (a running step outranks a sleeping one).
    workflow: WorkflowPhase | None = None
    rank: int = 100
    #: Only a step with an action can be in this phase.
    needs_action: bool = False
    #: Entering it is routine: no Event is posted for it (status.history has it).
    routine: bool = False


@dataclass(frozen=True)
class WorkflowPhaseInfo:
    """What one workflow phase means."""

    final: bool = False
    #: The ``Succeeded`` condition: True, False, or (None) Unknown.
    succeeded: bool | None = None
    #: What ``status.message`` says; ``{steps}`` names the steps that put it in this phase.
    message: str = ""


STEP_PHASES: Mapping[StepPhase, StepPhaseInfo] = {
    StepPhase.PENDING: StepPhaseInfo(),
    StepPhase.RUNNING: StepPhaseInfo(
        workflow=WorkflowPhase.RUNNING, rank=0, needs_action=True, routine=True
    ),
    StepPhase.RETRYING: StepPhaseInfo(
        waiting=True,
        routine=True,
        deadline="next_attempt_at",
        label="next attempt",
        workflow=WorkflowPhase.RUNNING,
        rank=0,
        needs_action=True,
    ),
    StepPhase.POLLING: StepPhaseInfo(
        waiting=True,
        routine=True,
        deadline="next_attempt_at",
        label="next attempt",
        workflow=WorkflowPhase.POLLING,
        rank=1,
        needs_action=True,
    ),
    StepPhase.WAITING_FOR_APPROVAL: StepPhaseInfo(
        waiting=True,
        deadline="approval.deadline",
        label="waiting for approval",
        workflow=WorkflowPhase.WAITING_FOR_APPROVAL,
        rank=2,
    ),
    StepPhase.WAITING_FOR_CALLBACK: StepPhaseInfo(
        waiting=True,
        deadline="callback.deadline",
        label="waiting for a callback",
        workflow=WorkflowPhase.WAITING_FOR_CALLBACK,
        rank=2,
    ),
    StepPhase.SLEEPING: StepPhaseInfo(
        waiting=True,
        routine=True,
        deadline="sleep_until",
        label="sleeping",
        workflow=WorkflowPhase.SLEEPING,
        rank=3,
    ),
    StepPhase.SUCCEEDED: StepPhaseInfo(final=True, done=True),
    StepPhase.SKIPPED: StepPhaseInfo(final=True, done=True),
    StepPhase.FAILED: StepPhaseInfo(final=True),
    StepPhase.CANCELLED: StepPhaseInfo(final=True),
}

WORKFLOW_PHASES: Mapping[WorkflowPhase, WorkflowPhaseInfo] = {
    WorkflowPhase.PENDING: WorkflowPhaseInfo(message="pending"),
    WorkflowPhase.RUNNING: WorkflowPhaseInfo(message="running"),
    WorkflowPhase.SLEEPING: WorkflowPhaseInfo(message="sleeping"),
    WorkflowPhase.POLLING: WorkflowPhaseInfo(message="polling"),
    WorkflowPhase.WAITING_FOR_APPROVAL: WorkflowPhaseInfo(
        message="waiting for approval of {steps}"
    ),
    WorkflowPhase.WAITING_FOR_CALLBACK: WorkflowPhaseInfo(
        message="waiting for a callback to {steps}"
    ),
    WorkflowPhase.SUSPENDED: WorkflowPhaseInfo(message="suspended: no new step starts"),
    WorkflowPhase.SUCCEEDED: WorkflowPhaseInfo(final=True, succeeded=True),
    WorkflowPhase.FAILED: WorkflowPhaseInfo(final=True, succeeded=False),
    WorkflowPhase.CANCELLED: WorkflowPhaseInfo(final=True, succeeded=False),
}


def step_phase_info(phase: Any) -> StepPhaseInfo | None:
    """The table entry of a phase as read from the wire (None for a phase we do not know)."""
    try:
        return STEP_PHASES[StepPhase(phase)]
    except ValueError:
        return None


def workflow_phase_info(phase: Any) -> WorkflowPhaseInfo | None:
    try:
        return WORKFLOW_PHASES[WorkflowPhase(phase)]
    except ValueError:
        return None


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
    details: dict[str, Any] | None = Field(
        default=None,
        description="Structured detail, e.g. an ssh command's exitStatus, stdout and stderr.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class Vote(ApiModel):
    """One person's decision on an approval gate."""

    by: str = Field(description="Who (stamped by the webhook; 'anonymous' without it).")
    at: Time = Field(description="When.")
    decision: str = Field(description="Approved or Rejected.")
    reason: str | None = Field(default=None, description="The reason given.")
    choice: str | None = Field(default=None, description="The option picked.")


class ApprovalStatus(ApiModel):
    """The state of a step's approval gate."""

    requested_at: Time | None = Field(default=None, description="When the step started waiting.")
    deadline: Time | None = Field(
        default=None, description="When the wait times out (unset: never)."
    )
    decision: str | None = Field(default=None, description="Approved, Rejected or TimedOut.")
    decided_by: str | None = Field(
        default=None, description="Who decided (set by the admission webhook)."
    )
    decided_at: Time | None = Field(default=None, description="When it was decided.")
    reason: str | None = Field(default=None, description="The reason given with the decision.")
    message: str | None = Field(default=None, description="The approval's message for approvers.")
    data: Any | None = Field(
        default=None,
        description="Data given with the approval (cerebelum.io/approval-data), for the step.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    choice: str | None = Field(default=None, description="The option the approval picked.")
    required: int | None = Field(default=None, description="Distinct approvals needed.")
    votes: list[Vote] | None = Field(default=None, description="Every vote, in order.")


class CallbackStatus(ApiModel):
    """The state of a step's callback wait. Only the token's hash is kept: the token is a
    capability, handed to the outside system in the action's request and never stored."""

    attempt: int = Field(description="The attempt whose callback this is (its token).")
    token_hash: str | None = Field(
        default=None, description="SHA-256 of the callback token (hex), to check a delivery."
    )
    requested_at: Time | None = Field(default=None, description="When the step started waiting.")
    expires_at: Time | None = Field(
        default=None, description="When the wait times out (callback.timeout; unset: never)."
    )
    deadline: Time | None = Field(
        default=None,
        description="The next deadline: the timeout, or the next heartbeat, whichever is first.",
    )
    last_heartbeat_at: Time | None = Field(default=None, description="The latest heartbeat.")
    received_at: Time | None = Field(default=None, description="When the callback arrived.")
    outcome: str | None = Field(
        default=None, description="Succeeded, Failed, TimedOut or HeartbeatTimeout."
    )
    received_by: str | None = Field(
        default=None, description="How it arrived: http, or who annotated the workflow."
    )
    early: Any | None = Field(
        default=None,
        description="A callback that arrived while the action was still running: applied when it ends.",
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
    started_at: Time | None = Field(default=None, description="When the current visit started.")
    finished_at: Time | None = Field(default=None, description="When the current visit finished.")
    last_attempt_at: Time | None = Field(
        default=None, description="When the latest attempt started."
    )
    next_attempt_at: Time | None = Field(
        default=None, description="When the next poll or retry attempt starts."
    )
    poll_started_at: Time | None = Field(
        default=None, description="When polling started (for poll.timeout)."
    )
    sleep_until: Time | None = Field(default=None, description="When the sleep ends.")
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
    callback: CallbackStatus | None = Field(
        default=None, description="The callback wait, if the step has one."
    )
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


def step_deadline(s: StepStatus) -> datetime.datetime | None:
    """The deadline a step waits for in its phase (from the table), or None.

    Raises ValueError when the field holds something that is not a time: status read by
    ``load_status`` never does, but the engine must not compare garbage with the clock.
    """
    path = STEP_PHASES[s.phase].deadline
    if path is None:
        return None
    value: Any = s
    for part in path.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    if not isinstance(value, datetime.datetime):
        raise ValueError(f"{path} {value!r} is not a time")
    return value


def wire_deadline(step: Mapping[str, Any]) -> str | None:
    """The same, for a step's status as it is on the wire (views read JSON)."""
    info = step_phase_info(step.get("phase"))
    if info is None or info.deadline is None:
        return None
    value: Any = step
    for part in info.deadline.split("."):
        value = value.get(to_camel(part)) if isinstance(value, Mapping) else None
    return value if isinstance(value, str) else None


class Condition(ApiModel):
    """A Kubernetes-style condition."""

    type: str = Field(description="Condition type, e.g. Succeeded.")
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: Time = Field(description="When status last changed.")
    observed_generation: int | None = Field(default=None, description="The spec generation seen.")


class Transition(ApiModel):
    """One entry of the audit trail."""

    time: Time = Field(description="When it happened.")
    step: str | None = Field(default=None, description="The step (unset: the workflow).")
    phase: str = Field(description="The phase entered.")
    reason: str = Field(description="Why.")
    message: str | None = Field(default=None, description="Detail.")


class Notice(ApiModel):
    """One notice to one target: what it is about, and whether it was sent."""

    key: str = Field(
        description=(
            "Dedupe key: the workflow uid, the step, its visit and the event (uid.end at the "
            "end). A resend (after a restart) carries the same key."
        )
    )
    target: str = Field(description="The spec.notify target.")
    event: str = Field(description="ApprovalRequested, CallbackRequested, or the final phase.")
    step: str | None = Field(default=None, description="The waiting step (unset: the end).")
    since: Time | None = Field(default=None, description="Since when the step waits.")
    until: Time | None = Field(default=None, description="Until when it waits (unset: forever).")
    attempts: int = Field(default=0, ge=0, description="Sends tried so far.")
    sending: bool | None = Field(default=None, description="A send is under way.")
    next_attempt_at: Time | None = Field(default=None, description="When the next send starts.")
    sent_at: Time | None = Field(default=None, description="When the target accepted it.")
    last_error: str | None = Field(default=None, description="Why the latest send failed.")


class MainResult(ApiModel):
    """How the main steps ended, kept while the finally steps run: the workflow ends with
    it if they all succeed, and cites it if one fails."""

    phase: WorkflowPhase = Field(description="Succeeded, Failed or Cancelled.")
    reason: str = Field(description="Why, in one word (StepFailed, Cancelled, DeadlineExceeded).")
    message: str = Field(description="Why, in a sentence.")
    finally_started_at: Time = Field(description="When the finally steps started.")
    finally_deadline: Time = Field(description="When they are cancelled if still running.")

    def after_finally(
        self, phase: WorkflowPhase, reason: str, message: str
    ) -> tuple[WorkflowPhase, str, str]:
        """The workflow's final (phase, reason, message), given how the finally steps ended:
        the main steps' result if they succeeded; Failed with both reasons if not."""
        if phase == WorkflowPhase.SUCCEEDED:
            return self.phase, self.reason, self.message
        before = f"the main steps had ended {self.phase} ({self.reason}: {self.message})"
        return WorkflowPhase.FAILED, reason, f"finally: {message}; {before}"


class WorkflowStatus(ApiModel):
    """The observed state of the workflow: this is its polling API."""

    phase: WorkflowPhase = Field(default=WorkflowPhase.PENDING, description="The workflow's phase.")
    current_step: str | None = Field(
        default=None, description="The first active step (see currentSteps)."
    )
    current_steps: list[str] | None = Field(default=None, description="All active steps.")
    progress: str | None = Field(default=None, description="Finished steps out of all, e.g. 3/5.")
    started_at: Time | None = Field(default=None, description="When the workflow started.")
    finished_at: Time | None = Field(default=None, description="When it finished.")
    next_wake_at: Time | None = Field(
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
    notifications: list[Notice] | None = Field(
        default=None, description="Notices to spec.notify targets (the latest 50)."
    )
    main: MainResult | None = Field(
        default=None,
        description="Set once the main steps have ended and the finally steps run.",
    )
    pins: dict[str, str] | None = Field(
        default=None,
        description=(
            "What steps fixed for the rest of the workflow, by key: the host keys ssh steps "
            "trusted on first use (acceptNew), as ssh:HOST:PORT -> public key."
        ),
    )


def failed_status(
    reason: str,
    message: str,
    at: datetime.datetime,
    *,
    started_at: datetime.datetime | None = None,
    generation: int | None = None,
) -> WorkflowStatus:
    """A workflow that failed before the engine could run it (an invalid spec, an engine
    fault): Failed, with its Succeeded=False condition."""
    return WorkflowStatus(
        phase=WorkflowPhase.FAILED,
        message=message,
        started_at=started_at,
        finished_at=at,
        observed_generation=generation,
        conditions=[
            Condition(
                type="Succeeded",
                status="False",
                reason=reason,
                message=message,
                last_transition_time=at,
                observed_generation=generation,
            )
        ],
    )
