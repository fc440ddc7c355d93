"""The callback itself: replace the logic, keep the shape."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from trainer_callbacks.core import (
    ConfigurationError,
    EvaluationRound,
    PluginCallback,
    Round,
    evaluates,
    infer_mode,
    metric_value,
    missing_metrics_message,
    mode_problem,
    monitor_keys,
)


class BestMetricLogger(PluginCallback):
    """Log the best value of an evaluation metric so far as ``NAME/best``.

    Args:
        monitor (str): the evaluation metric to watch, e.g. "eval_loss" ("eval_" is added when missing).
        mode (str | None): "min" or "max": which direction is better; None: greater_is_better when monitor is
            metric_for_best_model, else "min" for a loss or error rate and "max" for a score.
    """

    def __init__(self, monitor: str = "eval_loss", mode: str | None = None) -> None:
        if mode not in (None, "min", "max"):
            raise ConfigurationError(f"BestMetricLogger(mode={mode!r}): pass mode='min', 'max' or None")
        (self.monitor,) = monitor_keys([monitor], callback="BestMetricLogger")  # checked, with "eval_"
        self.mode = mode
        super().__init__(monitor=monitor, mode=mode)  # JSON-able options: saved in checkpoints

    # per-run progress: reset at every train(), saved in checkpoints, restored on resume
    def reset(self) -> None:
        self.best: float | None = None
        self.rounds = EvaluationRound()

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = state.get("best")

    def check_training_args(self, args: Any) -> list[str]:
        problems = []
        if not evaluates(args):
            problems.append("eval_strategy='no': there is no metric to watch; set eval_strategy='steps' or 'epoch'")
        if self.mode is None and infer_mode(self.monitor, args) is None:
            problems.append(mode_problem("BestMetricLogger", [self.monitor], args, fix="mode='max' or mode='min'"))
        return problems

    def setup_run(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.direction = self.mode or infer_mode(self.monitor, args)
        self.rounds.begin()  # learns the eval datasets (eval_dataset a dict: one on_evaluate per dataset)

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for evaluation in self.rounds.add(state.global_step, metrics or {}):
            self.on_round(args, state, evaluation)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for evaluation in self.rounds.close():  # a round whose datasets could not be known ends here
            self.on_round(args, state, evaluation)

    def on_round(self, args: Any, state: Any, evaluation: Round) -> None:
        """One whole evaluation (every eval dataset's metrics)."""
        if self.monitor not in evaluation.metrics:
            raise ConfigurationError(missing_metrics_message("BestMetricLogger", [self.monitor], evaluation))
        value = metric_value(evaluation.metrics, self.monitor, callback="BestMetricLogger", step=evaluation.step)
        if not math.isfinite(value):
            return
        if self.best is None or (value < self.best if self.direction == "min" else value > self.best):
            self.best = value
        self.report(args, state, {"NAME/best": self.best}, step=evaluation.step)
