"""The gradient-norm heatmap (groups x steps, log colour scale) and the run summary.

Reads ``grad_norm/<group>`` from ``log_history`` (``trainer_state.json``); groups keep the
order in which they first appear, which is model order because the callback reports them
so. matplotlib is imported only in :func:`plot_heatmap`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "grad_norm/"
SKIPPED = "grad_norm/skipped"


@dataclass
class GradNormTable:
    groups: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    """``values[g][s]``: norm of group ``g`` at ``steps[s]`` (NaN where not logged)."""


def grad_norm_table(log_history: list[dict[str, Any]]) -> GradNormTable:
    groups: dict[str, None] = {}
    by_step: dict[int, dict[str, float]] = {}
    for entry in log_history:
        if "step" not in entry:
            continue
        for key, value in entry.items():
            if key.startswith(PREFIX) and key != SKIPPED and isinstance(value, (int, float)):
                group = key[len(PREFIX) :]
                groups.setdefault(group, None)
                by_step.setdefault(int(entry["step"]), {})[group] = float(value)
    steps = sorted(by_step)
    names = list(groups)
    values = [[by_step[s].get(g, math.nan) for s in steps] for g in names]
    return GradNormTable(names, steps, values)


def plot_heatmap(table: GradNormTable, path: Path, *, width: float = 10.0, dpi: int = 100) -> Path:
    """Write the heatmap PNG to ``path`` (size ``width`` x (1.5 + 0.28 per group, at least 3) inches at ``dpi``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    data = np.array(table.values, dtype=float)
    masked = np.ma.masked_where(~np.isfinite(data) | (data <= 0), data)
    positive = data[np.isfinite(data) & (data > 0)]
    vmin, vmax = (float(positive.min()), float(positive.max())) if positive.size else (1e-8, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin / 2, vmax * 2
    height = max(3.0, 1.5 + 0.28 * len(table.groups))
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(
        masked, aspect="auto", interpolation="nearest", cmap="viridis", norm=LogNorm(vmin=vmin, vmax=vmax)
    )
    ax.set_yticks(range(len(table.groups)), labels=table.groups, fontsize=7 if len(table.groups) > 20 else 9)
    from trainer_callbacks.core import step_ticks

    ticks, labels = step_ticks(table.steps)  # every step, or evenly every k-th and the last
    ax.set_xticks(ticks, labels=labels)
    ax.set_xlabel("global step")
    ax.set_title("gradient norm per group (before clipping, log scale)")
    fig.colorbar(image, ax=ax, label="grad norm")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def summary_lines(table: GradNormTable, count: int = 3) -> list[str]:
    """The groups with the largest and smallest median gradient norm."""
    medians = []
    for group, row in zip(table.groups, table.values):
        finite = sorted(v for v in row if math.isfinite(v))
        if finite:
            medians.append((finite[len(finite) // 2], group))
    if not medians:
        return []
    medians.sort(reverse=True)
    # The two lists never share a group: with few groups the smallest get what the largest left.
    largest = medians[: min(count, (len(medians) + 1) // 2)]
    smallest = medians[len(largest) :][::-1][:count]
    lines = [
        f"gradviz: {len(table.groups)} groups over {len(table.steps)} logged steps",
        "gradviz: largest median gradient norm: " + ", ".join(f"{g} ({v:.3g})" for v, g in largest),
    ]
    if smallest:
        lines.append("gradviz: smallest median gradient norm: " + ", ".join(f"{g} ({v:.3g})" for v, g in smallest))
    return lines
