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
        )
    )


@hookimpl
def summarize_run(log_history: list[dict[str, Any]], output_dir: Path) -> list[str]:
    """Lines for the summary at the end of `trainer-callbacks demo`."""
    best = [entry["NAME/best"] for entry in log_history if "NAME/best" in entry]
    return [f"NAME: best monitored value {best[-1]:.4g}"] if best else []
