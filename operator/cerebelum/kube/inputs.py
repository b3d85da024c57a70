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
from cerebelum.engine.types import CallbackDelivery, CallbackOutcome
from cerebelum.kube import settings as names

#: Annotations a decision is made of: all of them go once it is read.
DECISION_ANNOTATIONS = (
    names.APPROVE,
    names.REJECT,
    names.REASON,
    names.APPROVAL_DATA,
    names.DECIDED_BY,
    names.CHOICE,
)
#: Annotations a callback given with kubectl is made of.
CALLBACK_ANNOTATIONS = (names.CALLBACK, names.CALLBACK_DATA, names.CALLBACK_OUTCOME)


def read_callbacks(
    annotations: Mapping[str, str],
) -> tuple[tuple[CallbackDelivery, ...], list[EventRecord], list[str]]:
    """Callback deliveries: those the HTTP endpoint accepted (``callback.cerebelum.io/STEP``,
    with the token's hash), and one given with ``kubectl annotate`` (RBAC decided; no
    token). One that cannot be read is refused with a Warning; its keys come third, to
    remove."""
    deliveries: list[CallbackDelivery] = []
    notes: list[EventRecord] = []
    bad: list[str] = []
    for key, raw in annotations.items():
        if not key.startswith(names.CALLBACK_RECEIVED_PREFIX):
            continue
        step = key[len(names.CALLBACK_RECEIVED_PREFIX) :]
        try:
            value = json.loads(raw)
            delivery = CallbackDelivery(
                step,
                CallbackOutcome(value["outcome"]),
                value.get("data"),
                token_hash=str(value["tokenHash"]),
                received_by="http",
            )
        except (ValueError, KeyError, TypeError):
            notes.append(
                EventRecord("Warning", "CallbackIgnored", f"{key} is not a callback record")
            )
            bad.append(key)
            continue
        deliveries.append(delivery)
    step = (annotations.get(names.CALLBACK) or "").strip()
    if step:
        raw_data = annotations.get(names.CALLBACK_DATA)
        outcome_text = (annotations.get(names.CALLBACK_OUTCOME) or "succeeded").strip().lower()
        bad += [key for key in CALLBACK_ANNOTATIONS if key in annotations]
        try:
            data = json.loads(raw_data) if raw_data else None
            outcome = CallbackOutcome(outcome_text)
        except json.JSONDecodeError as exc:
            notes.append(
                EventRecord(
                    "Warning",
                    "CallbackRefused",
                    f"callback of step {step} not applied: {names.CALLBACK_DATA} is not JSON "
                    f"({exc.msg} at character {exc.pos})",
                )
            )
        except ValueError:
            notes.append(
                EventRecord(
                    "Warning",
                    "CallbackRefused",
                    f"callback of step {step} not applied: {names.CALLBACK_OUTCOME} must be "
                    f"succeeded, failed or heartbeat, not {outcome_text!r}",
                )
            )
        else:
            bad = [key for key in bad if key not in CALLBACK_ANNOTATIONS]
            # "kubectl": who annotated is in the API server's audit log; the webhook does
            # not stamp callbacks, so a name given here could be anyone's.
            deliveries.append(CallbackDelivery(step, outcome, data, received_by="kubectl"))
    return tuple(deliveries), notes, bad


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
            choice = (annotations.get(names.CHOICE) or "").strip() or None
            decisions.append(ApprovalDecision(approved, True, reason, data, decided_by, choice))
    return tuple(decisions), notes


def cancel_requested(annotations: Mapping[str, str]) -> bool:
    return names.CANCEL in annotations


def to_remove(
    annotations: Mapping[str, str], consumed: Sequence[Input], refused: Sequence[str]
) -> dict[str, str | None]:
    """The annotations to remove: those of every input read (applied or not) and the keys
    ``refused`` as unreadable, each with the value it must still hold, or None. A
    ``callback.cerebelum.io/`` record goes only if it still holds the value read: a
    heartbeat the endpoint wrote meanwhile stays for the next reconciliation."""
    out: dict[str, str | None] = {key: None for key in refused if key in annotations}
    if any(isinstance(i, ApprovalDecision) for i in consumed):
        out.update({key: None for key in DECISION_ANNOTATIONS if key in annotations})
    callbacks = [i for i in consumed if isinstance(i, CallbackDelivery)]
    if any(c.token_hash is None for c in callbacks):
        out.update({key: None for key in CALLBACK_ANNOTATIONS if key in annotations})
    for c in callbacks:
        key = names.CALLBACK_RECEIVED_PREFIX + c.step
        if c.token_hash is not None and key in annotations:
            out[key] = annotations[key]
    return out


def with_answers(events: Sequence[EventRecord], workflow: str) -> list[EventRecord]:
    """Events that ask someone to act, with the command that does it."""
    out = []
    for event in events:
        if event.reason == "ApprovalRequested" and event.step is not None:
            hint = f"kubectl annotate workflow {workflow} {names.APPROVE}={event.step}"
            event = EventRecord(event.type, event.reason, f"{event.message}: {hint}", event.step)
        elif event.reason == "CallbackRequested" and event.step is not None:
            hint = (
                f"POST to its callback URL, or kubectl annotate workflow {workflow} "
                f"{names.CALLBACK}={event.step} {names.CALLBACK_DATA}='{{...}}'"
            )
            event = EventRecord(event.type, event.reason, f"{event.message}: {hint}", event.step)
        out.append(event)
    return out
