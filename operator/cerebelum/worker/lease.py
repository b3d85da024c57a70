"""Claims and leases on StepRuns, as pure functions of (status, now).

A worker claims a StepRun by writing ``claimedBy`` and ``leaseExpiresAt`` with the
resourceVersion it read: the API server refuses every write but the first, so exactly one
worker wins. The winner renews the lease while the function runs; if it dies, the lease runs
out and the StepRun may be claimed again (``claims`` counts the takeovers).

``claims`` is also the fencing token: a result carries the claim it was written under
(``resultClaim``), and the operator takes a result only under the current claim. The
resourceVersion check already refuses a late write of a worker that froze past its lease;
the token makes that visible, checkable by anyone, and available to the step's own side
effects (``context.fencing_token``).
"""

from __future__ import annotations

import datetime

from cerebelum.api.durations import format_time, parse_time
from cerebelum.api.status import StepError
from cerebelum.api.steprun import StepRunPause, StepRunPhase, StepRunStatus


def lease_expiry(status: StepRunStatus) -> datetime.datetime | None:
    if status.phase != StepRunPhase.RUNNING or not status.lease_expires_at:
        return None
    return parse_time(status.lease_expires_at)


def claimable(status: StepRunStatus, now: datetime.datetime) -> bool:
    """Unclaimed, or claimed by a worker whose lease has run out."""
    if status.phase == StepRunPhase.PENDING:
        return True
    expiry = lease_expiry(status)
    return expiry is not None and expiry <= now


def claim(
    status: StepRunStatus, worker: str, now: datetime.datetime, lease: datetime.timedelta
) -> StepRunStatus:
    taken_over = status.phase == StepRunPhase.RUNNING
    message = f"claimed by {worker}"
    if taken_over:
        message += f" after the lease of {status.claimed_by} ran out"
    return StepRunStatus(
        phase=StepRunPhase.RUNNING,
        claimed_by=worker,
        claimed_at=format_time(now),
        lease_expires_at=format_time(now + lease),
        claims=status.claims + 1,
        message=message,
    )


def renew(
    status: StepRunStatus, now: datetime.datetime, lease: datetime.timedelta
) -> StepRunStatus:
    return status.model_copy(update={"lease_expires_at": format_time(now + lease)})


def holds(status: StepRunStatus, worker: str, claims: int) -> bool:
    """Whether ``worker``'s claim number ``claims`` is still the live one (a result written
    under an older claim does not end it: that result is stale)."""
    return (
        (status.phase == StepRunPhase.RUNNING or stale_result(status))
        and status.claimed_by == worker
        and status.claims == claims
    )


def stale_result(status: StepRunStatus) -> bool:
    """A finished StepRun whose result was written under a claim that is not the current
    one: a worker that lost its lease wrote it. It is not the attempt's result."""
    return status.phase.finished and status.result_claim not in (None, status.claims)


def succeeded(
    status: StepRunStatus,
    value: object,
    checks: dict[str, bool] | None,
    now: datetime.datetime,
    pause: StepRunPause | None = None,
) -> StepRunStatus:
    return status.model_copy(
        update={
            "pause": pause,
            "phase": StepRunPhase.SUCCEEDED,
            "lease_expires_at": None,
            "finished_at": format_time(now),
            "result": {"ok": value},
            "result_claim": status.claims,
            "checks": checks or None,
            "message": f"finished on {status.claimed_by}",
        }
    )


def failed(status: StepRunStatus, error: StepError, now: datetime.datetime) -> StepRunStatus:
    return status.model_copy(
        update={
            "phase": StepRunPhase.FAILED,
            "lease_expires_at": None,
            "finished_at": format_time(now),
            "result": {"error": error.message},
            "result_claim": status.claims,
            "error": error,
            "message": f"failed on {status.claimed_by}: {error.error_class}",
        }
    )
