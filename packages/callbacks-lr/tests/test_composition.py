"""The reduction is a multiplier on top of the schedule: LR(step) == schedule(step) x scale, from the next step.

The schedule values are computed here from their formulas (transformers' definitions of
linear and cosine warmup schedules, a custom lambda), or, for torch's own schedulers, by
running an identical scheduler without the callback. The scale after each evaluation comes
from torch's ``ReduceLROnPlateau`` fed the same metrics on a constant LR of 1 (the oracle), so
neither side is computed by the code under test.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from lr_testing import sgd, torch_oracle_lrs, trainer_loop, training_args
from transformers import get_scheduler

from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.lr import ReduceLROnPlateau
from trainer_callbacks.lr.scaling import LRTarget, scheduler_support, unwrap_optimizer, unwrap_scheduler

TOTAL, WARMUP = 40, 6


def linear_warmup(step: int) -> float:
    # transformers.get_linear_schedule_with_warmup, written out
    if step < WARMUP:
        return step / max(1, WARMUP)
    return max(0.0, (TOTAL - step) / max(1, TOTAL - WARMUP))


def cosine_warmup(step: int) -> float:
    # transformers.get_cosine_schedule_with_warmup (num_cycles=0.5), written out
    if step < WARMUP:
        return step / max(1, WARMUP)
    progress = (step - WARMUP) / max(1, TOTAL - WARMUP)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * 0.5 * progress)))


def custom(step: int) -> float:
    return 0.97**step * (1 + 0.5 * math.sin(step))


SCHEDULES = {
    "warmup+linear": (lambda opt: get_scheduler("linear", opt, WARMUP, TOTAL), linear_warmup),
    "warmup+cosine": (lambda opt: get_scheduler("cosine", opt, WARMUP, TOTAL), cosine_warmup),
    "custom LambdaLR": (lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, custom), custom),
}

metric_streams = st.lists(st.sampled_from([1.0, 0.9, 0.95, 0.5, 2.0]), min_size=1, max_size=TOTAL // 2)


def expected_scales(metrics: list[float], **kwargs) -> list[float]:  # type: ignore[no-untyped-def]
    """Scale in force after each evaluation, from torch's scheduler on a constant LR of 1."""
    return [lrs[0] for lrs in torch_oracle_lrs([1.0], metrics, **kwargs)]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@given(metrics=metric_streams, patience=st.integers(0, 2), cooldown=st.integers(0, 2), every=st.integers(1, 2))
@example(metrics=[1.0] * 19, patience=0, cooldown=0, every=1)  # 18 cuts: the 1e-3 group's cut falls below eps
def test_lr_is_schedule_times_scale(name: str, metrics, patience: int, cooldown: int, every: int) -> None:  # type: ignore[no-untyped-def]
    build, schedule = SCHEDULES[name]
    peaks = [5e-3, 1e-3]
    optimizer = sgd(peaks)
    kwargs: dict[str, Any] = dict(mode="min", factor=0.5, patience=patience, cooldown=cooldown)
    result = trainer_loop(
        ReduceLROnPlateau(**kwargs),
        training_args("/tmp/lr-comp"),
        optimizer,
        build(optimizer),
        metrics,
        steps_per_eval=every,
    )
    # Each group's peak after each evaluation, from torch's own scheduler on the peaks: its eps applies per
    # group to the LR it reduces, which here is the peak (a common scale would miss the eps of a small group).
    peaks_in_force = [peaks, *torch_oracle_lrs(peaks, metrics, **kwargs)]
    for index, used in enumerate(result.used_lrs):  # optimizer step index+1 runs with schedule(index)
        in_force = peaks_in_force[index // every]  # evaluations happen after every `every` steps
        for group in range(len(peaks)):
            assert used[group] == pytest.approx(in_force[group] * schedule(index), rel=1e-12, abs=1e-18)


def _torch_schedulers():  # type: ignore[no-untyped-def]
    sched = torch.optim.lr_scheduler
    return {
        "StepLR": lambda o: sched.StepLR(o, step_size=3, gamma=0.5),
        "MultiStepLR": lambda o: sched.MultiStepLR(o, milestones=[2, 5, 9], gamma=0.1),
        "ExponentialLR": lambda o: sched.ExponentialLR(o, gamma=0.9),
        "LinearLR": lambda o: sched.LinearLR(o, start_factor=0.25, total_iters=4),
        "ConstantLR": lambda o: sched.ConstantLR(o, factor=0.5, total_iters=3),
        "PolynomialLR": lambda o: sched.PolynomialLR(o, total_iters=15, power=2.0),
        "MultiplicativeLR": lambda o: sched.MultiplicativeLR(o, lambda t: 0.95),
        "CosineAnnealingLR(eta_min=0)": lambda o: sched.CosineAnnealingLR(o, T_max=7),
        "CosineAnnealingWarmRestarts(eta_min=0)": lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=4),
        "SequentialLR(LinearLR, ExponentialLR)": lambda o: sched.SequentialLR(
            o, [sched.LinearLR(o, start_factor=0.1, total_iters=3), sched.ExponentialLR(o, gamma=0.8)], milestones=[3]
        ),
        "ChainedScheduler(Exponential, Step)": lambda o: sched.ChainedScheduler(
            [sched.ExponentialLR(o, gamma=0.9), sched.StepLR(o, step_size=4, gamma=0.5)]
        ),
    }


