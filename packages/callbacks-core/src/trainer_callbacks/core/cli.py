"""The ``trainer-callbacks`` command: ``list``, ``show NAME``, ``demo``, ``plot RUN`` and plugins' commands.

``list`` imports neither torch nor transformers. Plugins add commands through the
``register_commands`` hook (:mod:`trainer_callbacks.core.commands`).
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


def cmd_plot(args: argparse.Namespace) -> int:
    from trainer_callbacks.core.plotting import plot_run

    for path in plot_run(args.run, args.out):
        print(path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from trainer_callbacks.core.demo import main as demo_main

    return demo_main(args)


BUILTIN_COMMANDS = ["list", "show", "plot", "demo"]


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
    p = sub.add_parser("plot", help="PNG figures from a run's trainer_state.json")
    p.add_argument("run", help="the run's output_dir, a checkpoint folder, or a trainer_state.json")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: RUN/plots)")
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("demo", help="train a small model with every installed plugin")
    p.add_argument("--output-dir", default="demo-output")
    p.add_argument("--config", default=None, help="a callbacks TOML file (default: every installed plugin)")
    p.add_argument("--model", default=None, help="a local Hugging Face model folder (default: a tiny BERT)")
    p.add_argument(
        "--data",
        default=None,
        metavar="FILE",
        help="train on a local .csv/.json/.jsonl file instead of the generated task: a 'text' (or 'sentence') "
        "column and a 'label' (or 'labels') column of classes (whole numbers or strings); a fifth of the rows "
        "is held out for evaluation",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="train this many steps (default 1000, --quick 400); a short run evaluates, saves and logs "
        "about four times",
    )
    p.add_argument("--quick", action="store_true", help="a reduced size, for tests")
    p.set_defaults(func=cmd_demo)
    if plugin_commands:
        from trainer_callbacks.core.commands import add_plugin_commands

        add_plugin_commands(sub, BUILTIN_COMMANDS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(plugin_commands=not _names_builtin_command(argv)).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TrainerCallbacksError as exc:
        print(f"trainer-callbacks: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
