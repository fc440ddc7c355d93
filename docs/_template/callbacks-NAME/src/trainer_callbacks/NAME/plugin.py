"""The ``NAME`` plugin: the module the entry point names. Keep it light: no torch/transformers imports here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer_callbacks.core import CallbackSpec, hookimpl


@hookimpl
def register_callbacks(register: Callable[[CallbackSpec], None]) -> None:
    register(
        CallbackSpec(
            name="NAME",
            summary="One line: what it does",
            factory="trainer_callbacks.NAME.callback:BestMetricLogger",  # imported only when it is created
            # `trainer-callbacks demo` evaluates eval_loss and eval_accuracy; None: your defaults
            demo_options={"monitor": "eval_loss"},
            summary_order=100,  # place of your summary lines and figures: lower first (first-party: 10-40)
        )
    )


@hookimpl
def summarize_run(log_history: list[dict[str, Any]], output_dir: Path) -> list[str]:
    """Lines for the summary at the end of `trainer-callbacks demo`."""
    best = [entry["NAME/best"] for entry in log_history if "NAME/best" in entry]
    return [f"NAME: best monitored value {best[-1]:.4g}"] if best else []
