"""What the UI's pages show, computed from Workflow objects: pure functions, so the list of
10,000 workflows, the "waiting for me" inbox and the graph of a workflow are tested (and
benchmarked) without a browser or an API server.

The browser renders these dicts with ``textContent`` only: nothing here is HTML.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from cerebelum.api.durations import parse_time
from cerebelum.api.spec import ApprovalSpec, Approvers

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
FINISHED = ("Succeeded", "Failed", "Cancelled")


def _time(value: Any) -> datetime.datetime | None:
    try:
        return parse_time(value) if value else None
    except (TypeError, ValueError):
        return None


def _steps(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [*(spec.get("steps") or []), *(spec.get("finally") or [])]


def summary(obj: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the list."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    steps = status.get("steps") or {}
    waiting = [n for n, s in steps.items() if (s or {}).get("phase") == "WaitingForApproval"]
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "phase": status.get("phase") or "Pending",
        "progress": status.get("progress"),
        "currentStep": status.get("currentStep"),
        "message": status.get("message"),
        "created": meta.get("creationTimestamp"),
        "startedAt": status.get("startedAt"),
        "finishedAt": status.get("finishedAt"),
        "nextWakeAt": status.get("nextWakeAt"),
        "approvals": waiting,
        "cron": (meta.get("labels") or {}).get("cerebelum.io/cron-workflow"),
    }


def list_page(
    items: Iterable[Mapping[str, Any]],
    *,
    phases: set[str] | None = None,
    query: str = "",
    page: int = 1,
    size: int = PAGE_SIZE,
) -> dict[str, Any]:
    """A page of the list of these workflows (see ``list_rows``)."""
    return list_rows(
        (summary(obj) for obj in items), phases=phases, query=query, page=page, size=size
    )


def list_rows(
    rows: Iterable[dict[str, Any]],
    *,
    phases: set[str] | None = None,
    query: str = "",
    page: int = 1,
    size: int = PAGE_SIZE,
) -> dict[str, Any]:
    """A page of the list, newest first, filtered by phase and by a search in names,
    current steps and messages; with the count of each phase (for the filter chips).
    ``rows`` are ``summary`` rows, which the cache keeps up to date as changes arrive."""
    size = max(1, min(size, MAX_PAGE_SIZE))
    needle = query.strip().lower()
    counts: dict[str, int] = {}
    chosen = []
    for row in rows:
        counts[row["phase"]] = counts.get(row["phase"], 0) + 1
        if phases and row["phase"] not in phases:
            continue
        if needle and not any(
            needle in str(row[k] or "").lower() for k in ("name", "currentStep", "message")
        ):
            continue
        chosen.append(row)
    chosen.sort(key=lambda r: (r["created"] or "", r["name"] or ""), reverse=True)
    pages = max(1, -(-len(chosen) // size))
    page = max(1, min(page, pages))
    return {
        "items": chosen[(page - 1) * size : page * size],
        "total": len(chosen),
        "page": page,
        "pages": pages,
        "counts": counts,
    }


def approval_of(obj: Mapping[str, Any], step: str) -> ApprovalSpec | None:
    for s in _steps(obj.get("spec") or {}):
        if s.get("name") == step and s.get("approval") is not None:
            try:
                return ApprovalSpec.model_validate(s["approval"])
            except ValueError:
                return None
    return None


def may_decide(obj: Mapping[str, Any], step: str, user: str, groups: list[str]) -> tuple[bool, str]:
    """Whether this user may decide the gate, and if not, why (the webhook's rules: the
    approvers list, and no self-approval when the gate refuses it)."""
    gate = approval_of(obj, step)
    if gate is None:
        return False, f"step {step} has no approval"
    if not (gate.approvers or Approvers()).admits(user, groups):
        return False, f"{user} is not among the approvers of {step}"
    creator = ((obj.get("metadata") or {}).get("annotations") or {}).get("cerebelum.io/created-by")
    if gate.allow_self_approval is False and creator and creator == user:
        return False, f"{user} created this workflow, and {step} refuses self-approval"
    return True, ""


def waiting_for(
    items: Iterable[Mapping[str, Any]], user: str, groups: list[str]
) -> list[dict[str, Any]]:
    """The gates open now that this user may decide, the soonest deadline first."""
    out = []
    for obj in items:
        steps = (obj.get("status") or {}).get("steps") or {}
        for name, s in steps.items():
            if (s or {}).get("phase") != "WaitingForApproval":
                continue
            allowed, _ = may_decide(obj, name, user, groups)
            if not allowed:
                continue
            approval = s.get("approval") or {}
            gate = approval_of(obj, name)
            out.append(
                {
                    "namespace": obj["metadata"]["namespace"],
                    "workflow": obj["metadata"]["name"],
                    "step": name,
                    "message": approval.get("message") or (gate.message if gate else None),
                    "requestedAt": approval.get("requestedAt"),
                    "deadline": approval.get("deadline"),
                    "required": gate.required if gate else None,
                    "votes": approval.get("votes"),
                }
            )
    out.sort(key=lambda w: (w["deadline"] is None, w["deadline"] or "", w["workflow"]))
    return out


def graph(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The steps as a graph: a node per step (its phase, column and row), ``after`` edges
    (dependsOn, or list order), ``goto`` edges (next rules, timeouts, rejections) and the
    finally steps in a lane after the rest."""
    spec = obj.get("spec") or {}
    status = (obj.get("status") or {}).get("steps") or {}
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    column_of: dict[str, int] = {}
    offset = 0
    for part in ("steps", "finally"):
        steps = spec.get(part) or []
        previous: str | None = None
        rows: dict[int, int] = {}
        for s in steps:
            name = s["name"]
            deps = s.get("dependsOn")
            deps = list(deps) if deps is not None else ([previous] if previous else [])
            column = max((column_of.get(d, offset - 1) + 1 for d in deps), default=offset)
            column_of[name] = column
            row = rows.get(column, 0)
            rows[column] = row + 1
            st = status.get(name) or {}
            nodes.append(
                {
                    "name": name,
                    "part": part,
                    "kind": _kind(s),
                    "phase": st.get("phase") or "Pending",
                    "column": column,
                    "row": row,
                }
            )
            edges += [{"from": d, "to": name, "type": "after"} for d in deps]
            edges += [{"from": name, "to": t, "type": "goto"} for t in _gotos(s)]
            previous = name
        if steps and part == "steps":
            offset = max(column_of.values()) + 1
            last = [n["name"] for n in nodes if n["column"] == offset - 1]
            final = spec.get("finally") or []
            if final:
                edges += [{"from": n, "to": final[0]["name"], "type": "finally"} for n in last]
    return {"nodes": nodes, "edges": edges}


