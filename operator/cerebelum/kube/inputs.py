"""What reaches a workflow from outside through its annotations, and how to answer it.

People answer a workflow with annotations (``kubectl annotate``, ``cerebelum approve``),
checked by the admission webhook when it runs. This module turns them into the engine's
typed inputs, names the annotations to remove once the engine has read them (so they can
never act twice), and adds to an Event the command that answers it. Every annotation key
the operator reads lives in ``kube.settings``; nothing below the shell knows them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from cerebelum.engine import ApprovalDecision, EventRecord, Input
from cerebelum.kube import settings as names

#: Annotations a decision is made of: all of them go once it is read.
DECISION_ANNOTATIONS = (
    names.APPROVE,
    names.REJECT,
    names.REASON,
    names.APPROVAL_DATA,
    names.DECIDED_BY,
)


def read_decisions(
    annotations: Mapping[str, str],
) -> tuple[tuple[ApprovalDecision, ...], list[EventRecord]]:
    """Approval decisions from the object's annotations, and Events about those not applied.

    A rejection wins over an approval of the same step given at the same time (the safe
    choice). An approval whose ``approval-data`` is not JSON is not applied: the step would
    get a string it did not ask for (the webhook refuses it; this covers clusters without).
    """
    reason = annotations.get(names.REASON) or None
    decided_by = annotations.get(names.DECIDED_BY) or None
    rejected = (annotations.get(names.REJECT) or "").strip()
    approved = (annotations.get(names.APPROVE) or "").strip()
    notes: list[EventRecord] = []
    decisions = []
    if rejected:
        decisions.append(ApprovalDecision(rejected, False, reason, None, decided_by))
    if approved and approved == rejected:
        notes.append(
            EventRecord(
                "Warning",
                "ConflictingDecision",
                f"both {names.APPROVE} and {names.REJECT} name step {approved}: the rejection "
                "wins, because a rejection always takes precedence over an approval given at "
                "the same time",
            )
        )
    elif approved:
        raw_data = annotations.get(names.APPROVAL_DATA)
        try:
            data = json.loads(raw_data) if raw_data else None
        except json.JSONDecodeError as exc:
            notes.append(
                EventRecord(
                    "Warning",
                    "InvalidApprovalData",
                    f"approval of step {approved} not applied: {names.APPROVAL_DATA} is not "
                    f"JSON ({exc.msg} at character {exc.pos}); annotate again with JSON, "
                    f"e.g. {names.APPROVAL_DATA}='{{\"ticket\": 42}}' or '\"text\"'",
                )
            )
        else:
            decisions.append(ApprovalDecision(approved, True, reason, data, decided_by))
    return tuple(decisions), notes


def cancel_requested(annotations: Mapping[str, str]) -> bool:
    return names.CANCEL in annotations


def to_remove(
    annotations: Mapping[str, str], consumed: Sequence[Input], refused: bool
) -> list[str]:
    """The annotations to remove: those of every input read, applied or refused."""
    if not consumed and not refused:
        return []
    return [key for key in DECISION_ANNOTATIONS if key in annotations]


def with_answers(events: Sequence[EventRecord], workflow: str) -> list[EventRecord]:
    """Events that ask someone to act, with the command that does it."""
    out = []
    for event in events:
        if event.reason == "ApprovalRequested" and event.step is not None:
            hint = f"kubectl annotate workflow {workflow} {names.APPROVE}={event.step}"
            event = EventRecord(event.type, event.reason, f"{event.message}: {hint}", event.step)
        out.append(event)
    return out
