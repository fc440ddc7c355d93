"""The reference rules of the integration suite, checked on their own (fast, no Trainer).

The plateau rule is checked against torch's ``ReduceLROnPlateau`` and the schedule against
transformers' ``get_linear_schedule_with_warmup``: the suite's expectations are only as good
as these.
"""

from __future__ import annotations

import math
import socket
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from oracles import (
    best_model_step,
    early_stop_step,
    expected_learning_rate,
    group_norms_by_step,
    kept_checkpoints,
    linear_schedule,
    plateau_cut_steps,
    training_logs,
)
from transformers import get_linear_schedule_with_warmup

values = st.lists(st.floats(min_value=0.0, max_value=10.0, allow_nan=False), max_size=20)


@given(values, st.integers(0, 3), st.sampled_from([0.0, 0.1, 1.0]), st.integers(0, 2))
def test_plateau_cuts_where_torch_reduces(metrics: list[float], patience: int, threshold: float, cooldown: int) -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="min",
        factor=0.5,
        patience=patience,
        threshold=threshold,
        threshold_mode="abs",
        cooldown=cooldown,
    )
    torch_cuts = []
    for step, value in enumerate(metrics, start=1):
        before = optimizer.param_groups[0]["lr"]
        scheduler.step(value)
        if optimizer.param_groups[0]["lr"] < before:
            torch_cuts.append(step)
    evals = list(enumerate(metrics, start=1))
    assert plateau_cut_steps(evals, mode="min", patience=patience, threshold=threshold, cooldown=cooldown) == torch_cuts


def test_plateau_max_mode_mirrors_min_mode() -> None:
    evals = [(1, 1.0), (2, 1.5), (3, 1.4), (4, 1.45), (5, 2.0), (6, 1.0)]
    mirrored = [(s, -v) for s, v in evals]
    cuts = plateau_cut_steps(evals, mode="max", patience=1, threshold=0.0)
    assert cuts == plateau_cut_steps(mirrored, mode="min", patience=1, threshold=0.0) == [4]


def test_early_stop_step() -> None:
    evals = [(2, 3.0), (4, 2.9), (6, 2.95), (8, 2.9), (10, 1.0)]
    # patience 2: 6 and 8 do not beat 2.9 -> stop at 8
    assert early_stop_step(evals, mode="min", patience=2, threshold=0.0) == 8
    # a threshold of 0.2: 4 (2.9 vs 3.0) is no improvement either -> stop at 6
    assert early_stop_step(evals, mode="min", patience=2, threshold=0.2) == 6
    # patience 0 acts like 1
    assert early_stop_step(evals, mode="min", patience=0, threshold=0.0) == 6
    assert early_stop_step(evals, mode="min", patience=5, threshold=0.0) is None
    assert early_stop_step([(1, 1.0), (2, 2.0), (3, 1.5)], mode="max", patience=1, threshold=0.0) == 3


@given(st.integers(0, 5), st.integers(6, 30))
def test_linear_schedule_is_transformers(warmup: int, total: int) -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
    for k in range(total + 2):
        assert math.isclose(
            linear_schedule(k, warmup_steps=warmup, max_steps=total), scheduler.lr_lambdas[0](k), abs_tol=1e-12
        )


def test_expected_learning_rate_counts_cuts_before_the_step() -> None:
    kwargs: dict[str, Any] = {"peak": 1.0, "warmup_steps": 0, "max_steps": 10, "factor": 0.5, "cut_steps": [4, 6]}
    assert expected_learning_rate(4, **kwargs) == 0.7  # the cut at 4 is decided after step 4 ran
    assert expected_learning_rate(5, **kwargs) == 0.6 * 0.5
    assert expected_learning_rate(7, **kwargs) == 0.4 * 0.25


def test_kept_checkpoints() -> None:
    metrics = {
        2: {"eval_loss": 1.0, "eval_f1": 0.5},
        4: {"eval_loss": 0.5},
        6: {"eval_loss": 0.5},
        8: {"eval_loss": 2.0},
    }
    # newest 8; best eval_loss: 4 and 6 tie -> the newer, 6; best eval_f1: 2 (the only one that has it)
    assert kept_checkpoints([2, 4, 6, 8], metrics, {"eval_loss": "min", "eval_f1": "max"}) == {2, 6, 8}
    assert kept_checkpoints([2, 4, 6, 8], metrics, {"eval_loss": "max"}, best_model_step=4) == {4, 8}
    assert kept_checkpoints([2, 4], {2: {"eval_loss": math.nan}}, {"eval_loss": "min"}) == {4}


def test_log_readers() -> None:
    history = [
        {"grad_norm/a": 3.0, "grad_norm/b": 4.0, "step": 1},
        {"loss": 1.0, "grad_norm": 5.0, "learning_rate": 0.1, "step": 1},
        {"grad_norm/skipped": 1.0, "step": 2},
        {"train_runtime": 1.0, "train_loss": 1.0, "step": 2},
    ]
    assert group_norms_by_step(history) == {1: {"a": 3.0, "b": 4.0}}
    assert [e["step"] for e in training_logs(history)] == [1]


def test_best_model_step_keeps_the_first_of_equal_values() -> None:
    evals = [(2, 1.0), (4, 0.5), (6, 0.5), (8, 0.7)]
    assert best_model_step(evals, mode="min") == 4
    assert best_model_step(evals, mode="max") == 2
    assert best_model_step([], mode="min") is None


def test_offline_guard_refuses_remote_addresses_and_passes_loopback(network_guard: Any) -> None:
    calls = []
    guarded = network_guard(lambda sock, address: calls.append(address))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        guarded(sock, ("127.0.0.1", 9))
        with pytest.raises(OSError, match="must not reach the network"):
            guarded(sock, ("example.invalid", 443))
    assert calls == [("127.0.0.1", 9)]  # the refused address never reached the real connect
