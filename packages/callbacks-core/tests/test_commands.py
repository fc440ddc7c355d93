"""Plugins add subcommands to ``trainer-callbacks`` through the ``register_commands`` hook."""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable
from typing import Any

import pytest

from trainer_callbacks.core import CommandRegistrar, ConfigurationError, hookimpl, plugins
from trainer_callbacks.core.cli import main


@pytest.fixture
def add_plugin(
    fresh_plugin_registry: None, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, Callable[..., Any]], None]:
    """Register, in code and with autoload off, a plugin whose ``register_commands`` is ``register``."""
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reload()

    def add(name: str, register: Callable[..., Any]) -> None:
        module = types.ModuleType(name)

        @hookimpl
        def register_commands(cli: CommandRegistrar) -> None:
            register(cli)

        module.register_commands = register_commands  # type: ignore[attr-defined]
        plugins.register_plugin(module, name=name)

    return add


def greet_plugin(seen: list[argparse.Namespace]) -> Callable[[CommandRegistrar], None]:
    def handler(args: argparse.Namespace) -> int:
        seen.append(args)
        print(f"hello {args.who} x{args.times}")
        return 3 if args.who == "three" else 0

    def register(cli: CommandRegistrar) -> None:
        parser = cli.add_command("greet", handler, help="says hello")
        parser.add_argument("who")
        parser.add_argument("--times", type=int, default=1)

    return register


def test_a_plugin_command_runs_with_its_own_arguments_and_exit_status(
    add_plugin: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[argparse.Namespace] = []
    add_plugin("greeter", greet_plugin(seen))
    assert main(["greet", "world", "--times", "2"]) == 0
    assert capsys.readouterr().out == "hello world x2\n"
    assert (seen[0].who, seen[0].times) == ("world", 2)
    assert main(["greet", "three"]) == 3


def test_help_lists_plugin_commands(add_plugin: Callable[..., None], capsys: pytest.CaptureFixture[str]) -> None:
    add_plugin("greeter", greet_plugin([]))
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "greet" in out and "says hello" in out and "list" in out


def test_a_handler_returning_none_exits_0_and_its_errors_are_one_line(
    add_plugin: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    def ok(args: argparse.Namespace) -> None:
        return None

    def bad(args: argparse.Namespace) -> None:
        raise ConfigurationError("report: --top must be positive, got -1")

    def register(cli: CommandRegistrar) -> None:
        cli.add_command("quiet", ok)
        cli.add_command("report", bad)

    add_plugin("reporter", register)
    assert main(["quiet"]) == 0
    assert main(["report"]) == 2
    assert capsys.readouterr().err == "trainer-callbacks: error: report: --top must be positive, got -1\n"


def test_builtin_names_and_other_plugins_commands_cannot_be_taken(
    add_plugin: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[str] = []

    def register_as(label: str, name: str) -> Callable[[CommandRegistrar], None]:
        def register(cli: CommandRegistrar) -> None:
            cli.add_command(name, lambda args: ran.append(label))

        return register

    add_plugin("a_first", register_as("a", "stats"))
    add_plugin("b_second", register_as("b", "stats"))
    add_plugin("c_hijack", register_as("c", "list"))
    assert main(["stats"]) == 0
    assert ran == ["a"]  # plugins are asked in name order: the first one keeps the name
    err = capsys.readouterr().err
    assert "plugin 'b_second': register_commands failed" in err and "already added by 'a_first'" in err
    assert "plugin 'c_hijack'" in err and "'list' is already added by 'trainer-callbacks-core'" in err


@pytest.mark.parametrize("name", ["", "Greet", "my report", "-x", "2fa", None])
def test_command_names_are_checked(
    add_plugin: Callable[..., None], capsys: pytest.CaptureFixture[str], name: object
) -> None:
    add_plugin("oddname", lambda cli: cli.add_command(name, lambda args: 0))
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "plugin 'oddname': register_commands failed: ValueError: plugin 'oddname': command name" in (
        capsys.readouterr().err
    )


def test_a_broken_hook_does_not_take_list_or_other_commands_down(
    add_plugin: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(cli: CommandRegistrar) -> None:
        raise RuntimeError("broken on purpose")

    add_plugin("broken", broken)
    add_plugin("greeter", greet_plugin([]))
    assert main(["greet", "you"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "hello you x1\n"
    assert "plugin 'broken': register_commands failed: RuntimeError: broken on purpose" in captured.err
    assert main(["list"]) == 0
    assert "register_commands" not in capsys.readouterr().err  # core's own commands never call the hook
