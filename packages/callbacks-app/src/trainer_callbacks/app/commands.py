"""``trainer-callbacks plot`` and ``trainer-callbacks demo``: their arguments and handlers.

Added to core's command by the app's ``register_commands`` hook; each handler imports its
module (matplotlib, torch, transformers, datasets) only when the command runs.
"""

from __future__ import annotations

import argparse

from trainer_callbacks.core import CommandRegistrar


def plot(args: argparse.Namespace) -> int:
    from trainer_callbacks.app.plotting import plot_run

    for path in plot_run(args.run, args.out):
        print(path)
    return 0


def demo(args: argparse.Namespace) -> int:
    from trainer_callbacks.app.demo import main

    return main(args)


def add_plot(cli: CommandRegistrar) -> None:
    p = cli.add_command("plot", plot, help="PNG figures from a run's trainer_state.json")
    p.add_argument("run", help="the run's output_dir, a checkpoint folder, or a trainer_state.json")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: RUN/plots)")


def add_demo(cli: CommandRegistrar) -> None:
    p = cli.add_command("demo", demo, help="train a small model with every installed plugin")
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
