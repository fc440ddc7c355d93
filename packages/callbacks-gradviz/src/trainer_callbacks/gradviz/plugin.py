"""The gradviz plugin: registers ``gradviz`` and draws the gradient-norm heatmap.

Light on purpose: torch, transformers and matplotlib are imported only inside the hooks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer_callbacks.core import CallbackSpec, hookimpl


@hookimpl
def register_callbacks(register: Any) -> None:
    register(
        CallbackSpec(
            name="gradviz",
            summary="Per-layer gradient norms (pre-clip, exact, one fused kernel per logged step) with a heatmap",
            factory="trainer_callbacks.gradviz.callback:GradNormLogger",
            demo_options={},  # its defaults
            summary_order=40,  # last: the gradients are detail
        )
    )


@hookimpl
def plot_figures(log_history: list[dict[str, Any]], output_dir: Path) -> list[Path] | None:
    from trainer_callbacks.gradviz.heatmap import grad_norm_table, plot_heatmap

    table = grad_norm_table(log_history)
    if not table.groups:
        return None
    return [plot_heatmap(table, Path(output_dir) / "grad_norms.png")]


@hookimpl
def summarize_run(log_history: list[dict[str, Any]], output_dir: Path) -> list[str] | None:
    from trainer_callbacks.gradviz.heatmap import grad_norm_table, summary_lines

    table = grad_norm_table(log_history)
    return summary_lines(table) or None
