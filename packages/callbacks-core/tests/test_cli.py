"""The ``trainer-callbacks`` command."""

from __future__ import annotations

import argparse
import subprocess
import sys
import types

import pytest

from trainer_callbacks.core import CallbackSpec, hookimpl, plugins
from trainer_callbacks.core.cli import main


def test_list_imports_neither_torch_nor_transformers() -> None:
    """With every installed plugin loaded, listing must stay light (see bench/ for the timing)."""
    code = (
        "import sys; from trainer_callbacks.core.cli import main; rc = main(['list']); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'numpy', 'datasets') if m in sys.modules); "
        "print('HEAVY', heavy); raise SystemExit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


@pytest.fixture
def documented_plugin(fresh_plugin_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reload()

    class Documented:
        """Says hello.

        Args:
            greeting (str): what to say.
            times (int): how often.
        """

        def __init__(self, greeting: str, times: int = 2) -> None:
            pass

    module = types.ModuleType("documented")

    @hookimpl
    def register_callbacks(register):  # type: ignore[no-untyped-def]
        register(CallbackSpec(name="hello", summary="greets", factory=Documented))

    module.register_callbacks = register_callbacks  # type: ignore[attr-defined]
    plugins.register_plugin(module, name="hello_plugin")


def test_show_prints_options_types_defaults_and_docs(
    documented_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", "hello"]) == 0
    out = capsys.readouterr().out
    assert "hello: greets" in out and "plugin: hello_plugin" in out
    assert "greeting: str (required)" in out and "what to say." in out
    assert "times: int = 2" in out and "how often." in out


def test_list_shows_code_registered_plugins(documented_plugin: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("hello_plugin"))
    assert "loaded" in row and "hello" in row and "greets" in row


def test_errors_are_one_clear_line_and_exit_2(documented_plugin: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "helo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trainer-callbacks: error: ") and "Did you mean 'hello'" in err


def test_core_commands_are_list_and_show_and_the_app_adds_demo_and_plot(fresh_plugin_registry: None) -> None:
    from trainer_callbacks.core.cli import BUILTIN_COMMANDS, build_parser

    assert BUILTIN_COMMANDS == ["list", "show"]

    def commands(parser: argparse.ArgumentParser) -> set[str]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return set(sub.choices)

    assert {"list", "show", "demo", "plot"} <= commands(build_parser())  # the app is installed in this environment
    assert commands(build_parser(plugin_commands=False)) == {"list", "show"}


def test_an_app_command_without_the_app_says_what_to_install(
    fresh_plugin_registry: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib import metadata

    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reload()
    real = metadata.distribution

    def distribution(name: str) -> metadata.Distribution:
        if name == "trainer-callbacks-app":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", distribution)
    assert main(["demo", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trainer-callbacks: error: 'demo' is a command of trainer-callbacks-app")
    assert "pip install trainer-callbacks-app" in err and "\n" not in err


def test_an_app_command_switched_off_names_the_switches(
    fresh_plugin_registry: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(plugins.ENV_BLOCK, "app")
    plugins.reload()
    assert main(["plot", "anywhere"]) == 2
    err = capsys.readouterr().err
    assert "installed but not loaded" in err and plugins.ENV_BLOCK in err and "TRAINER_CALLBACKS_PLUGINS" in err
