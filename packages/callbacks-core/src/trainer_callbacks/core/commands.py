"""Subcommands that plugins add to ``trainer-callbacks`` through the ``register_commands`` hook.

Core's own commands (``list``, ``show``) are built in (the app adds ``demo`` and ``plot`` here too); a plugin's hook
receives a :class:`CommandRegistrar` and calls ``cli.add_command(name, handler, help=...)``,
which returns the subcommand's ``argparse`` parser for its arguments. Light: no torch import.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

CommandHandler = Callable[[argparse.Namespace], int | None]
"""A subcommand's handler: gets the parsed arguments, returns the exit status (``None``: 0)."""

_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")


class CommandRegistrar:
    """What a plugin's ``register_commands(cli)`` receives: adds subcommands to ``trainer-callbacks``."""

    def __init__(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser], taken: dict[str, str]) -> None:
        self._subparsers = subparsers
        self._taken = taken  # command name -> who added it ("trainer-callbacks-core" or the plugin's name)
        self.plugin = "?"
        """The plugin whose hook is running (set by core before each call)."""

    def add_command(
        self, name: str, handler: CommandHandler, *, help: str = "", description: str | None = None
    ) -> argparse.ArgumentParser:
        """Add ``trainer-callbacks NAME``; returns its parser (``parser.add_argument(...)``).

        ``handler(args)`` runs when the command is given; a ``TrainerCallbacksError`` it raises is
        printed as one line and the command exits 2, like core's own commands. The name is lower
        case letters, digits and dashes; a name core or another plugin already uses is refused.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"plugin {self.plugin!r}: command name {name!r} is not lower case letters, digits and dashes "
                "starting with a letter; pick one like 'my-report'"
            )
        if not callable(handler):
            raise TypeError(f"plugin {self.plugin!r}: the handler of command {name!r} is {handler!r}, not a function")
        if name in self._taken:
            raise ValueError(
                f"plugin {self.plugin!r}: command {name!r} is already added by {self._taken[name]!r}; "
                "rename it, or uninstall or block one of the two plugins"
            )
        parser = self._subparsers.add_parser(name, help=help, description=description or help)
        parser.set_defaults(func=handler)
        self._taken[name] = self.plugin
        return parser


def add_plugin_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], builtin: list[str]) -> None:
    """Call every loaded plugin's ``register_commands``; a plugin whose hook fails gets one line on stderr."""
    from trainer_callbacks.core.plugins import registry

    pm = registry().pm
    registrar = CommandRegistrar(subparsers, dict.fromkeys(builtin, "trainer-callbacks-core"))
    impls = sorted(pm.hook.register_commands.get_hookimpls(), key=lambda impl: pm.get_name(impl.plugin) or "?")
    for impl in impls:
        registrar.plugin = pm.get_name(impl.plugin) or "?"
        try:
            impl.function(cli=registrar)
        except Exception as exc:  # one broken plugin must not take the command down
            print(
                f"trainer-callbacks: warning: plugin {registrar.plugin!r}: register_commands failed: "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
