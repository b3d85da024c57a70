"""What the ``cerebelum`` command prints: tables, step status with time remaining, progress.

Pure functions of a Workflow object and ``now``, so they are tested without a cluster.
Time remaining is what Cerebelum's status API called ``sleep_info`` / ``approval_info``.
"""

from __future__ import annotations

import datetime
from typing import Any

from cerebelum.api.durations import parse_time
from cerebelum.api.status import WORKFLOW_PHASES, StepPhase, step_phase_info, wire_deadline

#: Workflow phases that are final, as they are written on the wire.
FINISHED = tuple(phase.value for phase, info in WORKFLOW_PHASES.items() if info.final)


def human(seconds: float) -> str:
    """3725 -> '1h2m5s'; sub-second values keep one decimal."""
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs or not whole else "",
    ]
    return "".join(parts) or "0s"


def _age(obj: dict[str, Any], now: datetime.datetime) -> str:
    created = obj.get("metadata", {}).get("creationTimestamp")
    return human((now - parse_time(created)).total_seconds()) if created else "?"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def workflow_table(
    items: list[dict[str, Any]], now: datetime.datetime, *, namespaces: bool = False
) -> str:
    head = ["NAMESPACE"] if namespaces else []
    rows = [[*head, "NAME", "PHASE", "STEP", "PROGRESS", "AGE"]]
    for obj in items:
        status = obj.get("status") or {}
        ns = [obj["metadata"]["namespace"]] if namespaces else []
        rows.append(
            [
                *ns,
                obj["metadata"]["name"],
                status.get("phase", "Pending"),
                status.get("currentStep") or "",
                status.get("progress") or "",
                _age(obj, now),
            ]
        )
    return table(rows)


def _waiting_for(step: dict[str, Any], now: datetime.datetime) -> str:
    """What a step waits for, and for how long still."""

    def until(stamp: str | None, what: str) -> str:
        if not stamp:
            return what
        left = (parse_time(stamp) - now).total_seconds()
        return f"{what} until {stamp} ({human(max(left, 0))} left)"

    phase = step.get("phase")
    info = step_phase_info(phase)
    if info is not None and info.waiting and info.label:
        text = until(wire_deadline(step), info.label)
        detail = None
        if phase == StepPhase.WAITING_FOR_APPROVAL:
            approval = step.get("approval") or {}
            detail = approval.get("message")
            if approval.get("required"):
                have = len(
                    {
                        v["by"]
                        for v in approval.get("votes") or []
                        if v.get("decision") == "Approved"
                    }
                )
                tally = f"{have} of {approval['required']} approvals"
                detail = f"{tally}; {detail}" if detail else tally
        elif phase == StepPhase.WAITING_FOR_CALLBACK:
            beat = (step.get("callback") or {}).get("lastHeartbeatAt")
            detail = f"last heartbeat {beat}" if beat else None
        return f"{text}: {detail}" if detail else text
    if phase == StepPhase.FAILED and step.get("error"):
        return f"{step['error'].get('errorClass')}: {step['error'].get('message')}"
    callback = step.get("callback") or {}
    if callback.get("receivedAt"):
        by = f" via {callback['receivedBy']}" if callback.get("receivedBy") else ""
        return f"called back{by} at {callback['receivedAt']}"
    approval = step.get("approval") or {}
    if approval.get("decision"):
        by = f" by {approval['decidedBy']}" if approval.get("decidedBy") else ""
        return f"{approval['decision'].lower()}{by}"
    return ""


def spec_steps(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The main steps, then the finally steps."""
    spec = obj["spec"]
    return [*(spec.get("steps") or []), *(spec.get("finally") or [])]


def status_report(obj: dict[str, Any], now: datetime.datetime) -> str:
    status = obj.get("status") or {}
    name = obj["metadata"]["name"]
    lines = [
        f"Workflow {obj['metadata']['namespace']}/{name}: {status.get('phase', 'Pending')} "
        f"({status.get('progress') or '0/' + str(len(spec_steps(obj)))})"
    ]
    if status.get("message"):
        lines.append(f"  {status['message']}")
    if status.get("nextWakeAt"):
        left = (parse_time(status["nextWakeAt"]) - now).total_seconds()
        lines.append(f"  next wake-up: {status['nextWakeAt']} ({human(max(left, 0))} left)")
    rows = [["STEP", "PHASE", "ATTEMPTS", "DETAIL"]]
    final = {f["name"] for f in obj["spec"].get("finally") or []}
    for spec_step in spec_steps(obj):
        step = (status.get("steps") or {}).get(spec_step["name"]) or {}
        rows.append(
            [
                spec_step["name"] + (" (finally)" if spec_step["name"] in final else ""),
                step.get("phase", "Pending"),
                str(step.get("attempts", 0)),
                _waiting_for(step, now),
            ]
        )
    lines.append("")
    lines.append(table(rows))
    notices = status.get("notifications") or []
    if notices:
        lines.append("")
        lines.append("Notifications:")
        for n in notices:
            if n.get("sentAt"):
                state = f"sent {n['sentAt']}"
            elif n.get("lastError"):
                state = f"failed {n.get('attempts', 0)}x ({n['lastError']})"
                if n.get("nextAttemptAt"):
                    state += f", next try {n['nextAttemptAt']}"
            else:
                state = "sending"
            lines.append(f"  {n.get('target')}: {n.get('event')} {n.get('step') or ''} {state}")
    return "\n".join(lines)


def progress_line(obj: dict[str, Any], width: int = 24) -> str:
    status = obj.get("status") or {}
    total = len(spec_steps(obj))
    done = int((status.get("progress") or f"0/{total}").split("/")[0])
    filled = round(width * done / total) if total else width
    bar = "=" * filled + (">" if filled < width else "") + " " * max(width - filled - 1, 0)
    current = status.get("currentStep")
    where = f" {current}" if current and status.get("phase") not in FINISHED else ""
    return f"[{bar}] {done}/{total} {status.get('phase', 'Pending')}{where}"


def history_table(obj: dict[str, Any]) -> str:
    rows = [["TIME", "STEP", "PHASE", "REASON", "MESSAGE"]]
    for entry in (obj.get("status") or {}).get("history") or []:
        rows.append(
            [
                entry["time"],
                entry.get("step") or "-",
                entry["phase"],
                entry["reason"],
                entry.get("message") or "",
            ]
        )
    return table(rows)


def template_table(items: list[dict[str, Any]], now: datetime.datetime) -> str:
    """WorkflowTemplates: their inputs (required ones starred, defaults shown) and steps."""
    rows = [["NAME", "INPUTS", "STEPS", "AGE"]]
    for t in items:
        spec = t.get("spec") or {}
        schema = spec.get("inputs") or {}
        required = set(schema.get("required") or [])
        inputs = []
        for name, prop in (schema.get("properties") or {}).items():
            text = name + ("*" if name in required else "")
            if prop.get("type"):
                text += f":{prop['type']}"
            if prop.get("default") is not None:
                text += f"={prop['default']}"
            inputs.append(text)
        created = t["metadata"].get("creationTimestamp")
        age = human((now - parse_time(created)).total_seconds()) if created else ""
        steps = len(spec.get("steps") or []) + len(spec.get("finally") or [])
        rows.append([t["metadata"]["name"], " ".join(inputs) or "-", str(steps), age])
    return table(rows) + "\n(* required)"
