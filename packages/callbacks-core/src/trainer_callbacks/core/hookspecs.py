"""The hooks a trainer-callbacks plugin can implement.

A plugin is a module named by an entry point in the ``trainer_callbacks`` group. Its hook
functions carry ``@hookimpl`` (from :mod:`trainer_callbacks.core`) and have the names
below; pluggy checks their argument names against these specifications when the
plugin is registered. Plugin modules must stay light: import torch and transformers
inside your callback module, not at the top of the plugin module, so that
``trainer-callbacks list`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer_callbacks.core.markers import hookspec

if TYPE_CHECKING:
    from trainer_callbacks.core.commands import CommandRegistrar
    from trainer_callbacks.core.plotting import PlotEvent, PlotPanel
    from trainer_callbacks.core.spec import CallbackSpec


@hookspec
def register_callbacks(register: Callable[[CallbackSpec], None]) -> None:
    """Register the callbacks this plugin provides.

    Call ``register(CallbackSpec(name=..., summary=..., factory="pkg.module:Class"))``
    once per callback. The factory is imported only when the callback is created or
    its options are shown. Two optional fields put the callback in ``trainer-callbacks demo``
    like any other: ``demo_options`` (the options the demo builds it with; ``None``: its
    defaults) and ``summary_order`` (where the plugin's summary lines and figures go; lower
    first, default 100).
    """


@hookspec
def validate_training_args(args: Any, callbacks: Sequence[Any]) -> list[str] | None:
    """Check ``args`` (a ``TrainingArguments``) against the callbacks of this ``train()`` call.

    Called once at the start of every ``train()`` (from the first trainer-callbacks callback's
    ``on_train_begin``, before any step runs) with every callback the Trainer holds.
    Return a list of problems, each naming the setting and the fix; an empty list or
    ``None`` when all is well. All problems of all plugins are raised together as one
    :class:`~trainer_callbacks.core.errors.ConfigurationError`.
    """


@hookspec
def plot_events(log_history: list[dict[str, Any]]) -> list[PlotEvent] | None:
    """Events to mark on the loss and learning-rate curves of ``trainer-callbacks plot``.

    ``log_history`` is ``TrainerState.log_history`` as read from ``trainer_state.json``.
    """


@hookspec
def plot_panels(log_history: list[dict[str, Any]], trainer_state: dict[str, Any]) -> list[PlotPanel] | None:
    """Panels to add to ``curves.png`` of ``trainer-callbacks plot``, below the loss, learning-rate and monitored ones.

    Return ``PlotPanel(keys=("throughput/samples_per_second",), title="throughput")`` per panel
    (``from trainer_callbacks.core import PlotPanel``); each key is a ``log_history`` key drawn
    over the global step, and the plot events are marked on the panel too. ``trainer_state`` is the
    whole ``trainer_state.json`` (its ``stateful_callbacks`` hold the options your callback saved);
    declare only the arguments you use (``def plot_panels(log_history): ...`` is fine).
    """


@hookspec
def plot_figures(log_history: list[dict[str, Any]], output_dir: Path) -> list[Path] | None:
    """Draw this plugin's own figures (PNG) into ``output_dir`` and return their paths.

    matplotlib is importable when this is called; import it inside the hook.
    """


@hookspec
def summarize_run(log_history: list[dict[str, Any]], output_dir: Path) -> list[str] | None:
    """Lines for the human-readable summary at the end of ``trainer-callbacks demo``."""


@hookspec
def register_commands(cli: CommandRegistrar) -> None:
    """Add subcommands to the ``trainer-callbacks`` command (core's ``argparse`` CLI).

    Call ``parser = cli.add_command("my-report", handler, help="one line")`` per command and add
    its arguments to the returned ``argparse.ArgumentParser``; ``handler(args)`` gets the parsed
    ``argparse.Namespace`` and returns the exit status (``None`` is 0). Keep the module light:
    import what the command needs inside ``handler``. Names are lower case letters, digits and
    dashes; core's own ``list`` and ``show`` and another plugin's command (the app's ``demo`` and
    ``plot``, say) cannot be taken (the second one is refused with a warning, the first stays). Plugin commands
    are added only when the command line names none of core's own, so ``list`` and ``show``
    never depend on them.
    """