@pytest.mark.parametrize("name", sorted(_torch_schedulers()))
def test_torch_multiplicative_schedulers_compose_exactly(name: str, tmp_path) -> None:
    """Reference: the same scheduler without the callback, times the oracle's scale."""
    build = _torch_schedulers()[name]
    metrics = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.2, 0.3, 0.3, 0.3, 0.3]  # cuts after evaluations 2, 5, 10
    kwargs: dict[str, Any] = dict(mode="min", factor=0.5, patience=1)
    plain_opt = sgd([0.1, 0.02])
    plain = build(plain_opt)
    reference = []
    for _ in range(len(metrics) * 2):
        reference.append([g["lr"] for g in plain_opt.param_groups])
        plain_opt.step()
        plain.step()
    optimizer = sgd([0.1, 0.02])
    assert scheduler_support(build(sgd([1.0]))).kind == "exact"
    result = trainer_loop(
        ReduceLROnPlateau(**kwargs), training_args(tmp_path), optimizer, build(optimizer), metrics, steps_per_eval=2
    )
    scales = [1.0, *expected_scales(metrics, **kwargs)]
    assert scales[-1] < 1  # the stream does force reductions
    for index, used in enumerate(result.used_lrs):
        for group in range(2):
            assert used[group] == pytest.approx(reference[index][group] * scales[index // 2], rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    "name",
    [
        "constant",
        "constant_with_warmup",
        "linear",
        "cosine",
        "cosine_with_restarts",
        "polynomial",
        "inverse_sqrt",
        "warmup_stable_decay",
        "cosine_with_min_lr",
        "cosine_warmup_with_min_lr",
    ],
)
def test_every_transformers_schedule_is_a_multiplier(name: str, tmp_path) -> None:
    """Every ``get_scheduler`` type is a LambdaLR: lr = peak x f(step), floors relative to the peak included
    (polynomial's lr_end, the min-lr rates), so the reduced run is the plain run times the scale."""
    extra = {
        "polynomial": {"lr_end": 1e-4, "power": 2.0},
        "cosine_with_min_lr": {"min_lr": 1e-3},
        "cosine_warmup_with_min_lr": {"min_lr_rate": 0.1},
        "warmup_stable_decay": {"num_decay_steps": 10, "min_lr_ratio": 0.1},
    }.get(name, {})
    metrics = [1.0] * 10  # patience 1: cuts after evaluations 3, 5, 7, 9

    def build(opt):  # type: ignore[no-untyped-def]
        return get_scheduler(name, opt, num_warmup_steps=4, num_training_steps=30, scheduler_specific_kwargs=extra)

    plain_opt = sgd([0.01])
    plain = build(plain_opt)
    reference = []
    for _ in range(30):
        reference.append(plain_opt.param_groups[0]["lr"])
        plain_opt.step()
        plain.step()
    optimizer = sgd([0.01])
    scheduler = build(optimizer)
    assert scheduler_support(scheduler).kind == "exact"
    kwargs: dict[str, Any] = dict(mode="min", factor=0.5, patience=1)
    result = trainer_loop(
        ReduceLROnPlateau(**kwargs), training_args(tmp_path), optimizer, scheduler, metrics, steps_per_eval=3
    )
    scales = [1.0, *expected_scales(metrics, **kwargs)]
    assert scales[-1] == 0.5**4
    for index, used in enumerate(result.used_lrs):
        assert used[0] == pytest.approx(reference[index] * scales[index // 3], rel=1e-12, abs=1e-18)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o), "second plateau controller"),
        (lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=10), "absolute max_lr"),
        (lambda o: torch.optim.lr_scheduler.CyclicLR(o, 0.01, 0.1, cycle_momentum=False), "absolute base_lr"),
        (lambda o: get_scheduler("greedy", o), "plateau controller"),
    ],
)
def test_schedulers_that_cannot_be_scaled_are_refused(build, fragment: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    optimizer = sgd([0.1])
    with pytest.raises(ConfigurationError, match=fragment):
        trainer_loop(ReduceLROnPlateau(), training_args(tmp_path), optimizer, build(optimizer), [1.0])


def test_cosine_annealing_with_eta_min_warns(tmp_path) -> None:
    optimizer = sgd([0.1])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=5, eta_min=0.01)
    with pytest.warns(UserWarning, match="eta_min"):
        trainer_loop(ReduceLROnPlateau(), training_args(tmp_path), optimizer, scheduler, [1.0])


