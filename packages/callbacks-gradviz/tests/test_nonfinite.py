"""NaN/inf gradients are named by group and step, as seen BEFORE clipping spreads NaN everywhere."""

from __future__ import annotations

import math
import warnings

import pytest
from gradviz_helpers import logged, tiny_bert

from trainer_callbacks.gradviz import GradNormLogger
from trainer_callbacks.gradviz.errors import NonFiniteGradientError, NonFiniteGradientWarning


def poison(model, name: str, at_step: int, trainer_ref: list) -> None:
    """Make the gradient of parameter ``name`` NaN during the backward of step ``at_step``."""
    param = dict(model.named_parameters())[name]

    def hook(grad):
        trainer = trainer_ref[0]
        return grad * math.nan if trainer.state.global_step + 1 == at_step else grad

    param.register_hook(hook)


@pytest.mark.parametrize("measured", [True, False], ids=["logged-step", "unlogged-step"])
def test_raise_names_the_poisoned_group_and_step(run_trainer, measured) -> None:
    model = tiny_bert()
    ref: list = []
    poison(model, "bert.encoder.layer.1.output.dense.weight", at_step=3, trainer_ref=ref)
    trainer = run_trainer(
        [GradNormLogger(on_nonfinite="raise")],
        model=model,
        train=False,
        max_steps=4,
        logging_steps=1 if measured else 2,
        max_grad_norm=1.0,
    )
    ref.append(trainer)
    with pytest.raises(NonFiniteGradientError) as info:
        trainer.train()
    assert info.value.step == 3
    assert info.value.groups == ["bert.encoder.layer.1"]  # not every group, although the clip made all NaN
    assert "bert.encoder.layer.1" in str(info.value) and "step 3" in str(info.value)
    assert trainer.state.global_step == 2  # raised before the optimizer step of step 3


def test_warn_logs_the_group_once_per_step_and_goes_on(run_trainer) -> None:
    model = tiny_bert()
    ref: list = []
    poison(model, "bert.embeddings.word_embeddings.weight", at_step=2, trainer_ref=ref)
    trainer = run_trainer(
        [GradNormLogger(on_nonfinite="warn")], model=model, train=False, max_steps=3, logging_steps=1, max_grad_norm=1.0
    )
    ref.append(trainer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    ours = [w for w in caught if issubclass(w.category, NonFiniteGradientWarning)]
    # one warning per step: step 2 names only the poisoned group; the NaN update then poisons every weight,
    # so step 3 names all five groups
    assert [str(w.message).count("step ") for w in ours] == [1, 1]
    assert "step 2" in str(ours[0].message) and "1 of 5 groups: bert.embeddings (nan)" in str(ours[0].message)
    assert "step 3" in str(ours[1].message) and "5 of 5 groups" in str(ours[1].message)
    history = trainer.state.log_history
    flags = logged(history, "grad_nonfinite/")
    assert flags[2] == {"bert.embeddings": 1.0} and len(flags[3]) == 5
    norms = logged(history, "grad_norm/")
    assert "bert.embeddings" not in norms[2] and math.isfinite(norms[2]["classifier"])
    assert trainer.state.global_step == 3


def test_warn_checks_only_measured_steps_and_names_the_group_there(run_trainer) -> None:
    # The poisoned step 1 is not logged (logging_steps=2): "warn" costs nothing there. The NaN update
    # it causes makes step 2's gradients non-finite, and the measured step 2 reports it.
    model = tiny_bert()
    ref: list = []
    poison(model, "classifier.weight", at_step=1, trainer_ref=ref)
    trainer = run_trainer(
        [GradNormLogger(on_nonfinite="warn")], model=model, train=False, max_steps=2, logging_steps=2, max_grad_norm=1.0
    )
    ref.append(trainer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    ours = [str(w.message) for w in caught if issubclass(w.category, NonFiniteGradientWarning)]
    assert len(ours) == 1 and "step 2" in ours[0]
    assert list(logged(trainer.state.log_history, "grad_nonfinite/")) == [2]


def test_ignore_checks_nothing_on_unlogged_steps(run_trainer) -> None:
    model = tiny_bert()
    ref: list = []
    poison(model, "classifier.weight", at_step=1, trainer_ref=ref)
    trainer = run_trainer(
        [GradNormLogger(on_nonfinite="ignore")],
        model=model,
        train=False,
        max_steps=2,
        logging_steps=2,
        max_grad_norm=1.0,
    )
    ref.append(trainer)
    trainer.train()
    assert logged(trainer.state.log_history, "grad_nonfinite/") == {}
