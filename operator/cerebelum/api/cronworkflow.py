"""CronWorkflow: a Workflow started on a schedule, with CronJob's semantics (see
``engine.schedule`` for the decisions and README for the rules)."""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from cerebelum.api import API_VERSION
from cerebelum.api.base import ApiModel
from cerebelum.api.cron import parse_schedule, zone
from cerebelum.api.durations import Time, format_time
from cerebelum.api.spec import WorkflowSpec

CRON_KIND = "CronWorkflow"
CRON_PLURAL = "cronworkflows"
#: The label on every Workflow a CronWorkflow started: the CronWorkflow's name.
LABEL_CRON = "cerebelum.io/cron-workflow"
#: The annotation holding the scheduled time a Workflow was started for.
SCHEDULED_TIME = "cerebelum.io/scheduled-time"


def _schedule(text: str) -> str:
    parse_schedule(text)  # InvalidSchedule is a ValueError: pydantic reports it
    return text


def _zone(text: str) -> str:
    zone(text)
    return text


class ConcurrencyPolicy(StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class CronWorkflowSpec(ApiModel):
    """When to start a Workflow, what it runs, and how many finished ones to keep."""

    schedule: Annotated[str, AfterValidator(_schedule)] = Field(
        min_length=1,
        max_length=256,
        # The shape, at kubectl apply; each field's values the operator checks (InvalidSpec).
        pattern=r"^\s*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every\s+\S+|(\S+\s+){4}\S+)\s*$",
        description=(
            "Cron: 5 fields (minute hour day-of-month month day-of-week), a macro "
            "(@hourly @daily @weekly @monthly @yearly), or @every DURATION."
        ),
    )
    time_zone: Annotated[str, AfterValidator(_zone)] | None = Field(
        default=None, max_length=64, description="IANA time zone of the schedule (default UTC)."
    )
    concurrency_policy: ConcurrencyPolicy | None = Field(
        default=None,
        description=(
            "When a run is due while an earlier one is running: Allow (default) starts it; "
            "Forbid postpones it until none runs (within startingDeadlineSeconds); Replace "
            "cancels the running ones (their finally steps run) and starts it."
        ),
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        description=(
            "A run not started this long after its scheduled time is skipped (after downtime, "
            "or postponed by Forbid). Unset: no limit. Only the most recent missed run ever starts."
        ),
    )
    suspend: bool | None = Field(default=None, description="While true no run starts.")
    successful_history_limit: int | None = Field(
        default=None, ge=0, le=1000, description="Succeeded Workflows kept (default 3)."
    )
    failed_history_limit: int | None = Field(
        default=None, ge=0, le=1000, description="Failed or cancelled Workflows kept (default 1)."
    )
    workflow_spec: WorkflowSpec = Field(
        description=(
            "The spec of each Workflow: steps, or templateRef and inputs (the template is "
            "read at each run's start)."
        )
    )


class ActiveRun(ApiModel):
    name: str = Field(description="The Workflow.")
    scheduled_time: Time | None = Field(default=None, description="The time it was started for.")


class CronWorkflowStatus(ApiModel):
    """What the schedule did, and will do."""

    last_schedule_time: Time | None = Field(
        default=None, description="The scheduled time of the latest run started."
    )
    last_successful_time: Time | None = Field(
        default=None, description="When the latest run that succeeded finished."
    )
    next_schedule_time: Time | None = Field(
        default=None, description="The next scheduled time (unset while suspended)."
    )
    active: list[ActiveRun] | None = Field(default=None, description="Runs not finished.")
    message: str | None = Field(default=None, description="What happened at the latest due time.")
    observed_generation: int | None = Field(default=None, description="The spec acted on.")


def run_manifest(cron: dict[str, Any], name: str, scheduled: datetime.datetime) -> dict[str, Any]:
    """The Workflow of one run: the CronWorkflow's workflowSpec, labelled and owned by it
    (the garbage collector deletes the runs with the CronWorkflow)."""
    meta = cron["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {LABEL_CRON: meta["name"]},
            "annotations": {SCHEDULED_TIME: format_time(scheduled)},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": CRON_KIND,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": (cron.get("spec") or {}).get("workflowSpec") or {},
    }
