"""Property: on a constant schedule the LR trajectory equals torch's ReduceLROnPlateau, step for step.

The oracle is ``torch.optim.lr_scheduler.ReduceLROnPlateau`` fed the same (non-negative)
metric stream with the same arguments; the callback runs in the Trainer's event order over a
``LambdaLR(lambda _: 1.0)`` schedule, optionally with several evaluations' worth of steps
between evaluations. Equality is exact (``==`` on floats).
"""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st
from lr_testing import sgd, torch_oracle_lrs, trainer_loop, training_args

from trainer_callbacks.lr import ReduceLROnPlateau
from trainer_callbacks.lr.plateau import PlateauRule, is_improvement

# Streams with plateaus, repeats and exact ties: values drawn from a small pool plus free floats.
metric_value = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 1.0001, 2.0, 10.0]),
    st.floats(min_value=0.0, max_value=100.0, allow_nan=False, allow_infinity=False),
)
plateau_args = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["min", "max"]),
        "factor": st.sampled_from([0.1, 0.5, 0.9, 0.3333]),
        "patience": st.integers(0, 4),
        "threshold": st.sampled_from([0.0, 1e-4, 0.01, 0.1, 0.5]),
        "threshold_mode": st.sampled_from(["rel", "abs"]),
        "cooldown": st.integers(0, 3),
        "eps": st.sampled_from([0.0, 1e-8, 1e-3]),
    }
)


@st.composite
def setups(draw):  # type: ignore[no-untyped-def]
    n_groups = draw(st.integers(1, 3))
    lrs = draw(st.lists(st.sampled_from([1.0, 0.5, 0.1, 3e-4, 5e-5]), min_size=n_groups, max_size=n_groups))
    kwargs = draw(plateau_args)
    min_lr = draw(
        st.one_of(
            st.sampled_from([0.0, 1e-6, 0.01]),
            st.lists(st.sampled_from([0.0, 1e-5, 0.05, 0.2]), min_size=n_groups, max_size=n_groups),
        )
    )
    metrics = draw(st.lists(metric_value, min_size=1, max_size=30))
    return lrs, {**kwargs, "min_lr": min_lr}, metrics


@given(setups(), st.integers(1, 3))
def test_lr_trajectory_equals_torch(setup, steps_per_eval: int) -> None:  # type: ignore[no-untyped-def]
    lrs, kwargs, metrics = setup
    args = training_args("/tmp/lr-oracle")
    optimizer = sgd(lrs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    result = trainer_loop(
        ReduceLROnPlateau(**kwargs), args, optimizer, scheduler, metrics, steps_per_eval=steps_per_eval
    )
    expected = torch_oracle_lrs(lrs, metrics, **kwargs)
    assert result.lrs_after_eval == expected
    # the LR used by each optimizer step is the one left by the previous evaluation
    used_per_eval = result.used_lrs[::steps_per_eval]
    assert used_per_eval == [list(lrs), *expected[:-1]]


@given(plateau_args, st.lists(metric_value, min_size=1, max_size=40))
def test_rule_state_equals_torch(kwargs, metrics) -> None:  # type: ignore[no-untyped-def]
    rule_kwargs = {k: v for k, v in kwargs.items() if k not in ("factor", "eps")}
    rule = PlateauRule(**rule_kwargs)
    oracle = torch.optim.lr_scheduler.ReduceLROnPlateau(sgd([1.0]), **kwargs)
    for value in metrics:
        rule.step(value)
        oracle.step(value)
        assert (rule.best, rule.num_bad_epochs, rule.cooldown_counter) == (
            oracle.best,
            oracle.num_bad_epochs,
            oracle.cooldown_counter,
        )


@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from(["min", "max"]),
    st.floats(0.0, 0.99),
)
def test_rel_threshold_is_sign_safe(value: float, best: float, mode: str, threshold: float) -> None:
    """An improvement is always strictly better than best by at least threshold * |best| (torch: only for best>=0)."""
    better = is_improvement(value, best, mode=mode, threshold=threshold, threshold_mode="rel")  # type: ignore[arg-type]
    if better:
        assert (value < best) if mode == "min" else (value > best)
    # a value beyond the margin by a clear amount is an improvement
    margin = threshold * abs(best) + 1e-6 * (1 + abs(best))
    clearly = best - 2 * margin if mode == "min" else best + 2 * margin
    assert is_improvement(clearly, best, mode=mode, threshold=threshold, threshold_mode="rel")  # type: ignore[arg-type]


def test_negative_metric_differs_from_torch_by_design() -> None:
    """Hand-derived: best = -1, threshold = 0.1. torch's min mode accepts -0.95 (worse than -1) because
    -0.95 < -1 * 0.9 = -0.9; the sign-safe rule needs < -1.1. Max mode: torch accepts -1.05 > -1.1."""
    assert not is_improvement(-0.95, -1.0, mode="min", threshold=0.1, threshold_mode="rel")
    assert -0.95 < -1.0 * (1 - 0.1)  # torch's test
    assert is_improvement(-1.2, -1.0, mode="min", threshold=0.1, threshold_mode="rel")
    assert not is_improvement(-1.05, -1.0, mode="max", threshold=0.1, threshold_mode="rel")
    assert -1.05 > -1.0 * (1 + 0.1)  # torch's test
    assert is_improvement(-0.85, -1.0, mode="max", threshold=0.1, threshold_mode="rel")


def test_nan_is_a_bad_evaluation() -> None:
    rule = PlateauRule(mode="min", patience=0)
    assert not rule.step(1.0)
    assert rule.step(math.nan)  # not an improvement: bad count 1 > patience 0
    assert rule.best == 1.0