_KINDS = ("http", "tcp", "ssh", "digitalocean", "job", "python", "noop", "fail")


def _kind(step: Mapping[str, Any]) -> str:
    parts = [k for k in ("sleep", "approval") if k in step]
    action = next((k for k in _KINDS if k in step), None)
    if action:
        parts.append(action)
    parts += [k for k in ("poll", "retry", "callback") if k in step]
    return " + ".join(parts) or "step"


def _gotos(step: Mapping[str, Any]) -> list[str]:
    targets = [r["goto"] for r in step.get("next") or [] if isinstance(r, dict) and r.get("goto")]
    for gate in ("approval", "poll"):
        if (step.get(gate) or {}).get("timeoutGoto"):
            targets.append(step[gate]["timeoutGoto"])
    if (step.get("approval") or {}).get("rejectGoto"):
        targets.append(step["approval"]["rejectGoto"])
    return targets


def timeline(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per step, what it did and what it waits for: attempts, times, the deadline that
    will wake it (sleepUntil, nextAttemptAt, the approval's or callback's deadline), its
    output and error."""
    status = (obj.get("status") or {}).get("steps") or {}
    rows = []
    for s in _steps(obj.get("spec") or {}):
        st = status.get(s["name"]) or {}
        deadline = (
            st.get("sleepUntil")
            or st.get("nextAttemptAt")
            or (st.get("approval") or {}).get("deadline")
            or (st.get("callback") or {}).get("deadline")
        )
        rows.append(
            {
                "name": s["name"],
                "phase": st.get("phase") or "Pending",
                "attempts": st.get("attempts", 0),
                "visits": st.get("visits", 0),
                "startedAt": st.get("startedAt"),
                "finishedAt": st.get("finishedAt"),
                "lastAttemptAt": st.get("lastAttemptAt"),
                "deadline": deadline if st.get("phase") not in FINISHED else None,
                "message": st.get("message"),
                "output": st.get("output"),
                "error": st.get("error"),
                "approval": st.get("approval"),
                "gate": s.get("approval"),
            }
        )
    return rows


def detail(obj: Mapping[str, Any], user: str, groups: list[str]) -> dict[str, Any]:
    """Everything the page of one workflow shows."""
    status = obj.get("status") or {}
    rows = timeline(obj)
    for row in rows:
        if row["phase"] == "WaitingForApproval":
            allowed, why = may_decide(obj, row["name"], user, groups)
            row["mayDecide"], row["whyNot"] = allowed, why
    return {
        "summary": summary(obj),
        "spec": obj.get("spec") or {},
        "graph": graph(obj),
        "steps": rows,
        "history": status.get("history") or [],
        "conditions": status.get("conditions") or [],
        "main": status.get("main"),
        "suspended": bool((obj.get("spec") or {}).get("suspend")),
        "finished": status.get("phase") in FINISHED,
    }
