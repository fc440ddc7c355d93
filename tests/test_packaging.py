"""Packaging rules every distribution of the workspace keeps (read from the pyproject files, no install)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in (ROOT / "packages").glob("callbacks-*") if (p / "pyproject.toml").is_file())
KIT = ROOT / "packages" / "callbacks-testing"  # the test kit: a distribution, not a plugin
SUITE = ROOT / "packages" / "trainer-callbacks"  # the suite: no code, the callbacks and the app extras
PLUGINS = [p for p in PACKAGES if p.name not in ("callbacks-core", KIT.name)]
TEMPLATE = ROOT / "docs" / "_template" / "callbacks-NAME" / "pyproject.toml"


def project(pyproject: Path) -> dict:
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]


CORE_VERSION = Version(project(ROOT / "packages" / "callbacks-core" / "pyproject.toml")["version"])


def core_requirements(meta: dict) -> list[Requirement]:
    requirements = list(meta.get("dependencies", []))
    for extra in meta.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    return [r for r in map(Requirement, requirements) if r.name == "trainer-callbacks-core"]


@pytest.mark.parametrize(
    "pyproject",
    [p / "pyproject.toml" for p in [*PLUGINS, KIT]] + [TEMPLATE],
    ids=[p.name for p in [*PLUGINS, KIT]] + ["template"],
)
def test_plugins_pin_the_core_minor_line(pyproject: Path) -> None:
    """A plugin (and the kit) depends on one MINOR line of core (the contract may change between them) that holds
    today's core."""
    requirements = core_requirements(project(pyproject))
    assert requirements, f"{pyproject} does not depend on trainer-callbacks-core"
    next_minor = Version(f"{CORE_VERSION.major}.{CORE_VERSION.minor + 1}")
    for requirement in requirements:
        assert CORE_VERSION in requirement.specifier, f"{pyproject}: {requirement} excludes core {CORE_VERSION}"
        assert next_minor not in requirement.specifier, f"{pyproject}: {requirement} admits core {next_minor}"


@pytest.mark.parametrize("package", PACKAGES, ids=[p.name for p in PACKAGES])
def test_one_name_in_four_forms(package: Path) -> None:
    """Folder callbacks-x, distribution trainer-callbacks-x, import trainer_callbacks.x, entry point x."""
    short = package.name.removeprefix("callbacks-")
    meta = project(package / "pyproject.toml")
    assert meta["name"] == f"trainer-callbacks-{short}"
    assert (package / "src" / "trainer_callbacks" / short / "__init__.py").is_file()
    assert not (package / "src" / "trainer_callbacks" / "__init__.py").exists(), "breaks the PEP 420 namespace"
    if package in PLUGINS:
        entry_points = meta["entry-points"]["trainer_callbacks"]
        assert entry_points == {short: f"trainer_callbacks.{short}.plugin"}
    else:  # core and the kit are no plugins: `trainer-callbacks list` must not show them
        assert "trainer_callbacks" not in meta.get("entry-points", {})


def test_only_the_kit_registers_a_pytest_plugin() -> None:
    """A production install (core, a plugin, the suite) loads no pytest plugin and needs neither pytest nor
    hypothesis; the kit's distribution registers ``pytest11`` and brings both."""
    for package in [*PACKAGES, SUITE]:
        meta = project(package / "pyproject.toml")
        registered = meta.get("entry-points", {}).get("pytest11")
        names = {Requirement(r).name for r in meta.get("dependencies", [])}
        if package == KIT:
            assert registered == {"trainer_callbacks": "trainer_callbacks.testing.pytest_plugin"}
            assert {"pytest", "hypothesis", "trainer-callbacks-core"} <= names
        else:
            assert registered is None, f"{package.name} registers a pytest plugin: {registered}"
            assert not names & {"pytest", "hypothesis"}, f"{package.name} requires {names & {'pytest', 'hypothesis'}}"


