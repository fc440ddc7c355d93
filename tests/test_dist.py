"""``make dist`` (tools/dist.py): the release check, and the rules it applies."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from trainer_callbacks.testing.plugin_venv import _visible_site

ROOT = Path(__file__).resolve().parents[1]


def load_dist() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tools_dist", ROOT / "tools" / "dist.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dist = load_dist()


@pytest.mark.install
def test_dist_builds_checks_and_installs_a_plugin_alone_with_core(tmp_path: Path) -> None:
    """The three distributions built (sdist + wheel), twine-checked; the plugin's wheel with core's alone in a venv
    over this environment, where this checkout's editable installs (every plugin, the kit) are hidden; the kit's
    wheel with core's in another: no plugin listed, its pytest plugin and the deprecated old name work."""
    out = tmp_path / "dist"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "dist.py"),
            "--out",
            str(out),
            "--only",
            "earlystop",
            "--only",
            "testing",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,  # a hang guard: about 10 s here
    )
    assert result.returncode == 0, result.stdout + result.stderr
    version = dist.pyproject(ROOT / "packages" / "callbacks-core")["version"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"trainer_callbacks_{name}-{version}{suffix}"
        for name in ("core", "earlystop", "testing")
        for suffix in (".tar.gz", "-py3-none-any.whl")
    )
    shown = f"shows earlystop (trainer-callbacks-earlystop {version} loaded)"
    assert f"callbacks-earlystop: `trainer-callbacks list` {shown}\n" in result.stdout
    assert "callbacks-testing: `trainer-callbacks list` shows nothing\n" in result.stdout


def fake_wheel(
    path: Path, name: str, version: str, requires: tuple[str, ...] = (), extras: tuple[str, ...] = ()
) -> Path:
    wheel = path / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    lines = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}"]
    lines += [f"Provides-Extra: {e}" for e in extras] + [f"Requires-Dist: {r}" for r in requires]
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", "\n".join(lines) + "\n")
    return wheel


def test_metadata_problems_name_a_missing_extra_an_excluded_version_and_a_version_not_from_pyproject(
    tmp_path: Path,
) -> None:
    projects = dist.projects()
    core_version = dist.pyproject(projects["callbacks-core"])["version"]
    wheels = {
        "callbacks-core": fake_wheel(tmp_path, "trainer-callbacks-core", core_version, extras=("plot",)),
        "callbacks-lr": fake_wheel(
            tmp_path, "trainer-callbacks-lr", "9.9.9", requires=("trainer-callbacks-core>=0.2,<0.3",)
        ),
        "trainer-callbacks": fake_wheel(
            tmp_path,
            "trainer-callbacks",
            core_version,
            requires=("trainer-callbacks-core[plot,demo]>=0.2,<0.3", "trainer-callbacks-lr>=0.2,<0.3", "torch>=2.4"),
        ),
    }
    problems = dist.metadata_problems(wheels, projects)
    assert any("trainer_callbacks_lr-9.9.9" in p and "is not the pyproject's" in p for p in problems)
    assert any(
        "requires trainer-callbacks-lr<0.3,>=0.2, but trainer-callbacks-lr 9.9.9 is built" in p for p in problems
    )
    assert any("trainer-callbacks-core[demo], an extra" in p for p in problems)
    assert not any("plot" in p or "torch" in p for p in problems), problems
    assert len(problems) == 3, problems


LISTING = """\
plugin     distribution                version  status  callbacks  summary
---------  --------------------------  -------  ------  ---------  -------
earlystop  trainer-callbacks-earlystop  0.2.0    loaded  earlystop  stops early
{extra}"""


@pytest.mark.parametrize(
    ("extra", "expected_problem"),
    [
        ("", None),
        ("lr         trainer-callbacks-lr         0.2.0    loaded  lr         plateaus\n", "shows ['earlystop', 'lr']"),
    ],
)
def test_the_listing_must_show_exactly_the_plugin(extra: str, expected_problem: str | None, tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\ncat <<'END'\n{LISTING.format(extra=extra)}END\n")
    python.chmod(0o755)
    problems = dist.list_problems("x", *dist.listed_plugins(python), {"earlystop": "trainer-callbacks-earlystop"})
    if expected_problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected_problem in problems[0]


def test_a_plugin_that_fails_to_load_is_a_problem() -> None:
    rows = {"earlystop": ["earlystop", "trainer-callbacks-earlystop", "0.2.0", "failed", "-", "-"]}
    problems = dist.list_problems(
        "x", 1, rows, "earlystop: failed to load", {"earlystop": "trainer-callbacks-earlystop"}
    )
    assert any("exited 1" in p for p in problems) and any("is not loaded" in p for p in problems)


def test_visible_site_hides_the_named_distributions_and_their_files(tmp_path: Path) -> None:
    purelib = tmp_path / "site-packages"
    for dist_info, record in {
        "trainer_callbacks_core-0.2.0.dist-info": "_editable_impl_trainer_callbacks_core.pth,,\n",
        "trainer_callbacks-0.2.0.dist-info": "",
        "trainer_callbacks_extra-1.0.dist-info": "trainer_callbacks/extra/__init__.py,,\n../../bin/x,,\n",
        "torch-2.13.0.dist-info": "torch/__init__.py,,\n",
    }.items():
        (purelib / dist_info).mkdir(parents=True)
        (purelib / dist_info / "RECORD").write_text(record)
    for name in ("_editable_impl_trainer_callbacks_core.pth", "torch", "trainer_callbacks", "distutils-precedence.pth"):
        (purelib / name).mkdir() if "." not in name else (purelib / name).write_text("")
    visible = _visible_site(purelib, tmp_path / "visible", ("trainer-callbacks",))
    assert sorted(p.name for p in visible.iterdir()) == ["distutils-precedence.pth", "torch", "torch-2.13.0.dist-info"]
    assert (visible / "torch").resolve() == purelib / "torch"
