"""The ``earlystop`` plugin: registers :class:`~trainer_callbacks.earlystop.callback.EarlyStopping`.

Imports neither torch nor transformers (``trainer-callbacks list`` stays fast). The check that
``eval_strategy`` is not ``"no"`` lives in ``EarlyStopping.check_training_args`` and runs at
train begin through core's validation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer_callbacks.core import CallbackSpec, hookimpl
from trainer_callbacks.earlystop.history import read_record, summary_line


@hookimpl
def register_callbacks(register: Callable[[CallbackSpec], None]) -> None:
    register(
        CallbackSpec(
            name="earlystop",
            summary="Multi-metric early stopping (all/any/Pareto plateaus, goal, divergence, NaN), exact resume",
            factory="trainer_callbacks.earlystop.callback:EarlyStopping",
            demo_options={"monitor": {"eval_loss": "min", "eval_accuracy": "max"}, "combine": "all", "patience": 6},
            summary_order=10,  # first in the summary: why training stopped
        )
    )


@hookimpl
def plot_events(log_history: list[dict[str, Any]]) -> list[Any]:
    record = read_record(log_history)
    if record is None or record.stop_step is None:
        return []
    from trainer_callbacks.core import PlotEvent

    label = "early stop"
    if record.reason:
        label = f"early stop ({record.reason.split(':', 1)[0]})"
    return [PlotEvent(step=record.stop_step, label=label, kind="early_stop")]


@hookimpl
def summarize_run(log_history: list[dict[str, Any]], output_dir: Path) -> list[str]:
    record = read_record(log_history)
    return [] if record is None else [summary_line(record)]
