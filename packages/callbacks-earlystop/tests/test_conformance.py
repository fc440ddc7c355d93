"""Core's conformance kit (state is JSON, state round trip across checkpoints, reuse across
``train()`` calls, unrelated metrics, side effects on the main process only, deepcopy/pickle)
over a few EarlyStopping configurations, run in core's simulator."""

from __future__ import annotations

import functools
from typing import Any

from trainer_callbacks.earlystop import EarlyStopping, Metric
from trainer_callbacks.testing import parametrize_with_checks


@parametrize_with_checks(
    [
        functools.partial(EarlyStopping, "eval_loss", patience=1),
        functools.partial(EarlyStopping, {"eval_loss": "min", "eval_accuracy": "max"}, patience=2, combine="all"),
        functools.partial(
            EarlyStopping,
            [Metric("loss", threshold=0.01), Metric("accuracy", mode="max", stopping_threshold=0.9)],
            combine="any",
            patience=0,
        ),
        functools.partial(
            EarlyStopping,
            {"eval_loss": "min", "eval_accuracy": "max"},
            combine="pareto",
            patience=2,
            threshold_mode="rel",
            threshold=0.01,
            min_steps=2,
        ),
    ]
)
def test_conformance(callback: Any, check: Any) -> None:
    check()