def test_core_keeps_the_kit_under_its_old_names() -> None:
    """Deprecated for one release at least: core's ``testing`` extra installs the kit, and the old import
    package exists (it aliases the new modules; tested in core's tests/test_testing_alias.py)."""
    meta = project(ROOT / "packages" / "callbacks-core" / "pyproject.toml")
    extra = [Requirement(r) for r in meta["optional-dependencies"]["testing"]]
    assert [r.name for r in extra] == ["trainer-callbacks-testing"]
    assert CORE_VERSION in extra[0].specifier
    assert (
        ROOT / "packages" / "callbacks-core" / "src" / "trainer_callbacks" / "core" / "testing" / "__init__.py"
    ).is_file()


def test_core_states_how_the_contract_is_versioned() -> None:
    readme = (ROOT / "packages" / "callbacks-core" / "README.md").read_text(encoding="utf-8")
    pins = re.findall(r'"trainer-callbacks-core>=([\d.]+),<([\d.]+)"', readme)
    assert pins, "core's README shows no pin of the contract's MINOR line"
    low, high = (Version(v) for v in pins[0])
    assert low <= CORE_VERSION < high


def test_the_suite_brings_every_package_and_the_app_extras() -> None:
    """``pip install trainer-callbacks``: core with its tracker extras, the app and every callback; not the kit
    (trainer-callbacks-testing is for callback authors)."""
    meta = project(SUITE / "pyproject.toml")
    assert meta["name"] == "trainer-callbacks"
    required = {r.name: r for r in map(Requirement, meta["dependencies"])}
    assert set(required) == {project(p / "pyproject.toml")["name"] for p in PACKAGES if p != KIT}
    core_extras = project(ROOT / "packages" / "callbacks-core" / "pyproject.toml")["optional-dependencies"]
    # core's deprecated extras name other first-party distributions (testing: the kit, demo/plot: the app)
    aliases = {name for name, reqs in core_extras.items() if all(r.startswith("trainer-callbacks-") for r in reqs)}
    assert aliases == {"testing", "demo", "plot"}
    assert required["trainer-callbacks-core"].extras == set(core_extras) - aliases - {"test"}
    assert "trainer-callbacks-app" in required and "trainer-callbacks-testing" not in required
    next_minor = Version(f"{CORE_VERSION.major}.{CORE_VERSION.minor + 1}")
    for requirement in required.values():
        assert CORE_VERSION in requirement.specifier and next_minor not in requirement.specifier, requirement
    assert "entry-points" not in meta, "the suite is no plugin: `trainer-callbacks list` must not show it"
    assert not (SUITE / "src").exists(), "the suite holds no code (the trainer_callbacks namespace is the packages')"


FIRST_PARTY = [*PACKAGES, SUITE]


@pytest.mark.parametrize("package", FIRST_PARTY, ids=[p.name for p in FIRST_PARTY])
def test_one_version_per_package_released_together(package: Path) -> None:
    """The version is the pyproject's static ``version``, the same for every first-party distribution, and no
    source file carries a second copy (read it with ``importlib.metadata.version``)."""
    meta = project(package / "pyproject.toml")
    assert "version" not in meta.get("dynamic", []) and Version(meta["version"]) == CORE_VERSION
    copies = [p for p in package.glob("src/**/*.py") if re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert not copies, f"a second version in {copies}: use importlib.metadata.version('{meta['name']}')"
    changelog = (package / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(meta['version'])}\b", changelog, re.M), "no CHANGELOG entry for this version"


def test_plugins_may_not_import_any_core_module() -> None:
    """Every module of core but compat is in ruff's banned list for plugins (TID251), so a new one is too."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]["lint"]
    banned = set(config["flake8-tidy-imports"]["banned-api"])
    core = ROOT / "packages" / "callbacks-core" / "src" / "trainer_callbacks" / "core"
    modules = {f"trainer_callbacks.core.{p.stem}" for p in core.glob("*.py") if p.stem not in ("__init__", "compat")}
    assert modules <= banned, f"add to [tool.ruff.lint.flake8-tidy-imports.banned-api]: {sorted(modules - banned)}"
    assert "TID251" in config["select"]
