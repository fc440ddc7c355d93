"""A throwaway plugin distribution, built as a wheel and installed into a temporary venv.

This is the path a third party takes: a pyproject entry point in the ``trainer_callbacks``
group, discovered from package metadata by ``trainer-callbacks list`` in a fresh interpreter.
The distribution also carries an entry point whose module raises on import.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from trainer_callbacks.testing.plugin_venv import plugin_venv as make_plugin_venv

pytestmark = pytest.mark.install

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "throwaway-plugin"
version = "1.2.3"
description = "A plugin that exists for one test"

[project.entry-points.trainer_callbacks]
throwaway = "throwaway_plugin"
throwaway_broken = "throwaway_broken"

[tool.hatch.build.targets.wheel]
packages = ["throwaway_plugin", "throwaway_broken"]
"""

PLUGIN = '''\
from trainer_callbacks.core import CallbackSpec, hookimpl


class Noop:
    """Does nothing.

    Args:
        level (int): how much nothing.
    """

    def __init__(self, level: int = 1):
        self.level = level


@hookimpl
def register_callbacks(register):
    register(CallbackSpec(name="throwaway", summary="a throwaway callback", factory="throwaway_plugin:Noop"))
'''


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("throwaway")
    src = root / "src"
    (src / "throwaway_plugin").mkdir(parents=True)
    (src / "throwaway_broken").mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "throwaway_plugin" / "__init__.py").write_text(PLUGIN)
    (src / "throwaway_broken" / "__init__.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    return make_plugin_venv(root / "venv", [src])


def run(venv: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_CALLBACKS_")}
    environ.update(env)
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
    )


def test_list_shows_the_installed_plugin_and_the_broken_one(plugin_venv: Path) -> None:
    result = run(plugin_venv, "from trainer_callbacks.core.cli import main; raise SystemExit(main(['list']))")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "throwaway-plugin" in lines["throwaway"] and "1.2.3" in lines["throwaway"]
    assert "loaded" in lines["throwaway"] and "a throwaway callback" in lines["throwaway"]
    assert "failed" in lines["throwaway_broken"]
    assert "throwaway_broken: failed to load from throwaway_broken (throwaway-plugin)" in result.stdout
    assert "RuntimeError: this plugin is broken on purpose" in result.stdout

    strict = run(
        plugin_venv, "from trainer_callbacks.core.cli import main; raise SystemExit(main(['list', '--strict']))"
    )
    assert strict.returncode == 1


def test_create_from_the_installed_plugin_and_the_error_of_the_broken_one(plugin_venv: Path) -> None:
    result = run(
        plugin_venv,
        """
        from trainer_callbacks.core import create, PluginLoadError
        cb = create("throwaway", level=4)
        print(type(cb).__module__, cb.level)
        try:
            create("throwaway_broken")
        except PluginLoadError as exc:
            print("ERR", exc.distribution, type(exc.original).__name__)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["throwaway_plugin 4", "ERR throwaway-plugin RuntimeError"]


def test_autoload_switch_in_a_fresh_interpreter(plugin_venv: Path) -> None:
    code = "from trainer_callbacks.core import load_status; print({i.name: i.status for i in load_status()})"
    off = run(plugin_venv, code, TRAINER_CALLBACKS_DISABLE_AUTOLOAD="1")
    assert "'throwaway': 'not allowed'" in off.stdout
    chosen = run(plugin_venv, code, TRAINER_CALLBACKS_DISABLE_AUTOLOAD="1", TRAINER_CALLBACKS_PLUGINS="throwaway")
    assert "'throwaway': 'loaded'" in chosen.stdout and "'throwaway_broken': 'not allowed'" in chosen.stdout
