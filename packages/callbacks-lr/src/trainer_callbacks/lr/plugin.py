"""Entry point ``lr`` of the ``trainer_callbacks`` group. Imports neither torch nor transformers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer_callbacks.core import CallbackSpec, hookimpl
from trainer_callbacks.lr import history


@hookimpl
def register_callbacks(register: Callable[[CallbackSpec], None]) -> None:
    register(
        CallbackSpec(
            name="lr",
            summary="ReduceLROnPlateau on top of any Trainer schedule: LR = schedule x plateau scale",
            factory="trainer_callbacks.lr.callback:ReduceLROnPlateau",
            demo_options={"monitor": "eval_loss", "factor": 0.5, "patience": 2},
            summary_order=20,
        )
    )


@hookimpl
def plot_events(log_history: list[dict[str, Any]]) -> list[Any]:
    from trainer_callbacks.core import PlotEvent

    return [
        PlotEvent(step=r.step, label=f"LR x{r.factor:.3g}", kind="lr_reduction")
        for r in history.reductions(log_history)
    ]


@hookimpl
def summarize_run(log_history: list[dict[str, Any]], output_dir: Path) -> list[str]:
    return history.summary_lines(log_history)
