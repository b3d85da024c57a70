"""hack/constraints.txt pins the Python packages `make test` and the image install: every
one pyproject.toml asks for, at a version it allows, and what those need in turn.

Without the pins, a fresh clone would test whatever PyPI released since the suite last
passed (a new ruff rule, a mypy, a pytest-asyncio) rather than the code.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "hack" / "constraints.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
_REPIN = "re-pin with `make constraints`, run `make test`, and commit hack/constraints.txt"


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _PIN.match(line.strip())
        assert match, f"hack/constraints.txt:{number}: not an exact pin (name==version): {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"hack/constraints.txt:{number}: {name} pinned twice"
        pins[name] = match.group(2)
    return pins


def _declared() -> list[tuple[str, Requirement]]:
    """Every requirement in pyproject.toml, with where it is declared."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = [("dependencies", Requirement(r)) for r in project["project"]["dependencies"]]
    for extra, requirements in project["project"]["optional-dependencies"].items():
        found += [(f"[{extra}]", Requirement(r)) for r in requirements]
    found += [("[build-system]", Requirement(r)) for r in project["build-system"]["requires"]]
    return found


def test_every_declared_requirement_is_pinned_at_a_version_it_allows() -> None:
    pins = _pins()
    wrong = []
    for where, requirement in _declared():
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            wrong.append(f"{requirement} ({where}) is not pinned")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            wrong.append(f"{requirement} ({where}) is pinned at {pinned}, outside its range")
    assert wrong == [], f"{'; '.join(wrong)}: {_REPIN}"


def test_what_the_pinned_packages_need_is_pinned_too() -> None:
    """Checked against the installed metadata of each package installed at its pin: a
    dependency that a pinned release requires and the file lacks would be installed at
    whatever version PyPI has that day."""
    pins = _pins()
    checked, missing = 0, []
    for name, version in pins.items():
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # the build backend's packages live in pip's build environment
        if distribution.version != version:
            continue  # a virtualenv not installed from the pins; its metadata may differ
        checked += 1
        for line in distribution.requires or []:
            needed = Requirement(line)
            if needed.marker is not None and not needed.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(needed.name) not in pins:
                missing.append(f"{needed.name} (required by {name} {version})")
    assert checked > len(pins) // 2, "most pinned packages should be installed at their pins"
    assert missing == [], f"not pinned: {', '.join(sorted(set(missing)))}: {_REPIN}"
