"""A reconciliation's effects, planned purely: what to write, start, cancel, remove and post.

``prepare`` reads a cached Workflow into the engine's starting point (the repaired status,
the metadata, the typed inputs). After the engine has settled, ``plan`` turns the outcome
into a ``Plan`` that ``Runtime.apply`` carries out in one small place. The rule the
operator exists for is here, where it is tested: an attempt that needs I/O starts only
after the write that records it (``start``), and when that write fails nothing of the pass
is recorded, so the results fed to it are given back and only attempts recorded earlier
(``resumed``) may run (``on_failed_write``).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import WorkflowPhase, WorkflowStatus
from cerebelum.engine import ActionCall, ActionResult, EventRecord, Input, Settled, WorkflowMeta
from cerebelum.engine.repair import load_status
from cerebelum.kube.events import one_event
from cerebelum.kube.inputs import (
    DECISION_ANNOTATIONS,
    cancel_requested,
    read_callbacks,
    read_decisions,
    to_remove,
    with_answers,
)
from cerebelum.kube.settings import CREATED_BY

#: The condition a workflow carries while its reconciliations keep failing.
RECONCILING = "Reconciling"


@dataclass(frozen=True)
class Prepared:
    """What one reconciliation starts from."""

    status: WorkflowStatus | None
    meta: WorkflowMeta
    #: Action results first, then what people said through annotations.
    inputs: tuple[Input, ...]
    #: The results among them (given back if the write fails).
    results: tuple[ActionResult, ...]
    #: Events about the input itself: annotations refused, status repaired.
    notes: tuple[EventRecord, ...]
    annotations: dict[str, str]
    #: Annotations read but refused (they go too).
    refused: tuple[str, ...]


def prepare(
    spec: WorkflowSpec,
    body: dict[str, Any],
    now: datetime.datetime,
    results: tuple[ActionResult, ...] = (),
    *,
    default_ttl: datetime.timedelta | None = None,
) -> Prepared:
    meta = body["metadata"]
    status, repaired = load_status(spec, body.get("status") or {}, now)
    annotations = dict(meta.get("annotations") or {})
    decisions, refused = read_decisions(annotations)
    callbacks, refused_callbacks, bad_keys = read_callbacks(annotations)
    notes = [*refused, *refused_callbacks]
    refused_keys = [*(DECISION_ANNOTATIONS if refused else ()), *bad_keys]
    if repaired:
        notes.append(EventRecord("Warning", "StatusRepaired", "; ".join(repaired)))
    return Prepared(
        status=status,
        meta=WorkflowMeta(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation", 1)),
            cancel_requested=cancel_requested(annotations),
            created_by=annotations.get(CREATED_BY) or None,
            default_ttl=default_ttl,
        ),
        inputs=(*results, *decisions, *callbacks),
        results=results,
        notes=tuple(notes),
        annotations=annotations,
        refused=tuple(refused_keys),
    )


@dataclass(frozen=True)
class FailedWrite:
    """What to do when the status write of a plan fails: nothing of the pass is recorded."""

    #: Results fed to the pass, for the next one.
    restore: tuple[ActionResult, ...] = ()
    #: Attempts recorded by an earlier write: they may run all the same.
    start: tuple[ActionCall, ...] = ()


@dataclass(frozen=True)
class Plan:
    #: The status to write (None: unchanged, nothing to write).
    write: dict[str, Any] | None
    #: Attempts to start once the write has succeeded (at once, without a write).
    start: tuple[ActionCall, ...] = ()
    on_failed_write: FailedWrite = field(default_factory=FailedWrite)
    #: Running attempts to cancel (before the write: the engine has moved on from them).
    cancel: tuple[str, ...] = ()
    #: When to look again.
    wake_at: datetime.datetime | None = None
    #: More inline work is waiting: look again at once.
    requeue: bool = False
    #: Annotations read, to remove after the write (each with the value it must still
    #: hold, or None: remove whatever it holds).
    remove_annotations: dict[str, str | None] = field(default_factory=dict)
    #: The one Event of this reconciliation (before rate limiting), if any.
    event: EventRecord | None = None
    #: The workflow's phase changed to this (for the log, and cleanup once finished).
    phase_changed: WorkflowPhase | None = None
    #: The workflow has finished and has StepRuns to delete.
    delete_stepruns: bool = False
    #: Its ttlAfterFinished has passed: delete it, and what it owns.
    delete: bool = False


def plan(spec: WorkflowSpec, body: dict[str, Any], start: Prepared, settled: Settled) -> Plan:
    old = body.get("status") or {}
    final = settled.status
    # This pass succeeded, so a Reconciling=False condition of earlier failures goes.
    final.conditions = [c for c in final.conditions or [] if c.type != RECONCILING] or None
    wire = final.to_wire()
    changed = wire != old
    old_phase = old.get("phase") if isinstance(old, dict) else None
    phase_changed = final.phase if changed and final.phase != old_phase else None
    return Plan(
        write=wire if changed else None,
        start=tuple(settled.calls),
        on_failed_write=FailedWrite(
            restore=start.results, start=tuple(c for c in settled.calls if c.resumed)
        ),
        cancel=tuple(settled.cancel),
        wake_at=settled.wake_at,
        requeue=settled.exhausted,
        remove_annotations=to_remove(start.annotations, settled.consumed, start.refused),
        event=one_event(with_answers([*start.notes, *settled.events], start.meta.name)),
        phase_changed=phase_changed,
        delete=settled.delete,
        delete_stepruns=phase_changed is not None
        and phase_changed.finished
        and any(s.python for s in spec.all_steps()),
    )
