"""The ``trainer-callbacks`` command: core's ``list`` and ``show NAME``, and the commands plugins add.

``list`` and ``show`` import neither torch nor transformers and load no plugin command. Plugins add
commands through the ``register_commands`` hook (:mod:`trainer_callbacks.core.commands`): the app
(``trainer-callbacks-app``, in the suite) adds ``demo`` and ``plot`` that way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from trainer_callbacks.core.errors import TrainerCallbacksError


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    import warnings

    from trainer_callbacks.core.plugins import callback_specs, load_status, registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the selection problems are printed below instead
        infos = load_status()
    problems = registry().selection_problems
    specs = callback_specs()
    by_plugin: dict[str, list[str]] = {}
    for spec in specs.values():
        by_plugin.setdefault(spec.plugin, []).append(spec.name)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not infos:
        print("No trainer-callbacks plugins installed: install a plugin distribution (trainer-callbacks-NAME).")
        return 1 if problems and args.strict else 0
    rows = []
    for info in infos:
        provided = ", ".join(sorted(by_plugin.get(info.name, []))) or "-"
        summary = next((s.summary for s in specs.values() if s.plugin == info.name), info.summary)
        rows.append([info.name, info.distribution, info.version, info.status, provided, summary])
    print(_table(rows, ["plugin", "distribution", "version", "status", "callbacks", "summary"]))
    failed = [info for info in infos if info.error]
    for info in failed:
        print(f"\n{info.name}: failed to load from {info.entry_point} ({info.distribution}): {info.error}")
    return 1 if (failed or problems) and args.strict else 0


def cmd_show(args: argparse.Namespace) -> int:
    from trainer_callbacks.core.factory import get_spec

    spec = get_spec(args.name)
    if getattr(args, "markdown", False):
        from trainer_callbacks.core.options import options_markdown

        print(options_markdown(spec.option_specs()))
        return 0
    factory = spec.factory if isinstance(spec.factory, str) else getattr(spec.factory, "__qualname__", "?")
    print(f"{spec.name}: {spec.summary}")
    print(f"  plugin: {spec.plugin}    factory: {factory}")
    print("  options:")
    for opt in spec.option_specs():
        default = "(required)" if opt.required else f"= {opt.default!r}"
        print(f"    {opt.name}: {opt.type} {default}")
        if opt.doc:
            print(f"        {opt.doc}")
    return 0


BUILTIN_COMMANDS = ["list", "show"]

ELSEWHERE = {"demo": "trainer-callbacks-app", "plot": "trainer-callbacks-app"}
"""Commands of first-party distributions other than core (added through ``register_commands``), by the
distribution that adds them: named when the command is given but not there."""


def _names_builtin_command(argv: Sequence[str]) -> bool:
    """Whether the command line names one of core's own commands (then no plugin command is loaded)."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first in BUILTIN_COMMANDS


def build_parser(plugin_commands: bool = True) -> argparse.ArgumentParser:
    """The parser of core's commands, and with ``plugin_commands`` those of the loaded plugins."""
    parser = argparse.ArgumentParser(prog="trainer-callbacks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="installed plugins, versions, load status")
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when a plugin failed to load or a plugin switch names none"
    )
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="a callback's options, types, defaults and docs")
    p.add_argument("name")
    p.add_argument("--markdown", action="store_true", help="only the options, as a Markdown table (for a README)")
    p.set_defaults(func=cmd_show)
    if plugin_commands:
        from trainer_callbacks.core.commands import add_plugin_commands

        add_plugin_commands(sub, BUILTIN_COMMANDS)
    return parser


def _missing_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """Why a first-party command the command line names is not there (its distribution absent or not loaded)."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    if first not in ELSEWHERE:
        return None
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if first in sub.choices:
        return None
    from importlib import metadata

    from trainer_callbacks.core.plugins import ENV_ALLOW, ENV_BLOCK, ENV_DISABLE_AUTOLOAD

    distribution = ELSEWHERE[first]
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return (
            f"'{first}' is a command of {distribution}, which is not installed: pip install {distribution} "
            "(or the whole suite: pip install trainer-callbacks)"
        )
    return (
        f"'{first}' is a command of {distribution}, whose plugin 'app' is installed but not loaded: "
        f"check {ENV_DISABLE_AUTOLOAD}, {ENV_ALLOW} (add 'app') and {ENV_BLOCK}; `trainer-callbacks list` "
        "shows its status"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(plugin_commands=not _names_builtin_command(argv))
    missing = _missing_command(parser, argv)
    if missing is not None:
        print(f"trainer-callbacks: error: {missing}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TrainerCallbacksError as exc:
        print(f"trainer-callbacks: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
