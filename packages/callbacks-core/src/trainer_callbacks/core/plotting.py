"""``trainer-callbacks plot``: PNG figures from a run's ``trainer_state.json``.

Core draws the loss and learning-rate curves and marks on them the events every plugin
returns from its ``plot_events`` hook; plugins draw figures of their own through
``plot_figures`` (gradviz: the gradient-norm heatmap). matplotlib is imported only here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer_callbacks.core.errors import ConfigurationError


@dataclass(frozen=True)
class PlotEvent:
    """A moment to mark on the curves: a vertical line at ``step`` labelled ``label``."""

    step: int
    label: str
    kind: str = "event"
    """Plugin-defined category (``early_stop``, ``lr_reduction``, ``prune``...); one colour per kind."""


def find_trainer_state(path: str | Path) -> Path:
    """``trainer_state.json`` of ``path``: the file itself, the folder's, or its newest checkpoint's."""
    path = Path(path)
    if path.is_file():
        return path
    direct = path / "trainer_state.json"
    if direct.is_file():
        return direct
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(path)) if path.is_dir() else None
    if last is not None and (Path(last) / "trainer_state.json").is_file():
        return Path(last) / "trainer_state.json"
    raise ConfigurationError(
        f"no trainer_state.json in {str(path)!r} nor in a checkpoint-N folder inside it; "
        "pass a run's output_dir, a checkpoint folder, or the file itself (trainer.save_state() writes one)"
    )


def load_log_history(path: str | Path) -> list[dict[str, Any]]:
    with find_trainer_state(path).open() as handle:
        return list(json.load(handle).get("log_history", []))


def series(log_history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of ``key`` in ``log_history``."""
    steps, values = [], []
    for entry in log_history:
        if key in entry and "step" in entry:
            steps.append(int(entry["step"]))
            values.append(float(entry[key]))
    return steps, values


FREQUENT = 6
"""A kind with more events than this (checkpoint prunes, say) is drawn as ticks along the
bottom of the axes, so that the rare ones (a stop, an LR cut) stay readable as lines."""


def _mark_events(ax: Any, events: list[PlotEvent], colours: dict[str, Any]) -> None:
    by_kind: dict[str, list[PlotEvent]] = {}
    for event in events:
        by_kind.setdefault(event.kind, []).append(event)
    frequent = {kind for kind, group in by_kind.items() if len(group) > FREQUENT}
    for kind in sorted(frequent):
        steps = [event.step for event in by_kind[kind]]
        ax.plot(
            steps,
            [0.0] * len(steps),
            linestyle="none",
            marker="|",
            markersize=12,
            color=colours[kind],
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label=f"{kind} ({len(steps)})",
        )
    styles = ["--", ":", "-."]
    for i, kind in enumerate(sorted(set(by_kind) - frequent)):  # drawn last: on top
        for event in by_kind[kind]:
            ax.axvline(event.step, color=colours[kind], linestyle=styles[i % 3], linewidth=2, label=event.label)


def plot_run(source: str | Path, output_dir: str | Path | None = None) -> list[Path]:
    """Write ``curves.png`` and every plugin's figures; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainer_callbacks.core.plugins import hook

    state_file = find_trainer_state(source)
    history = load_log_history(state_file)
    out = Path(output_dir) if output_dir is not None else state_file.parent / "plots"
    out.mkdir(parents=True, exist_ok=True)

    events: list[PlotEvent] = []
    for result in hook().plot_events(log_history=history):
        events.extend(result or [])

    panels = [("loss", "training loss"), ("eval_loss", "eval loss"), ("learning_rate", "learning rate")]
    panels = [(key, title) for key, title in panels if series(history, key)[0]]
    fig, axes = plt.subplots(max(len(panels), 1), 1, figsize=(10, 3 * max(len(panels), 1)), squeeze=False)
    kinds = sorted({event.kind for event in events})
    colours = {kind: plt.get_cmap("tab10")((i + 1) % 10) for i, kind in enumerate(kinds)}  # C0 is the curve
    for ax, (key, title) in zip(axes[:, 0], panels):
        steps, values = series(history, key)
        ax.plot(steps, values, marker="." if len(steps) < 50 else None, label=key)
        ax.set_title(title)
        ax.set_xlabel("global step")
        if key == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        _mark_events(ax, events, colours)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize="small", loc="best")
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no loss or learning-rate entries in log_history", ha="center")
    fig.tight_layout()
    curves = out / "curves.png"
    fig.savefig(curves, dpi=100)
    plt.close(fig)

    written = [curves]
    for result in hook().plot_figures(log_history=history, output_dir=out):
        written.extend(Path(p) for p in (result or []))
    return written
