"""Every numeric case of torch's own ``test_reduce_lr_on_plateau*`` tests, re-derived.

Source: pytorch/pytorch, test/optim/test_lrscheduler.py (TestLRScheduler): the tests
``test_reduce_lr_on_plateau1`` ... ``8`` and ``test_reduce_lr_on_plateau_state_dict``. There
the optimizer has two param groups set to lr 0.5, the loop is ``opt.step();
scheduler.step(metrics[epoch])`` and ``targets[g][epoch]`` is checked against group ``g``'s LR
after the step (only as many groups as ``targets`` lists). Here the same metric stream goes
through :class:`ReduceLROnPlateau` (one evaluation per step, constant schedule) and the group
LRs after each evaluation must equal torch's targets (to torch's tolerance, atol=1e-5), and
must equal torch's own scheduler on the same input exactly.

torch's ``test_compound_reduce_lr_on_plateau1..5`` set ``targets = targets[1:]`` (an empty
list), so they check nothing; their composition is covered in ``test_composition.py``.
"""

from __future__ import annotations

from typing import Any, TypedDict

import pytest
import torch
from lr_testing import sgd, torch_oracle_lrs, trainer_loop, training_args

from trainer_callbacks.lr import ReduceLROnPlateau
from trainer_callbacks.lr.plateau import PlateauRule


class Case(TypedDict):
    epochs: int
    metrics: list[float]
    kwargs: dict[str, Any]  # ReduceLROnPlateau's (and torch's scheduler's) keyword arguments
    targets: list[list[float]]


CASES: dict[str, Case] = {
    # test_reduce_lr_on_plateau1: epochs=10, metrics 10 - i*0.0167, abs threshold 0.01: always improving.
    "plateau1": dict(
        epochs=10,
        metrics=[10 - i * 0.0167 for i in range(20)],
        kwargs=dict(threshold_mode="abs", mode="min", threshold=0.01, patience=5, cooldown=5),
        targets=[[0.5] * 20],
    ),
    # test_reduce_lr_on_plateau2: steps of 0.0165 < abs threshold 0.1: bad from epoch 1, cut every 6 epochs.
    "plateau2": dict(
        epochs=22,
        metrics=[10 - i * 0.0165 for i in range(22)],
        kwargs=dict(patience=5, cooldown=0, threshold_mode="abs", mode="min", threshold=0.1),
        targets=[[0.5] * 6 + [0.05] * 7 + [0.005] * 7 + [0.0005] * 2],
    ),
    # test_reduce_lr_on_plateau3: max mode, negative metrics, abs threshold (default 1e-4).
    "plateau3": dict(
        epochs=22,
        metrics=[-0.8] * 2 + [-0.234] * 20,
        kwargs=dict(mode="max", patience=5, cooldown=5, threshold_mode="abs"),
        targets=[[0.5] * (2 + 6) + [0.05] * (5 + 6) + [0.005] * 4],
    ),
    # test_reduce_lr_on_plateau4: grows 2.5%/epoch; rel 0.1 needs 4 epochs (1.025**4 > 1.1), patience 3.
    "plateau4": dict(
        epochs=20,
        metrics=[1.5 * (1.025**i) for i in range(20)],
        kwargs=dict(mode="max", patience=3, threshold_mode="rel", threshold=0.1),
        targets=[[0.5] * 20],
    ),
    # test_reduce_lr_on_plateau5: grows 0.5%/epoch, never 10%: cut at epochs 5 and 16 (cooldown 5).
    "plateau5": dict(
        epochs=20,
        metrics=[1.5 * (1.005**i) for i in range(20)],
        kwargs=dict(mode="max", threshold_mode="rel", threshold=0.1, patience=5, cooldown=5),
        targets=[[0.5] * 6 + [0.05] * (5 + 6) + [0.005] * 4],
    ),
    # test_reduce_lr_on_plateau6: falls 15%/epoch > rel 0.1: always improving.
    "plateau6": dict(
        epochs=20,
        metrics=[1.5 * (0.85**i) for i in range(20)],
        kwargs=dict(mode="min", threshold_mode="rel", threshold=0.1),
        targets=[[0.5] * 20],
    ),
    # test_reduce_lr_on_plateau7: flat at 1 then 0.6 (an improvement) inside the cooldown, then flat.
    "plateau7": dict(
        epochs=20,
        metrics=[1] * 7 + [0.6] + [0.5] * 12,
        kwargs=dict(mode="min", threshold_mode="rel", threshold=0.1, patience=5, cooldown=5),
        targets=[[0.5] * 6 + [0.05] * (5 + 6) + [0.005] * 4],
    ),
    # test_reduce_lr_on_plateau8: per-group min_lr [0.4, 0.3] clamps both groups at the first cut.
    "plateau8": dict(
        epochs=20,
        metrics=[1.5 * (1.005**i) for i in range(20)],
        kwargs=dict(mode="max", threshold_mode="rel", min_lr=[0.4, 0.3], threshold=0.1, patience=5, cooldown=5),
        targets=[[0.5] * 6 + [0.4] * 14, [0.5] * 6 + [0.3] * 14],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_torch_reduce_lr_on_plateau_cases(name: str, tmp_path) -> None:
    case = CASES[name]
    epochs, metrics, kwargs, targets = (
        case["epochs"],
        case["metrics"][: case["epochs"]],
        case["kwargs"],
        case["targets"],
    )
    optimizer = sgd([0.5, 0.5])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    callback = ReduceLROnPlateau(monitor="eval_loss", **kwargs)
    result = trainer_loop(callback, training_args(tmp_path), optimizer, scheduler, metrics)
    assert len(result.lrs_after_eval) == epochs
    for group, target in enumerate(targets):
        got = [lrs[group] for lrs in result.lrs_after_eval]
        assert got == pytest.approx(target[:epochs], abs=1e-5, rel=0), f"group {group}"
    # and bit for bit what torch's own scheduler does with the same input
    assert result.lrs_after_eval == torch_oracle_lrs([0.5, 0.5], metrics, **kwargs)


def test_torch_state_dict_case() -> None:
    """test_reduce_lr_on_plateau_state_dict: after scores [1, 2, 3, 4, 3, 4, 5, 3, 2, 1] (min, factor 0.1,
    patience 2) the state round-trips; here it must also equal torch's best/num_bad_epochs/cooldown_counter."""
    scores = [1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 5.0, 3.0, 2.0, 1.0]
    rule = PlateauRule(mode="min", patience=2)
    torch_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(sgd([0.5]), mode="min", factor=0.1, patience=2)
    for score in scores:
        rule.step(score)
        torch_sched.step(score)
    assert (rule.best, rule.num_bad_epochs, rule.cooldown_counter) == (
        torch_sched.best,
        torch_sched.num_bad_epochs,
        torch_sched.cooldown_counter,
    )
    copy = PlateauRule(mode="min", patience=2)
    copy.load_state_dict(rule.state_dict())
    assert copy == rule
