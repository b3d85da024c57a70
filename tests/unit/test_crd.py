"""crds/ (and the chart's copy) is generated from the pydantic models and must not go stale."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cerebelum.api.crd import OUTPUTS, build_crd, build_steprun_crd, render_all

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("folder", OUTPUTS)
def test_generated_crds_are_up_to_date(folder: str) -> None:
    expected = render_all()
    on_disk = {p.name: p.read_text() for p in (ROOT / folder).glob("*.yaml")}
    assert on_disk == expected, (
        f"{folder}/ is stale: run `python -m cerebelum.api.crd` and commit the result"
    )


def _walk(node: object, path: str = "") -> list[tuple[str, dict[str, object]]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found += _walk(value, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found += _walk(node[key], f"{path}[]")
    return found


@pytest.mark.parametrize("build", [build_crd, build_steprun_crd])
def test_every_field_is_described_and_structural(build: Callable[[], dict[str, Any]]) -> None:
    schema = build()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema["properties"]["spec"], "spec") + _walk(
        schema["properties"]["status"], "status"
    ):
        scalar_item = path.endswith("[]") and node.get("type") != "object"
        assert node.get("description") or scalar_item, (
            f"{path} has no description for kubectl explain"
        )
        untyped_ok = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-int-or-string"
        )
        assert "type" in node or untyped_ok, f"{path} has no type"
        assert "$ref" not in node and "anyOf" not in node


def test_crd_names_columns_and_selectable_phase() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["cbwf"] and names["categories"] == ["cerebelum"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]][:3] == [
        "Phase",
        "Step",
        "Progress",
    ]
    assert version["selectableFields"] == [{"jsonPath": ".status.phase"}]
    yaml.safe_dump(crd)  # serialisable as is
