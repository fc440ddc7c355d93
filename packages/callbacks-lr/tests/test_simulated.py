"""Simulator-based properties (core's Trainer-faithful ``simulate``) over generated TrainingArguments.

For any generated configuration that evaluates (epochs or max_steps, gradient accumulation,
every eval strategy, warmup, linear / constant / cosine schedules, ``eval_on_start``...) and
any non-negative metric stream, the LR used by every optimizer step equals the LR of the same
run without the callback times the scale torch's ``ReduceLROnPlateau`` reaches on the
evaluations seen so far (from ``min_steps`` on).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, event, given
from hypothesis import strategies as st
from lr_testing import LRRecorder, torch_oracle_lrs
from transformers import TrainerCallback

from trainer_callbacks.lr import ReduceLROnPlateau

testing = pytest.importorskip("trainer_callbacks.testing")
simulate = testing.simulate
tcst = testing.strategies


class EvalSteps(TrainerCallback):
    """The global step and monitored value of every evaluation, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # type: ignore[no-untyped-def]
        self.seen.append((state.global_step, float(metrics["eval_loss"])))


@given(
    tcst.training_setups(output_dir="/tmp/lr-sim", require_eval=True, allow_best_model=False),
    tcst.metric_streams(kind=("improving", "plateauing", "noisy", "diverging", "nonfinite"), max_size=16),
    st.integers(0, 2),
    st.integers(0, 1),
    st.sampled_from([0, 0, 3]),
)
def test_used_lr_is_plain_schedule_times_torch_scale(setup, stream, patience, cooldown, min_steps) -> None:  # type: ignore[no-untyped-def]
    values = [m["eval_loss"] for m in stream]
    assume(all(math.isnan(v) or v >= 0 or v == -math.inf for v in values))
    plain_rec = LRRecorder()
    simulate(setup.args, [plain_rec], stream, train_dataset_len=setup.train_dataset_len)
    evals, recorder = EvalSteps(), LRRecorder()
    kwargs = dict(mode="min", factor=0.5, patience=patience, cooldown=cooldown)
    sim = simulate(
        setup.args,
        [evals, ReduceLROnPlateau(min_steps=min_steps, **kwargs), recorder],
        stream,
        train_dataset_len=setup.train_dataset_len,
    )
    assert sorted(recorder.used) == sorted(plain_rec.used)
    counted = [(step, v) for step, v in evals.seen if step >= min_steps]
    scales = [lrs[0] for lrs in torch_oracle_lrs([1.0], [v for _, v in counted], **kwargs)]
    event(f"reduced: {bool(scales) and scales[-1] < 1}")
    for step, used in recorder.used.items():
        done = sum(1 for s, _ in counted if s < step)  # evaluations before optimizer step `step`
        scale = scales[done - 1] if done else 1.0
        for group, lr in enumerate(used):
            assert lr == pytest.approx(plain_rec.used[step][group] * scale, rel=1e-12, abs=1e-20)
    assert isinstance(sim.optimizer, torch.optim.Optimizer) or hasattr(sim.optimizer, "optimizer")
