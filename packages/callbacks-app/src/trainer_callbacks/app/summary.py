"""The short, human-readable account of a run that ``trainer-callbacks demo`` prints at the end.

Core writes what it can read from ``trainer_state.json`` alone (how far training went and
why it ended, the best evaluation, where the outputs are and the commands that open them);
every plugin adds its own lines through the ``summarize_run`` hook (early stopping: why
and when; lr: each reduction; checkpoint: kept, deleted, bytes freed; gradviz: the
layers with the largest and smallest gradient norms).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunSummary:
    """What the summary says, as data (``lines()`` renders it)."""

    output_dir: Path
    global_step: int
    max_steps: int
    epoch: float | None
    stopped_by: str | None
    """The namespace of the ``<namespace>/stopped`` scalar a plugin reported (e.g. ``early_stopping``)."""
    best_metric: float | None = None
    metric_name: str | None = None
    best_checkpoint: str | None = None
    last_eval: dict[str, float] = field(default_factory=dict)
    plugin_lines: dict[str, list[str]] = field(default_factory=dict)
    facts: list[str] = field(default_factory=list)
    """Lines the caller adds after the plugins' (the demo: which checkpoints were deleted)."""
    plots: list[Path] = field(default_factory=list)
    tensorboard_dir: Path | None = None
    mlflow_uri: str | None = None
    notes: list[str] = field(default_factory=list)
    train_seconds: float | None = None

    def lines(self) -> list[str]:
        out: list[str] = []
        ran = f"Trained {self.global_step} of {self.max_steps} steps"
        if self.epoch is not None:
            ran += f" ({self.epoch:.1f} epochs"
            ran += f", {self.train_seconds:.0f} s)" if self.train_seconds is not None else ")"
        if self.global_step < self.max_steps:
            who = f" by {self.stopped_by}" if self.stopped_by else " (a callback set control.should_training_stop)"
            out.append(f"{ran}: stopped early at step {self.global_step}{who}.")
        else:
            out.append(f"{ran}: ran to max_steps, nothing stopped it.")
        if self.best_metric is not None and self.metric_name:
            best = f"Best {self.metric_name} {self.best_metric:.4g}"
            if self.best_checkpoint:
                best += f" ({Path(self.best_checkpoint).name})"
            out.append(
                best + ("; last eval: " + ", ".join(f"{k} {v:.4g}" for k, v in self.last_eval.items()))
                if self.last_eval
                else best
            )
        elif self.last_eval:
            out.append("Last eval: " + ", ".join(f"{k} {v:.4g}" for k, v in self.last_eval.items()))
        for lines in self.plugin_lines.values():
            out.extend(f"- {line}" for line in lines)
        out.extend(f"- {line}" for line in self.facts)
        out.append(f"Outputs in {self.output_dir}: trainer_state.json, model, checkpoints")
        if self.plots:
            out.append("  plots:       " + ", ".join(str(p) for p in self.plots))
        if self.tensorboard_dir is not None:
            out.append(f"  TensorBoard: tensorboard --logdir {shlex.quote(str(self.tensorboard_dir))}")
        if self.mlflow_uri is not None:
            out.append(f"  MLflow:      mlflow ui --backend-store-uri {shlex.quote(self.mlflow_uri)}")
        out.extend(self.notes)
        return out

    def text(self) -> str:
        return "\n".join(self.lines())


def plugin_summaries(log_history: list[dict[str, Any]], output_dir: Path) -> dict[str, list[str]]:
    """Each plugin's ``summarize_run`` lines, by plugin name, in the order the plugins ask for
    (``CallbackSpec.summary_order``: the first-party ones read why training stopped, the LR, the
    checkpoints, the gradients), ties and plugins without a callback by name.

    A plugin whose hook raises gets one line saying so; the others are unaffected.
    """
    from trainer_callbacks.core import call_each

    result: dict[str, list[str]] = {}
    for name, lines in call_each("summarize_run", log_history=log_history, output_dir=output_dir):
        if isinstance(lines, Exception):
            lines = [f"(its summary failed: {type(lines).__name__}: {lines})"]
        if lines:
            result[name] = [str(line) for line in lines]
    return result


def stopped_by(log_history: list[dict[str, Any]]) -> str | None:
    """The namespace of the last ``<namespace>/stopped`` = 1 scalar in ``log_history``, if any."""
    who = None
    for entry in log_history:
        for key, value in entry.items():
            if key.endswith("/stopped") and isinstance(value, (int, float)) and value >= 1:
                who = key.rsplit("/", 1)[0]
    return who


def last_eval(
    log_history: list[dict[str, Any]], keys: tuple[str, ...] = ("eval_loss", "eval_accuracy")
) -> dict[str, float]:
    for entry in reversed(log_history):
        if "eval_loss" in entry:
            return {k: float(entry[k]) for k in keys if isinstance(entry.get(k), (int, float))}
    return {}


def summarize(
    state: Mapping[str, Any],
    output_dir: Path,
    *,
    metric_name: str | None = None,
    plots: list[Path] | None = None,
    tensorboard_dir: Path | None = None,
    mlflow_uri: str | None = None,
    notes: list[str] | None = None,
    facts: list[str] | None = None,
) -> RunSummary:
    """A :class:`RunSummary` from a ``trainer_state.json`` dict and the plugins' hooks."""
    history = list(state.get("log_history", []))
    train_seconds = next((float(e["train_runtime"]) for e in reversed(history) if "train_runtime" in e), None)
    return RunSummary(
        output_dir=output_dir,
        global_step=int(state.get("global_step", 0)),
        max_steps=int(state.get("max_steps", 0)),
        epoch=state.get("epoch"),
        stopped_by=stopped_by(history),
        best_metric=state.get("best_metric"),
        metric_name=metric_name,
        best_checkpoint=state.get("best_model_checkpoint"),
        last_eval=last_eval(history),
        plugin_lines=plugin_summaries(history, output_dir),
        plots=list(plots or []),
        tensorboard_dir=tensorboard_dir,
        mlflow_uri=mlflow_uri,
        notes=list(notes or []),
        facts=list(facts or []),
        train_seconds=train_seconds,
    )


def load_state(output_dir: Path) -> dict[str, Any]:
    with (output_dir / "trainer_state.json").open() as handle:
        return dict(json.load(handle))
