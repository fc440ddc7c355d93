"""WHEN gradviz measures: exactly the steps the Trainer logs (its own ``grad_norm`` entries are the reference)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from gradviz_helpers import logged, trainer_grad_norms
from hypothesis import given
from hypothesis import strategies as st

from trainer_callbacks.gradviz import GradNormLogger
from trainer_callbacks.gradviz.timing import steps_per_epoch, will_log

RUNS = [
    pytest.param(dict(max_steps=5, logging_steps=2), id="steps-2"),
    pytest.param(dict(max_steps=5, logging_steps=2, logging_first_step=True), id="steps-2-first"),
    pytest.param(dict(max_steps=4, logging_steps=0.5), id="fractional-0.5-of-max-steps"),
    # 10 samples / batch 2 = 5 micro-batches per epoch, accumulation 2 -> updates of 2, 2, 1 micro-batches
    pytest.param(
        dict(
            max_steps=-1,
            num_train_epochs=2,
            logging_steps=2,
            gradient_accumulation_steps=2,
            per_device_train_batch_size=2,
        ),
        id="accum-2-with-remainder",
    ),
    pytest.param(
        dict(
            max_steps=-1,
            num_train_epochs=2,
            logging_strategy="epoch",
            gradient_accumulation_steps=2,
            per_device_train_batch_size=2,
        ),
        id="epoch-strategy",
    ),
    pytest.param(dict(max_steps=4, logging_strategy="epoch", per_device_train_batch_size=4), id="epoch-strategy-cut"),
]


@pytest.mark.parametrize("overrides", RUNS)
def test_measured_steps_are_the_trainers_logged_steps(run_trainer, overrides) -> None:
    trainer = run_trainer(
        [GradNormLogger(on_nonfinite="ignore")], n=10 if "num_train_epochs" in overrides else 16, **overrides
    )
    history = trainer.state.log_history
    trainer_steps = sorted(trainer_grad_norms(history))
    assert trainer_steps  # the configuration logs something
    assert sorted(logged(history, "grad_norm/")) == trainer_steps


def test_every_n_steps_overrides_the_logging_schedule(run_trainer) -> None:
    trainer = run_trainer([GradNormLogger(every_n_steps=3)], max_steps=7, logging_steps=2)
    assert sorted(logged(trainer.state.log_history, "grad_norm/")) == [3, 6]


def _args(**kw):
    base = dict(logging_first_step=False, logging_strategy="steps", logging_steps=1)
    base.update(kw)
    return SimpleNamespace(**base)


@given(every=st.integers(1, 20), steps=st.integers(1, 200), first=st.booleans())
def test_steps_rule_is_the_default_flow_rule(every: int, steps: int, first: bool) -> None:
    # DefaultFlowCallback.on_step_end: (global_step == 1 and logging_first_step) or global_step % logging_steps == 0
    args = _args(logging_first_step=first, logging_steps=every)
    state = SimpleNamespace(logging_steps=every, max_steps=steps)
    measured = [s for s in range(1, steps + 1) if will_log(s, args=args, state=state)]
    expected = [s for s in range(1, steps + 1) if (s == 1 and first) or s % every == 0]
    assert measured == expected


@given(length=st.integers(1, 50), ga=st.integers(1, 8))
def test_steps_per_epoch_is_the_trainers_formula(length: int, ga: int) -> None:
    # Trainer.set_initial_training_values: max(len // ga + int(len % ga > 0), 1) == ceil(len / ga)
    assert steps_per_epoch(range(length), ga) == -(-length // ga)


def test_no_logging_means_no_measuring() -> None:
    args, state = _args(logging_strategy="no"), SimpleNamespace(logging_steps=1, max_steps=10)
    assert not any(will_log(s, args=args, state=state) for s in range(1, 11))
