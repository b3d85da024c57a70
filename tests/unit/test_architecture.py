"""The shape of the code: one home per step kind, tables that agree, layers that hold.

The "adding a step kind" checklist of docs/architecture.md is checked here against the
tree, and the tables every part reads (phases, step kinds, action kinds) against each other,
so a kind that is only half wired fails a test instead of failing silently in a view.
"""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from pathlib import Path

import cerebelum.sdk.steps as sdk_steps
from cerebelum.actions import KINDS as ACTION_KINDS_REGISTRY
from cerebelum.api.spec import ACTION_KINDS, Step
from cerebelum.api.status import (
    STEP_PHASES,
    WORKFLOW_PHASES,
    StepPhase,
    StepStatus,
    WorkflowPhase,
)
from cerebelum.engine.kinds import KINDS
from cerebelum.engine.types import Input

ROOT = Path(__file__).resolve().parents[2]
CHECKLIST_LIMIT = 6


def _checklist() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Adding a step kind", 1)[1].split("\n\n", 2)[1:]
    items = re.findall(r"^\d+\. `([^`]+)`", "\n\n".join(section), re.M)
    assert items, "the checklist is a numbered list of `paths`"
    return items


def test_the_step_kind_checklist_names_at_most_six_source_files_that_exist() -> None:
    files = _checklist()
    assert len(files) <= CHECKLIST_LIMIT, files
    for name in files:
        path = ROOT / name.replace("<kind>", "sleep")
        assert path.is_file(), f"the checklist names {name}, which is not there"


def test_every_phase_is_in_the_table_and_every_waiting_phase_has_a_wait() -> None:
    assert set(STEP_PHASES) == set(StepPhase)
    assert set(WORKFLOW_PHASES) == set(WorkflowPhase)
    for phase, info in STEP_PHASES.items():
        if info.waiting:
            assert phase in KINDS.waits, f"{phase} waits but no module waits in it"
            assert info.deadline is not None
            head = info.deadline.split(".")[0]
            assert head in StepStatus.model_fields, f"{phase}: no status field {head}"
        if info.workflow is not None:
            assert info.workflow in WORKFLOW_PHASES
    for phase, wait in KINDS.waits.items():
        assert wait.phase == phase and STEP_PHASES[phase].waiting


def test_every_stage_has_a_spec_field_and_an_sdk_declaration() -> None:
    classes: list[typing.Any] = [c for c in vars(sdk_steps).values() if isinstance(c, type)]
    declarations = {cls.key for cls in classes if isinstance(getattr(cls, "key", None), str)}
    for stage in KINDS.stages:
        if stage.name == "action":
            continue  # the action kinds have their own registry (below)
        assert stage.name in Step.model_fields, f"stage {stage.name} has no spec field"
        assert stage.name in declarations, f"stage {stage.name} has no SDK declaration"


def test_every_input_type_has_one_handler() -> None:
    assert set(KINDS.inputs) == set(typing.get_args(Input))


def test_the_action_registry_has_every_action_kind_of_the_spec() -> None:
    assert set(ACTION_KINDS_REGISTRY) == set(ACTION_KINDS)
    for name, kind in ACTION_KINDS_REGISTRY.items():
        assert kind.name == name and name in Step.model_fields


def test_importing_the_sdk_loads_neither_the_actions_nor_the_shell() -> None:
    code = (
        "import sys, cerebelum\n"
        "bad = [m for m in sys.modules if m.startswith(('cerebelum.actions', 'cerebelum.kube',"
        " 'cerebelum.worker', 'kopf', 'aiohttp'))]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""


def test_the_engine_has_no_module_over_about_400_lines() -> None:
    for path in (ROOT / "operator" / "cerebelum" / "engine").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name
