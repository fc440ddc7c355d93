"""constraints-floors.txt (what `make test-floors` installs) pins each runtime dependency at its declared floor.

If a package raises or lowers a lower bound without moving the pin (or the other way round),
the floors job would test versions nobody declared: this fails first, naming both.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# Pinned for the floors job although not the declared floor, each for a stated reason (see the file).
NOT_FLOORS = {"torch", "pytest", "pytest-timeout", "hypothesis", "matplotlib", "optuna"}


def floor_pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints-floors.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups()  # type: ignore[union-attr]
            pins[name.lower()] = Version(version)
    return pins


def declared_floors() -> dict[str, set[Version]]:
    floors: dict[str, set[Version]] = {}
    for pyproject in sorted(ROOT.glob("packages/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        requirements = list(project["dependencies"])
        for extra in project.get("optional-dependencies", {}).values():
            requirements += extra
        for text in requirements:
            req = Requirement(text)
            if req.name.startswith("trainer-callbacks"):
                continue
            for spec in req.specifier:
                if spec.operator == ">=":
                    floors.setdefault(req.name.lower(), set()).add(Version(spec.version))
    return floors


def test_every_floor_pin_is_the_one_declared_floor() -> None:
    declared = declared_floors()
    for name, pin in floor_pins().items():
        if name in NOT_FLOORS:
            continue
        found = declared.get(name)
        assert found == {pin}, f"constraints-floors.txt pins {name}=={pin}; the pyprojects declare {found}"


def test_the_libraries_the_issue_names_are_pinned_at_their_floor() -> None:
    pins = floor_pins()
    for name in ("transformers", "accelerate", "pluggy", "mlflow-skinny", "tensorboard"):
        assert name in pins and name not in NOT_FLOORS, name
