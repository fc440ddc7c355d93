"""WHEN gradviz measures: exactly the steps the Trainer logs (its own ``grad_norm`` entries are the reference)."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import pytest
from gradviz_helpers import RecordingTrainer, TokenTask, logged, reference_group, tiny_bert, trainer_grad_norms
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import IterableDataset
from transformers import TrainerCallback

from trainer_callbacks.gradviz import GradNormLogger
from trainer_callbacks.gradviz.timing import steps_per_epoch, will_log
from trainer_callbacks.testing import build_tiny_trainer

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


class Stream(IterableDataset):
    """A dataset WITHOUT a length: the Trainer learns that a pass ended only when the iterator runs out."""

    def __init__(self, n: int) -> None:
        self.task = TokenTask(n)

    def __iter__(self):
        return (self.task[i] for i in range(len(self.task)))


def test_epoch_logging_of_an_iterable_dataset(tmp_path) -> None:
    # 32 examples / batch 4 = 8 steps per pass, max_steps=20: the Trainer logs at the end of each pass
    # (steps 8 and 16, known only after the pass's last step) and at max_steps (20)
    trainer = build_tiny_trainer(
        tmp_path / "out",
        [GradNormLogger()],
        model=tiny_bert(),
        train_dataset=Stream(32),
        trainer_class=RecordingTrainer,
        per_device_train_batch_size=4,
        max_steps=20,
        logging_strategy="epoch",
        learning_rate=1e-3,
    )
    assert isinstance(trainer, RecordingTrainer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert not [w for w in caught if "GradNormLogger" in str(w.message)]  # nothing it could not foresee
    history = trainer.state.log_history
    trainer_steps = sorted(int(e["step"]) for e in history if "loss" in e and "grad_norm" in e)
    assert trainer_steps == [8, 16, 20]
    groups = logged(history, "grad_norm/")
    assert sorted(groups) == trainer_steps
    for step in trainer_steps:  # the norms of THAT step (the newest measured), not of an earlier one
        expected: dict[str, float] = {}
        for name, value in trainer.unclipped[step].items():
            expected[reference_group(name)] = expected.get(reference_group(name), 0.0) + value * value
        assert groups[step] == pytest.approx({g: math.sqrt(v) for g, v in expected.items()}, rel=1e-5)


class ForceLog(TrainerCallback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            control.should_log = True


class StopAt(ForceLog):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            control.should_training_stop = True


@pytest.mark.parametrize(
    "other, overrides, cause",
    [
        (
            ForceLog(3),
            dict(max_steps=4, logging_steps=2),
            "it is not on the logging schedule (logging_strategy='steps', logging_steps=2), so another callback "
            "set control.should_log",
        ),
        (
            StopAt(3),
            dict(max_steps=8, logging_strategy="epoch"),
            "the run stopped at step 3, before the end of its epoch (control.should_training_stop or "
            "should_epoch_stop, set by a callback such as early stopping)",
        ),
    ],
    ids=["forced-log", "stopped-mid-epoch"],
)
def test_an_unforeseeable_log_is_explained(run_trainer, other, overrides, cause) -> None:
    with pytest.warns(RuntimeWarning) as caught:
        trainer = run_trainer([GradNormLogger(), other], **overrides)
    assert 3 in trainer_grad_norms(trainer.state.log_history)  # the Trainer did log step 3
    assert 3 not in logged(trainer.state.log_history, "grad_norm/")
    messages = [str(w.message) for w in caught if "could not know in advance" in str(w.message)]
    assert len(messages) == 1
    assert messages[0].startswith("GradNormLogger: the Trainer logged step 3, which gradviz could not know in advance")
    assert cause in messages[0]
