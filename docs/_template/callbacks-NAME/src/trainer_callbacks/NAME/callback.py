"""The callback itself: replace the logic, keep the shape."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from trainer_callbacks.core.callback import PluginCallback
from trainer_callbacks.core.errors import ConfigurationError


class BestMetricLogger(PluginCallback):
    """Log the best value of an evaluation metric so far as ``NAME/best``.

    Args:
        monitor (str): the evaluation metric to watch, e.g. "eval_loss".
        mode (str): "min" or "max": which direction is better.
    """

    def __init__(self, monitor: str = "eval_loss", mode: str = "min") -> None:
        if mode not in ("min", "max"):
            raise ConfigurationError(f"BestMetricLogger(mode={mode!r}): pass mode='min' or mode='max'")
        self.monitor = monitor if monitor.startswith("eval_") else f"eval_{monitor}"
        self.mode = mode
        super().__init__(monitor=monitor, mode=mode)  # JSON-able options: saved in checkpoints

    # per-run progress: reset at every train(), saved in checkpoints, restored on resume
    def reset(self) -> None:
        self.best: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = state.get("best")

    def check_training_args(self, args: Any) -> list[str]:
        if str(args.eval_strategy) in ("no", "IntervalStrategy.NO"):
            return ["eval_strategy='no': there is no metric to watch; set eval_strategy='steps' or 'epoch'"]
        return []

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None,
                    **kwargs: Any) -> None:
        value = (metrics or {}).get(self.monitor)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return  # not this evaluation's metric (another eval set), or not a number
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best = float(value)
        self.report(args, state, {"NAME/best": self.best})
