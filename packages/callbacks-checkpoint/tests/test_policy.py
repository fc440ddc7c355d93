"""The retention policy against an independent reference model, plus hand-worked cases and option checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from checkpoint_reference import reference_kept  # tests/checkpoint_reference.py (put on sys.path by conftest)
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer_callbacks.checkpoint.policy import (
    CheckpointInfo,
    RetentionPolicy,
    decide,
    resolve_monitor,
)
from trainer_callbacks.core.errors import ConfigurationError

metric_values = st.one_of(st.none(), st.integers(0, 4).map(float), st.just(math.nan), st.just(math.inf))


@st.composite
def candidate_sets(draw: Any) -> list[CheckpointInfo]:
    steps = draw(st.lists(st.integers(1, 30), min_size=0, max_size=12, unique=True))
    best = draw(st.one_of(st.none(), st.sampled_from(steps))) if steps else None
    out = []
    for s in steps:
        metrics = {}
        for name in ("eval_loss", "eval_acc"):
            v = draw(metric_values)
            if v is not None:
                metrics[name] = v
        out.append(
            CheckpointInfo(
                path=Path(f"/run/checkpoint-{s}"),
                step=s,
                metrics=metrics,
                complete=draw(st.booleans()),
                is_best_model_checkpoint=s == best,
            )
        )
    return out


policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(1, 4),
    keep_best=st.integers(0, 3),
    monitor=st.sampled_from([{}, {"eval_loss": "min"}, {"eval_acc": "max"}, {"eval_loss": "min", "eval_acc": "max"}]),
    keep_pareto=st.booleans(),
    keep_every_n_steps=st.one_of(st.none(), st.integers(1, 12)),
)


def keep_multiples_of_7(info: CheckpointInfo) -> bool:
    return info.step % 7 == 0


@settings(max_examples=600)  # pure and ~1 ms an example: afford many more than the profile's default
@given(candidate_sets(), policies, st.one_of(st.none(), st.integers(1, 30)), st.booleans())
def test_decide_matches_the_reference_model(
    ckpts: list[CheckpointInfo], policy: RetentionPolicy, resume: int | None, use_keep: bool
) -> None:
    keep = keep_multiples_of_7 if use_keep else None
    decision = decide(ckpts, policy, resume_step=resume, keep=keep)
    expected = reference_kept(ckpts, policy, resume, keep)
    assert set(decision.kept) == expected
    assert set(decision.deleted) == {c.step for c in ckpts} - expected
    assert list(decision.deleted) == sorted(decision.deleted)
    if ckpts:
        # floors that hold whatever the settings: never everything, always the newest
        assert max(c.step for c in ckpts) in decision.kept


def info(step: int, complete: bool = True, **metrics: float) -> CheckpointInfo:
    return CheckpointInfo(path=Path(f"/run/checkpoint-{step}"), step=step, metrics=metrics, complete=complete)


def test_worked_example_last_best_milestones() -> None:
    # Saves every 1000 steps; eval_loss falls then rises. keep_last=2, keep_best=3 by eval_loss,
    # milestones every 10 000. By hand: last 2 = 14000, 15000; best 3 losses are 0.30 (9000),
    # 0.31 (10000), 0.32 (8000); milestone = 10000. Everything else goes.
    losses = {
        1000 * i: v
        for i, v in enumerate(
            [None, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35, 0.32, 0.30, 0.31, 0.33, 0.34, 0.36, 0.37, 0.38]
        )
        if v is not None  # step 0: no checkpoint
    }
    ckpts = [info(s, eval_loss=v) for s, v in losses.items()]
    policy = RetentionPolicy(keep_last=2, keep_best=3, monitor={"eval_loss": "min"}, keep_every_n_steps=10_000)
    decision = decide(ckpts, policy)
    assert set(decision.kept) == {8000, 9000, 10000, 14000, 15000}
    assert decision.kept[10000] == {"best:eval_loss", "milestone"}


def test_ties_newer_wins_and_no_metric_is_never_best() -> None:
    ckpts = [info(1, eval_loss=0.5), info(2, eval_loss=0.5), info(3), info(4, eval_loss=0.9), info(5)]
    decision = decide(ckpts, RetentionPolicy(keep_last=1, keep_best=1, monitor={"eval_loss": "min"}))
    assert set(decision.kept) == {2, 5}  # 2 beats 1 on the tie; 3 has no metric; 5 is the newest
    assert decision.kept[2] == {"best:eval_loss"}


def test_nan_and_inf_are_never_best() -> None:
    ckpts = [info(1, eval_loss=math.nan), info(2, eval_loss=-math.inf), info(3, eval_loss=2.0), info(4)]
    decision = decide(ckpts, RetentionPolicy(keep_last=1, keep_best=1, monitor={"eval_loss": "min"}))
    assert set(decision.kept) == {3, 4}


def test_pareto_front_by_hand() -> None:
    # (loss, f1): 1 (0.5, 0.6) dominated by 2 (0.4, 0.7); 3 (0.3, 0.5) and 2 are incomparable;
    # 4 (0.6, 0.9) is incomparable too. Front = {2, 3, 4}; 5 is the newest.
    ckpts = [
        info(1, eval_loss=0.5, eval_f1=0.6),
        info(2, eval_loss=0.4, eval_f1=0.7),
        info(3, eval_loss=0.3, eval_f1=0.5),
        info(4, eval_loss=0.6, eval_f1=0.9),
        info(5),
    ]
    policy = RetentionPolicy(keep_last=1, keep_best=0, monitor={"eval_loss": "min", "eval_f1": "max"}, keep_pareto=True)
    assert set(decide(ckpts, policy).kept) == {2, 3, 4, 5}


def test_resume_point_kept_until_a_newer_complete_one_exists() -> None:
    policy = RetentionPolicy(keep_last=1, keep_best=0)
    # resumed from 3; 4 exists but is incomplete: 3 stays (and so does 4, the newest)
    assert set(decide([info(2), info(3), info(4, complete=False)], policy, resume_step=3).kept) == {3, 4}
    # once 5 is complete, the resume point is no longer needed
    assert set(decide([info(3), info(4, complete=False), info(5)], policy, resume_step=3).kept) == {5}


def test_newest_complete_survives_a_run_of_incomplete_ones() -> None:
    decision = decide([info(1), info(2, complete=False), info(3, complete=False)], RetentionPolicy(keep_last=1))
    assert set(decision.kept) == {1, 3}


def test_keep_is_asked_only_about_the_doomed_and_errors_keep() -> None:
    asked: list[int] = []

    def keep(i: CheckpointInfo) -> bool:
        asked.append(i.step)
        if i.step == 2:
            raise RuntimeError("boom")
        return i.step == 1

    decision = decide([info(1), info(2), info(3), info(4)], RetentionPolicy(keep_last=1), keep=keep)
    assert asked == [1, 2, 3]
    assert set(decision.kept) == {1, 2, 4} and decision.deleted == (3,)
    assert decision.keep_errors == ((2, "RuntimeError: boom"),)


def test_milestones_when_save_steps_does_not_divide_n() -> None:
    # saves every 300, milestones every 1000: first checkpoint at/after 1000, 2000, 3000 -> 1200, 2100, 3000
    ckpts = [info(s) for s in range(300, 3301, 300)]
    decision = decide(ckpts, RetentionPolicy(keep_last=1, keep_best=0, keep_every_n_steps=1000))
    assert set(decision.kept) == {1200, 2100, 3000, 3300}


@pytest.mark.parametrize(
    ("monitor", "mfbm", "gib", "expected"),
    [
        (None, "loss", False, {"eval_loss": "min"}),
        (None, "accuracy", True, {"eval_accuracy": "max"}),
        (None, None, None, {}),
        ("eval_loss", None, None, {"eval_loss": "min"}),
        ("bleu", None, None, {"eval_bleu": "max"}),
        ("wer", "wer", False, {"eval_wer": "min"}),
        ({"loss": "min", "eval_f1": "max"}, None, None, {"eval_loss": "min", "eval_f1": "max"}),
    ],
)
def test_resolve_monitor(monitor: Any, mfbm: Any, gib: Any, expected: dict[str, str]) -> None:
    assert resolve_monitor(monitor, mfbm, gib) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"keep_last": 0},
        {"keep_last": -1},
        {"keep_last": 1.5},
        {"keep_last": True},
        {"keep_best": -1},
        {"keep_every_n_steps": 0},
        {"keep_pareto": True},
        {"keep_pareto": True, "monitor": "eval_loss"},
        {"keep_pareto": True, "monitor": {"eval_loss": "min"}},
        {"monitor": {"eval_loss": "lowest"}},
        {"monitor": {}},
        {"monitor": ""},
        {"monitor": 3},
        {"keep": 42},
        {"keep": "no_colon"},
        {"keep": "math:does_not_exist"},
    ],
)
def test_bad_options_fail_at_construction(kwargs: dict[str, Any]) -> None:
    from trainer_callbacks.checkpoint import CheckpointPruner

    with pytest.raises(ConfigurationError) as err:
        CheckpointPruner(**kwargs)
    assert isinstance(err.value, ValueError)
    assert next(iter(kwargs)) in str(err.value)