def test_tensor_lrs_keep_their_type(tmp_path) -> None:
    """As torch's test_reduce_lr_on_plateau_preserves_lr_type: tensor LRs stay tensors (no recompiles)."""
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [p], "lr": torch.tensor(0.5)}], lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    result = trainer_loop(ReduceLROnPlateau(patience=0), training_args(tmp_path), optimizer, scheduler, [1.0, 2.0])
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)
    assert result.lrs_after_eval == [[0.5], [pytest.approx(0.05)]]


class _Wrapper:
    """Stands for accelerate's AcceleratedOptimizer / DeepSpeed wrappers: the real one under ``.optimizer``."""

    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self.optimizer = inner

    @property
    def param_groups(self):  # type: ignore[no-untyped-def]
        return self.optimizer.param_groups


class _SchedWrapper:
    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self.scheduler = inner


def test_wrapped_optimizer_and_scheduler_are_unwrapped() -> None:
    optimizer = sgd([0.1, 0.2])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)
    wrapped_opt = _Wrapper(_Wrapper(optimizer))
    wrapped_sched = _SchedWrapper(_SchedWrapper(scheduler))
    assert unwrap_optimizer(wrapped_opt) is optimizer
    assert unwrap_scheduler(wrapped_sched) is scheduler
    target = LRTarget.from_trainer(wrapped_opt, wrapped_sched)
    assert target.optimizer is optimizer and target.scheduler is scheduler
    target.set_peak_lrs([0.05, 0.2])
    assert scheduler.base_lrs == [0.05, 0.2]
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.2]
    assert [g["initial_lr"] for g in optimizer.param_groups] == [0.05, 0.2]
    assert scheduler.get_last_lr() == [0.05, 0.2]


def test_not_a_torch_scheduler_is_refused() -> None:
    class DeepSpeedWarmupLR:  # a DeepSpeed-config scheduler is not a torch LRScheduler
        def step(self) -> None: ...

    with pytest.raises(ConfigurationError, match="not a torch LRScheduler"):
        LRTarget.from_trainer(sgd([0.1]), _SchedWrapper(DeepSpeedWarmupLR()))


def test_unknown_lr_scheduler_subclass_warns() -> None:
    class Mine(torch.optim.lr_scheduler.LRScheduler):
        def get_lr(self):  # type: ignore[no-untyped-def]
            return list(self.base_lrs)

    optimizer = sgd([0.1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LRTarget.from_trainer(optimizer, Mine(optimizer))
    assert any("not a scheduler this package knows" in str(w.message) for w in caught)


def _reduced_twice(peaks: list[float]) -> torch.optim.Optimizer:
    """An optimizer whose first schedule was cut x0.5 twice (the state a finished train() leaves)."""
    optimizer = sgd(peaks)
    target = LRTarget.from_trainer(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup))
    target.set_peak_lrs([p * 0.5 for p in peaks])
    target.set_peak_lrs([p * 0.25 for p in peaks])
    return optimizer


def test_undo_reductions_gives_a_new_schedule_its_unscaled_peak() -> None:
    peaks = [1e-3, 2e-3]
    optimizer = _reduced_twice(peaks)
    assert [g["initial_lr"] for g in optimizer.param_groups] == pytest.approx([p / 4 for p in peaks])
    second = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_warmup)  # the next train()'s schedule
    assert second.base_lrs == pytest.approx([p / 4 for p in peaks])  # torch takes initial_lr as the peak
    assert LRTarget.from_trainer(optimizer, second).undo_reductions() == [0, 1]
    assert second.base_lrs == pytest.approx(peaks)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([p * cosine_warmup(0) for p in peaks])
    assert second.get_last_lr() == pytest.approx([p * cosine_warmup(0) for p in peaks])
    third = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup)
    assert LRTarget.from_trainer(optimizer, third).undo_reductions() == []  # nothing left to undo
    assert third.base_lrs == pytest.approx(peaks)


def test_undo_reductions_leaves_an_initial_lr_someone_else_changed() -> None:
    optimizer = _reduced_twice([1e-3, 1e-3])
    optimizer.param_groups[1]["initial_lr"] = 5e-4  # the user set a new peak for group 1 between runs
    second = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup)
    assert LRTarget.from_trainer(optimizer, second).undo_reductions() == [0]
    assert second.base_lrs == pytest.approx([1e-3, 5e-4])


def test_a_resumed_run_remembers_the_unscaled_peak_from_its_restored_scales() -> None:
    optimizer = sgd([1e-3])
    optimizer.param_groups[0]["initial_lr"] = 2.5e-4  # loaded from optimizer.pt after a x0.25 cut
    resumed = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup, last_epoch=-1)
    target = LRTarget.from_trainer(optimizer, resumed)
    target.remember_scales([0.25])
    target.set_peak_lrs([1.25e-4])  # one more cut in the resumed run
    later = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup)
    assert LRTarget.from_trainer(optimizer, later).undo_reductions() == [0]
    assert later.base_lrs == pytest.approx([1e-3])
