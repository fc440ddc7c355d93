"""ReduceLROnPlateau on DeepSpeed-config schedulers (the engine steps them, not the Trainer).

Oracle: a scheduler built from scratch with the reduced LRs, stepped alongside. After a reduction
by r at step k, the scaled scheduler sets exactly the LRs of that reference from step k on; after
a resume (a fresh scheduler built from the unscaled config, its step restored, the saved scale
re-applied) it still does. Skipped when deepspeed is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import torch

from trainer_callbacks.core import ConfigurationError
from trainer_callbacks.lr.scaling import LRTarget, scheduler_support

os.environ.setdefault("DS_ACCELERATOR", "cpu")
lr_schedules = pytest.importorskip("deepspeed.runtime.lr_schedules")

PEAKS = [0.1, 0.02]


def _optimizer() -> torch.optim.Optimizer:
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    return torch.optim.SGD([{"params": [a], "lr": PEAKS[0]}, {"params": [b], "lr": PEAKS[1]}], lr=PEAKS[0])


BUILDERS: dict[str, Callable[[torch.optim.Optimizer, list[float]], Any]] = {
    "WarmupLR": lambda opt, peaks: lr_schedules.WarmupLR(
        opt, warmup_min_lr=[p / 10 for p in peaks], warmup_max_lr=peaks, warmup_num_steps=5
    ),
    "WarmupDecayLR": lambda opt, peaks: lr_schedules.WarmupDecayLR(
        opt, total_num_steps=20, warmup_min_lr=[p / 10 for p in peaks], warmup_max_lr=peaks, warmup_num_steps=5
    ),
    "WarmupCosineLR": lambda opt, peaks: lr_schedules.WarmupCosineLR(
        _with_lrs(opt, peaks), total_num_steps=20, warmup_num_steps=5
    ),
}


def _with_lrs(opt: torch.optim.Optimizer, peaks: list[float]) -> torch.optim.Optimizer:
    for group, lr in zip(opt.param_groups, peaks):  # WarmupCosineLR takes its peaks from the groups
        group["lr"] = lr
    return opt


def _lrs(opt: torch.optim.Optimizer) -> list[float]:
    return [float(g["lr"]) for g in opt.param_groups]


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_a_reduction_scales_the_rest_of_the_deepspeed_schedule(kind: str) -> None:
    opt, ref_opt = _optimizer(), _optimizer()
    sched, ref = BUILDERS[kind](opt, PEAKS), BUILDERS[kind](ref_opt, [p * 0.5 for p in PEAKS])
    assert scheduler_support(sched).kind == "exact"
    for _ in range(3):
        sched.step()
        ref.step()
    target = LRTarget.from_trainer(opt, sched)
    assert target.peak_lrs() == pytest.approx(PEAKS)
    target.set_peak_lrs([p * 0.5 for p in PEAKS])
    assert _lrs(opt) == pytest.approx(_lrs(ref_opt))
    for _ in range(12):  # through the end of warm-up and into the decay
        sched.step()
        ref.step()
        assert _lrs(opt) == pytest.approx(_lrs(ref_opt), rel=1e-12)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_on_resume_the_saved_scale_is_applied_to_the_rebuilt_schedule(kind: str) -> None:
    opt, ref_opt = _optimizer(), _optimizer()
    sched, ref = BUILDERS[kind](opt, PEAKS), BUILDERS[kind](ref_opt, [p * 0.25 for p in PEAKS])
    for _ in range(7):
        sched.step()
        ref.step()
    saved = sched.state_dict()  # only the step: DeepSpeed rebuilds the LR lists from its config
    resumed_opt = _optimizer()
    resumed = BUILDERS[kind](resumed_opt, PEAKS)
    resumed.load_state_dict(saved)
    LRTarget.from_trainer(resumed_opt, resumed).remember_scales([0.25, 0.25])
    for _ in range(6):
        resumed.step()
        ref.step()
        assert _lrs(resumed_opt) == pytest.approx(_lrs(ref_opt), rel=1e-12)


def test_deepspeed_one_cycle_is_refused() -> None:
    opt = _optimizer()
    one_cycle = lr_schedules.OneCycle(opt, cycle_min_lr=0.01, cycle_max_lr=0.1)
    with pytest.raises(ConfigurationError, match="OneCycle"):
        LRTarget.from_trainer(opt, one_cycle)
