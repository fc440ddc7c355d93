"""The app's entry point (``app`` in the ``trainer_callbacks`` group): the ``demo`` and ``plot`` commands.

Light: importing it (as ``trainer-callbacks list`` does) imports neither torch nor transformers;
the commands import what they need when they run.
"""

from __future__ import annotations

from trainer_callbacks.core import CommandRegistrar, hookimpl


@hookimpl
def register_commands(cli: CommandRegistrar) -> None:
    from trainer_callbacks.app.commands import add_demo, add_plot

    add_plot(cli)
    add_demo(cli)
