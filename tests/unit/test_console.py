"""What the cerebelum command prints, from Workflow objects and a fake now."""

from __future__ import annotations

import datetime
from typing import Any

from cerebelum.console import history_table, human, progress_line, status_report, workflow_table

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def obj(status: dict[str, Any], steps: tuple[str, ...] = ("a", "gate", "nap")) -> dict[str, object]:
    return {
        "metadata": {"name": "wf", "namespace": "ns", "creationTimestamp": "2026-01-01T11:58:30Z"},
        "spec": {"steps": [{"name": s} for s in steps]},
        "status": status,
    }


def test_human_durations() -> None:
    assert [human(s) for s in (0, 0.25, 59, 60, 3725, 7200)] == [
        "0s",
        "0.2s",
        "59s",
        "1m",
        "1h2m5s",
        "2h",
    ]


def test_table_lists_phase_step_progress_and_age() -> None:
    text = workflow_table(
        [obj({"phase": "Sleeping", "currentStep": "nap", "progress": "2/3"})], NOW
    )
    assert text.splitlines()[0].split() == ["NAME", "PHASE", "STEP", "PROGRESS", "AGE"]
    assert text.splitlines()[1].split() == ["wf", "Sleeping", "nap", "2/3", "1m30s"]


def test_status_shows_what_each_step_waits_for_and_how_long() -> None:
    status = {
        "phase": "WaitingForApproval",
        "progress": "1/3",
        "nextWakeAt": "2026-01-01T12:10:00.000Z",
        "steps": {
            "a": {"phase": "Succeeded", "attempts": 1},
            "gate": {
                "phase": "WaitingForApproval",
                "approval": {"deadline": "2026-01-01T12:10:00.000Z", "message": "ship it?"},
            },
            "nap": {"phase": "Pending"},
        },
    }
    text = status_report(obj(status), NOW)
    assert "Workflow ns/wf: WaitingForApproval (1/3)" in text
    assert "next wake-up: 2026-01-01T12:10:00.000Z (10m left)" in text
    assert "waiting for approval until 2026-01-01T12:10:00.000Z (10m left): ship it?" in text
    sleeping = {"steps": {"nap": {"phase": "Sleeping", "sleepUntil": "2026-01-01T12:00:30.000Z"}}}
    assert "sleeping until 2026-01-01T12:00:30.000Z (30s left)" in status_report(obj(sleeping), NOW)
    decided = {
        "steps": {
            "gate": {"phase": "Succeeded", "approval": {"decision": "Approved", "decidedBy": "al"}}
        }
    }
    assert "approved by al" in status_report(obj(decided), NOW)


def test_progress_bar_and_history() -> None:
    assert progress_line(
        obj({"phase": "Polling", "progress": "1/3", "currentStep": "gate"}), width=6
    ) == ("[==>   ] 1/3 Polling gate")
    assert (
        progress_line(obj({"phase": "Succeeded", "progress": "3/3"}), width=6)
        == "[======] 3/3 Succeeded"
    )
    history = obj(
        {
            "history": [
                {"time": "t1", "phase": "Running", "reason": "Started"},
                {"time": "t2", "step": "a", "phase": "Succeeded", "reason": "Succeeded"},
            ]
        }
    )
    assert history_table(history).splitlines()[2].split() == ["t2", "a", "Succeeded", "Succeeded"]
