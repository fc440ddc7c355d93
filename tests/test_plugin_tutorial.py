"""docs/writing-a-plugin.md and docs/_template, built for real.

The tutorial's plugin is assembled from the page's own code blocks (each one preceded by
``<!-- file: PATH -->``), the template is copied and renamed as the page says; both are built
as wheels, installed into a fresh virtual environment that sees this project's packages, and
then ``trainer-callbacks list`` must show them and their own test suites (the conformance kit)
must pass. Both are also linted with the repository's ruff settings.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainer_callbacks.testing.plugin_venv import plugin_venv

pytestmark = [pytest.mark.install, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "writing-a-plugin.md"
TEMPLATE = REPO / "docs" / "_template" / "callbacks-NAME"
FILE_BLOCK = re.compile(r"<!-- file: (?P<path>[^ ]+) -->\n```[\w-]*\n(?P<body>.*?)^```", re.S | re.M)


def extract_files(markdown: str, root: Path) -> list[Path]:
    written = []
    for match in FILE_BLOCK.finditer(markdown):
        path = root / match["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(match["body"])
        written.append(path)
    return written


def copy_template(name: str, root: Path) -> Path:
    """What the tutorial tells you to do: copy, rename the folder, replace NAME everywhere."""
    target = root / f"callbacks-{name}"
    shutil.copytree(TEMPLATE, target)
    (target / "src" / "trainer_callbacks" / "NAME").rename(target / "src" / "trainer_callbacks" / name)
    for file in target.rglob("*"):
        if file.is_file() and "NAME" in file.read_text():
            file.write_text(file.read_text().replace("NAME", name))
    return target


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINER_CALLBACKS_", "MLFLOW_", "PYTEST_"))}
    clean["PYTHONDONTWRITEBYTECODE"] = "1"
    return clean


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tutorial")
    files = extract_files(DOC.read_text(), root)
    tutorial = root / "callbacks-lossspike"
    assert {p.relative_to(tutorial).as_posix() for p in files} == {
        "pyproject.toml",
        "README.md",
        "src/trainer_callbacks/lossspike/__init__.py",
        "src/trainer_callbacks/lossspike/py.typed",
        "src/trainer_callbacks/lossspike/callback.py",
        "src/trainer_callbacks/lossspike/plugin.py",
        "src/trainer_callbacks/lossspike/throughput.py",
        "tests/test_lossspike.py",
        "tests/test_throughput.py",
    }
    assert not (tutorial / "src" / "trainer_callbacks" / "__init__.py").exists()
    template = copy_template("tmplprobe", root)
    venv = plugin_venv(root / "venv", [tutorial, template])
    return {"venv": venv, "tutorial": tutorial, "template": template}


def cli(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "trainer_callbacks.core.cli", *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,  # hang guards here, not speed checks: ~50 s a call measured beside busy processes
    )


def test_list_and_show_find_the_new_plugins(built: dict[str, Path]) -> None:
    listed = cli(built["venv"], "list", "--strict")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[2:] if line.strip()}
    assert rows["lossspike"][1:4] == ["trainer-callbacks-lossspike", "0.1.0", "loaded"]
    assert rows["tmplprobe"][1:4] == ["trainer-callbacks-tmplprobe", "0.1.0", "loaded"]
    shown = cli(built["venv"], "show", "lossspike")
    assert shown.returncode == 0, shown.stderr
    for option in ("factor: float = 2.0", "smoothing: float = 0.1", "stop_after: int | None = None"):
        assert option in shown.stdout
    assert "stop training at this many spikes" in shown.stdout  # the Args: docs reached the CLI
    assert rows["lossspike"][4:6] == ["lossspike,", "throughput"]  # the wall-clock section's second callback


@pytest.mark.parametrize("module", ["trainer_callbacks.lossspike.plugin", "trainer_callbacks.tmplprobe.plugin"])
def test_loading_the_entry_point_imports_neither_torch_nor_transformers(built: dict[str, Path], module: str) -> None:
    """The tutorial's and the template's __init__.py are lazy: the entry point stays light."""
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run(
        [str(built["venv"] / "bin" / "python"), "-c", code], capture_output=True, text=True, env=env(), timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("project", ["tutorial", "template"])
def test_the_plugin_test_suite_passes_in_the_venv(built: dict[str, Path], project: str) -> None:
    result = subprocess.run(
        [str(built["venv"] / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=built[project],
        capture_output=True,
        text=True,
        env=env(),
        timeout=480,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", result.stdout)[1])  # type: ignore[index]
    assert passed >= 14  # the conformance kit: 7 checks x 2 configurations, plus behaviour tests
    assert "failed" not in result.stdout


@pytest.mark.parametrize("project", ["tutorial", "template"])
def test_the_code_is_lint_clean(built: dict[str, Path], project: str) -> None:
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed")
    result = subprocess.run(
        [
            str(ruff),
            "check",
            "--no-cache",
            "--config",
            str(REPO / "pyproject.toml"),
            "--select",
            "E,F,W,B,UP,SIM",
            str(built[project]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
