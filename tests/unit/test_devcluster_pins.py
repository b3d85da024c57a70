"""The version constants and the pinning Go modules must name the same releases."""

from __future__ import annotations

import re

import pytest

from cerebelum.devcluster.binaries import tools_dir
from cerebelum.devcluster.pins import ETCD_VERSION, KUBERNETES_VERSION, TOOLS


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_pin_matches_go_mod(name: str) -> None:
    tool = TOOLS[name]
    go_mod = (tools_dir() / tool.module_dir / "go.mod").read_text()
    module = {
        "etcd": "go.etcd.io/etcd/server/v3",
        "kubernetes": "k8s.io/kubernetes",
        "helm": "helm.sh/helm/v3",
        "argo": "github.com/argoproj/argo-workflows/v3",
    }[tool.module_dir]
    required = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", go_mod, re.M)
    assert required, f"{module} is not required in {tool.module_dir}/go.mod"
    assert required.group(1) == tool.version
    tool_line = rf"^\s*(?:tool\s+)?{re.escape(tool.package)}\s*$"
    assert re.search(tool_line, go_mod, re.M), f"no tool directive for {tool.package}"


def test_staging_modules_all_map_to_the_same_release() -> None:
    go_mod = (tools_dir() / "kubernetes" / "go.mod").read_text()
    replaced = re.findall(r"^\s*(k8s\.io/\S+) => \1 (v\S+)$", go_mod, re.M)
    assert len(replaced) > 25
    staging = "v0." + KUBERNETES_VERSION.split(".", 1)[1]
    assert {version for _, version in replaced} == {staging}


def test_etcd_is_the_one_kubernetes_names() -> None:
    go_sum = (tools_dir() / "kubernetes" / "go.sum").read_text()
    assert f"go.etcd.io/etcd/client/v3 {ETCD_VERSION} " in go_sum


def test_e2e_kind_script_parses() -> None:
    """`make e2e-kind` cannot run here (no Docker); at least its script must parse."""
    import subprocess

    script = tools_dir().parents[0] / "e2e-kind.sh"
    result = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
