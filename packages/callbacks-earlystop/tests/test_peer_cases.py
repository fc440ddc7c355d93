"""Single-metric cases re-derived from Lightning's, Keras's and transformers' own test suites.

Each case states its source. Their epochs are our evaluations (index 0 = first evaluation).
Parameter mapping: Lightning/Keras ``min_delta`` -> ``threshold`` (abs), ``mode`` -> Metric mode,
Keras ``start_from_epoch`` -> ``min_steps`` (in global steps here); transformers'
``early_stopping_patience``/``early_stopping_threshold`` -> ``patience``/``threshold``.
Where semantics differ it is noted at the case. All cases run through the real callback
(``on_train_begin`` then one ``on_evaluate`` per evaluation, as the Trainer calls them).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from trainer_callbacks.earlystop import EarlyStopping, Metric

LIGHTNING = "Lightning-AI/pytorch-lightning tests/tests_pytorch/callbacks/test_early_stopping.py"
KERAS = "keras-team/keras keras/src/callbacks/early_stopping_test.py"
HF = "huggingface/transformers tests/trainer/test_trainer_callback.py"


def _stop(drive: Any, values: list[float], name: str = "eval_val_loss", **options: Any) -> tuple[int | None, Any]:
    cb = EarlyStopping(monitor=options.pop("monitor", {name: options.pop("mode", "min")}), **options)
    index = drive(cb).run([{name: v} for v in values])
    return index, cb


# Lightning test_early_stopping_patience: (loss_values, patience, expected_stop_epoch); default min_delta 0,
# mode min. Lightning's strict `<` is our abs rule with threshold 0, so the expected epochs carry over.
@pytest.mark.parametrize(
    ("values", "patience", "expected"),
    [([6, 5, 5, 5, 5, 5], 3, 4), ([6, 5, 4, 4, 3, 3], 1, 3), ([6, 5, 6, 5, 5, 5], 3, 4)],
)
def test_lightning_patience(drive: Any, values: list[float], patience: int, expected: int) -> None:
    index, cb = _stop(drive, values, patience=patience)  # source: LIGHTNING, test_early_stopping_patience
    assert index == expected
    assert cb.stop_reason.kind == "patience"


# Lightning test_early_stopping_thresholds: default patience 3, mode min.
# Lightning checks stopping_threshold BEFORE divergence_threshold; our issue orders divergence first.
# The two only disagree when one value crosses both, which our config rejects (overlapping thresholds).
@pytest.mark.parametrize(
    ("stopping", "divergence", "values", "expected", "kind"),
    [
        (None, None, [8, 4, 2, 3, 4, 5, 8, 10], 5, "patience"),
        (2.9, None, [9, 8, 7, 6, 5, 6, 4, 3, 2, 1], 8, "goal"),
        (None, 15.9, [9, 4, 2, 16, 32, 64], 3, "divergence"),
    ],
)
def test_lightning_thresholds(
    drive: Any, stopping: float | None, divergence: float | None, values: list[float], expected: int, kind: str
) -> None:
    index, cb = _stop(drive, values, stopping_threshold=stopping, divergence_threshold=divergence)
    assert index == expected  # source: LIGHTNING, test_early_stopping_thresholds
    assert cb.stop_reason.kind == kind


# Lightning test_early_stopping_on_non_finite_monitor: [4, 3, inf|nan, 2, 1] stops at epoch 2.
@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_lightning_non_finite(drive: Any, bad: float) -> None:
    index, cb = _stop(drive, [4, 3, bad, 2, 1], check_finite=True)
    assert index == 2  # source: LIGHTNING, test_early_stopping_on_non_finite_monitor
    assert cb.stop_reason.kind == "nonfinite"
    assert cb.best["eval_val_loss"] == (3, 2)  # the NaN/inf never became the best (evaluation 2 is step 2)


# Lightning test_early_stopping_reasons (models with fixed per-epoch losses).
@pytest.mark.parametrize(
    ("values", "options", "expected", "kind"),
    [
        ([10.0] * 10, {"patience": 2}, 2, "patience"),  # ModelWithHighLoss
        ([5.0, 3.0, 1.0, 0.5, 0.1], {"stopping_threshold": 0.6}, 3, "goal"),  # ModelWithDecreasingLoss
        # ModelWithIncreasingLoss: patience (default 3) would also fire at epoch 3; divergence wins as in Lightning
        ([1.0, 2.0, 5.0, 10.0, 15.0], {"divergence_threshold": 8.0}, 3, "divergence"),
        ([1.0, 0.5, math.nan], {"check_finite": True}, 2, "nonfinite"),  # ModelWithNaNLoss
        ([5.0, 4.0, 3.0], {"patience": 3}, None, None),  # ModelWithImprovingLoss, max_epochs=3: not stopped
    ],
)
def test_lightning_reasons(drive: Any, values: list[float], options: dict, expected: int | None, kind: str) -> None:
    index, cb = _stop(drive, values, **options)  # source: LIGHTNING, test_early_stopping_reasons
    assert index == expected
    assert (cb.stop_reason.kind if cb.stop_reason else None) == kind


# Keras test_early_stopping_patience: losses below, patience 0..3, stopped_epoch == max(patience, 1) + 2.
# Keras patience=0 acts like 1, exactly clarification 1.
@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_keras_patience(drive: Any, patience: int) -> None:
    losses = [10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5]
    index, _ = _stop(drive, losses, name="eval_loss", patience=patience)
    assert index == max(patience, 1) + 2  # source: KERAS, test_early_stopping_patience


# Keras test_early_stopping_final_weights_when_restoring_model_weights.
def test_keras_best_epoch(drive: Any) -> None:
    index, cb = _stop(drive, [0.2, 0.15, 0.1, 0.11, 0.12], patience=2)
    assert index == 4  # 5 epochs trained
    assert cb.best["eval_val_loss"] == (0.1, 3)  # best at epoch 2 = evaluation at step 3


def test_keras_baseline_never_beaten(drive: Any) -> None:
    # Same Keras test, second part: baseline 0.5, patience 5, nothing beats it -> 5 epochs trained.
    index, cb = _stop(drive, [0.9, 0.8, 0.7, 0.71, 0.72, 0.73], patience=5, baseline=0.5)
    assert index == 4
    assert cb.best["eval_val_loss"] == (0.5, None)  # still the baseline; Keras tracks 0.7 apart for its weights


def test_keras_start_from_epoch(drive: Any) -> None:
    # Keras test_early_stopping_with_start_from_epoch: at least patience + start_from_epoch epochs run.
    # Our min_steps ignores evaluations before that global step entirely: with a flat metric, patience 3 and
    # min_steps 3 (evaluations at steps 1, 2, ...), the first counted evaluation is step 3, so the stop is at
    # step 3 + 3 = 6, i.e. index 5 = patience + start (2 ignored evaluations) + 0.
    index, cb = _stop(drive, [1.0] * 20, patience=3, min_steps=3)
    assert index == 5
    assert cb.stop_reason.step == 6


# transformers EarlyStoppingCallbackTest: mode max (greater_is_better=True).
@pytest.mark.parametrize(
    ("best", "value", "threshold", "wait"),
    [
        (0.9, 0.8, 0.0, 1),  # test_patience_counter_increments_when_metric_does_not_improve
        (0.8, 0.95, 0.0, 0),  # test_patience_counter_resets_when_metric_improves
        (0.8, 0.85, 0.1, 1),  # test_threshold_prevents_small_improvements
    ],
)
def test_transformers_counter(drive: Any, best: float, value: float, threshold: float, wait: int) -> None:
    # transformers compares against state.best_metric; here the first evaluation sets our own best.
    cb = EarlyStopping(monitor=[Metric("accuracy", mode="max")], patience=3, threshold=threshold)
    d = drive(cb)
    d.evaluate(1, {"eval_accuracy": best})
    d.evaluate(2, {"eval_accuracy": value})
    assert cb.waits["eval_accuracy"] == wait  # source: HF, EarlyStoppingCallbackTest


def test_transformers_threshold_difference(drive: Any) -> None:
    """Where we differ from transformers on purpose: gains under the threshold do not move our best.

    transformers compares with state.best_metric, which the Trainer moves on every strict gain: with
    threshold 0.1, accuracies 0.80, 0.85, 0.90, 0.95 each beat the previous by 0.05 and each counts as
    no improvement, so patience 3 stops at the 4th evaluation although accuracy rose by 0.15. Ours keeps
    best = 0.80 until a value beats it by more than 0.1: 0.95 does (0.95 > 0.90), so no stop.
    """
    cb = EarlyStopping(monitor={"eval_accuracy": "max"}, patience=3, threshold=0.1)
    index = drive(cb).run([{"eval_accuracy": v} for v in (0.80, 0.85, 0.90, 0.95)])
    assert index is None
    assert cb.best["eval_accuracy"] == (0.95, 4)
