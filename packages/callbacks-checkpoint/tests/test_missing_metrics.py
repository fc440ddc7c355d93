"""The pruner never deletes on missing information (issue 14, "Data loss" 1).

A monitor the evaluations never report (a typo: ``eval_scor`` on a run that logs ``eval_score``)
used to make every checkpoint unranked, so the pruner kept the newest and deleted the best one.
Now: ``strict=True`` (the default) raises at the end of the first evaluation round that lacks the
metric, before any prune; ``strict=False`` keeps every checkpoint whose rank cannot be computed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from trainer_callbacks.checkpoint import CheckpointPruner
from trainer_callbacks.core.errors import ConfigurationError

# eval_score by evaluation (eval_steps=1: call k is at global step k); the best is step 2.
SCORES = [0.50, 0.90, 0.60, 0.70]


class Scores:
    def __init__(self, key: str = "score") -> None:
        self.calls = 0
        self.key = key

    def __call__(self, eval_pred: Any) -> dict[str, float]:
        self.calls += 1
        return {self.key: SCORES[self.calls - 1]}


def folders(path: Path) -> list[str]:
    return sorted(os.listdir(path)) if path.exists() else []


def test_misspelt_monitor_is_an_error_before_any_prune(tiny_trainer: Any, tmp_path: Path) -> None:
    pruner = CheckpointPruner(monitor={"eval_scor": "max"}, keep_best=1, keep_last=1)
    trainer = tiny_trainer([pruner], compute_metrics=Scores(), max_steps=4)
    with pytest.raises(ConfigurationError) as info:
        trainer.train()
    message = str(info.value)
    assert message.startswith("CheckpointPruner:")
    assert "eval_scor is missing from the evaluation at step 1" in message
    assert "Metrics present: eval_loss, eval_score" in message and "strict=False" in message
    # raised in the first evaluation, before its save: nothing was saved, so nothing was deleted
    assert trainer.state.global_step == 1
    assert folders(tmp_path / "out") == []


def test_bare_misspelt_monitor_asks_for_the_mode_at_train_begin(tiny_trainer: Any, tmp_path: Path) -> None:
    trainer = tiny_trainer([CheckpointPruner(monitor="eval_scor", keep_best=1)], compute_metrics=Scores(), max_steps=4)
    with pytest.raises(ConfigurationError, match=r"cannot tell whether higher or lower is better for 'eval_scor'"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_not_strict_keeps_the_checkpoints_it_cannot_rank(
    tiny_trainer: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pruner = CheckpointPruner(monitor={"eval_scor": "max"}, keep_best=1, keep_last=1, strict=False, background=False)
    trainer = tiny_trainer([pruner], compute_metrics=Scores(), max_steps=4)
    with caplog.at_level(logging.WARNING, logger="trainer_callbacks.checkpoint"):
        trainer.train()
    # before the fix only checkpoint-4 (the newest) was left: the best, checkpoint-2, was deleted
    assert folders(tmp_path / "out") == ["checkpoint-1", "checkpoint-2", "checkpoint-3", "checkpoint-4"]
    warnings = [r.getMessage() for r in caplog.records if "rank cannot be computed" in r.getMessage()]
    assert len(warnings) == 1 and "eval_scor" in warnings[0]


def test_the_right_monitor_still_prunes(tiny_trainer: Any, tmp_path: Path) -> None:
    """The control: with the metric reported, the best (step 2) and the newest (step 4) are what remains."""
    pruner = CheckpointPruner(monitor="eval_score", keep_best=1, keep_last=1, background=False)
    trainer = tiny_trainer([pruner], compute_metrics=Scores(), max_steps=4)
    trainer.train()
    assert folders(tmp_path / "out") == ["checkpoint-2", "checkpoint-4"]


def test_an_error_rate_is_minimised(tiny_trainer: Any, tmp_path: Path) -> None:
    """Issue 13: monitor='eval_error' kept the checkpoints with the HIGHEST error as best (max for non-loss names)."""
    pruner = CheckpointPruner(monitor="eval_error", keep_best=1, keep_last=1, background=False)
    trainer = tiny_trainer([pruner], compute_metrics=Scores("error"), max_steps=4)
    trainer.train()
    # errors 0.5, 0.9, 0.6, 0.7: the lowest is step 1; step 4 is the newest
    assert folders(tmp_path / "out") == ["checkpoint-1", "checkpoint-4"]


def test_several_eval_datasets_complete_the_round_before_checking(tiny_trainer: Any, tmp_path: Path) -> None:
    """eval_dataset={"a", "b"}: eval_b_loss is reported by the second call of each round; that is not missing."""
    from trainer_callbacks.testing import TokenTask

    datasets = {"a": TokenTask(8, seed=1), "b": TokenTask(8, seed=2)}
    pruner = CheckpointPruner(monitor="eval_b_loss", keep_best=1, keep_last=1, background=False)
    trainer = tiny_trainer([pruner], max_steps=3, eval_dataset=datasets)
    trainer.train()
    assert len(folders(tmp_path / "out")) in (1, 2)
    wrong = CheckpointPruner(monitor="eval_c_loss", keep_best=1, keep_last=1)
    trainer = tiny_trainer([wrong], max_steps=3, eval_dataset=datasets, output_dir=tmp_path / "out2")
    with pytest.raises(ConfigurationError, match=r"eval_c_loss is missing .*step 1 \(eval datasets: a, b\)"):
        trainer.train()


@pytest.mark.parametrize(
    "monitor",
    [{"loss": "min", "eval_loss": "max"}, {" ": "min"}, {"eval_": "max"}, "eval_", "  "],
    ids=["same-metric-twice", "blank", "prefix-only", "bare-prefix-only", "bare-blank"],
)
def test_blank_or_duplicate_monitor_names_fail_at_construction(monitor: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"CheckpointPruner"):
        CheckpointPruner(monitor=monitor, keep_pareto=isinstance(monitor, dict) and len(monitor) > 1)
