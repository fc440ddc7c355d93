"""Real Trainer runs: what remains equals the reference policy replayed; resume works from what remains."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import checkpoint_reference
import pytest
from checkpoint_reference import replay
from transformers import TrainerControl, TrainerState
from transformers.trainer_utils import get_last_checkpoint

from trainer_callbacks.checkpoint import CheckpointPruner, RetentionPolicy
from trainer_callbacks.checkpoint import plugin as checkpoint_plugin
from trainer_callbacks.core.errors import ConfigurationError

# The score each evaluation returns, by call number (eval_steps=1: call k is at global step k).
SCORES = [0.50, 0.70, 0.60, 0.70, 0.20, 0.65, 0.90, 0.10, 0.30, 0.80]


class ScriptedMetrics:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, eval_pred: Any) -> dict[str, float]:
        self.calls += 1
        return {"score": SCORES[self.calls - 1]}


def checkpoints(path: Path) -> set[int]:
    return {int(n.split("-")[1]) for n in os.listdir(path) if n.startswith("checkpoint-")}


def test_real_run_leaves_the_policy_answer_and_resumes(tiny_trainer: Any, tmp_path: Path) -> None:
    cb = CheckpointPruner(keep_last=2, keep_best=2, keep_every_n_steps=3)
    trainer = tiny_trainer(
        [cb],
        compute_metrics=ScriptedMetrics(),
        max_steps=8,
        metric_for_best_model="score",
        greater_is_better=True,
        load_best_model_at_end=True,
    )
    trainer.train()
    out = tmp_path / "out"
    evals = {s: {"eval_score": SCORES[s - 1]} for s in range(1, 9)}
    policy = RetentionPolicy(keep_last=2, keep_best=2, monitor={"eval_score": "max"}, keep_every_n_steps=3)
    expected = replay(evals, list(range(1, 9)), policy, "eval_score", True, str(out))
    # By hand for the record: best 2 by score among kept = 7 (0.90) and one of 2/4 (0.70, newer wins -> 4);
    # milestones 3, 6; last 7, 8; best_model_checkpoint = 7.
    assert expected == {3, 4, 6, 7, 8}
    assert checkpoints(out) == expected
    assert not [n for n in os.listdir(out) if n.startswith(".checkpoint-")]
    assert trainer.state.best_model_checkpoint == str(out / "checkpoint-7")
    reports = [e for e in trainer.state.log_history if "checkpoint/deleted" in e]
    assert [e["step"] for e in reports] == list(range(1, 9))
    assert sum(e["checkpoint/deleted"] for e in reports) == 8 - len(expected)
    # after each save: the survivors of the replayed policy up to that step
    assert [e["checkpoint/kept"] for e in reports] == [
        len(replay(evals, list(range(1, s + 1)), policy, "eval_score", True, str(out))) for s in range(1, 9)
    ]
    freed = [e for e in trainer.state.log_history if "checkpoint/bytes_freed" in e]
    assert len(freed) == 1 and freed[0]["step"] == 8 and freed[0]["checkpoint/bytes_freed"] > 0
    assert set(freed[0]) == {"checkpoint/bytes_freed", "step"}
    assert cb.state()["attributes"]["progress"]["deleted_total"] == 8 - len(expected)
    # the Trainer wrote checkpoint-8/trainer_state.json before on_save pruned: the pruner wrote it again after,
    # so it holds that prune (its log entry and the totals), as the uninterrupted run's state does
    saved = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    assert saved["stateful_callbacks"]["CheckpointPruner"]["attributes"]["progress"] == {
        "deleted_total": 8 - len(expected),
        "prunes": 8,
    }
    assert [e["step"] for e in saved["log_history"] if "checkpoint/deleted" in e] == list(range(1, 9))
    assert not [n for n in os.listdir(out / "checkpoint-8") if n.startswith(".")]  # no partial file left

    # resume_from_checkpoint=True picks checkpoint-8 from what remains; two more steps, still pruned by policy
    metrics = ScriptedMetrics()
    metrics.calls = 8
    cb2 = CheckpointPruner(keep_last=2, keep_best=2, keep_every_n_steps=3)
    resumed = tiny_trainer(
        [cb2],
        compute_metrics=metrics,
        max_steps=10,
        metric_for_best_model="score",
        greater_is_better=True,
    )
    assert get_last_checkpoint(str(out)) == str(out / "checkpoint-8")
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 10
    evals.update({s: {"eval_score": SCORES[s - 1]} for s in (9, 10)})
    # the resumed run's replay starts from what the first run left, with its best (7) carried in trainer_state
    on_disk = expected
    for step in (9, 10):
        on_disk = replay_from(on_disk, step, evals, policy, best=7, run_dir=str(out))
    assert checkpoints(out) == on_disk
    # the resumed pruner carried the first run's totals through trainer_state.json (no restore flag needed),
    # the prune at step 8 included, and added the two saves of its own
    assert cb2.prunes == cb.prunes + 2 == 10
    assert cb2.deleted_total == cb.deleted_total + len(expected) + 2 - len(on_disk)
    assert [e["step"] for e in resumed.state.log_history if "checkpoint/deleted" in e] == list(range(1, 11))
    # and an older checkpoint that remains also resumes
    older = tiny_trainer([], compute_metrics=ScriptedMetrics(), max_steps=4, save_strategy="no", eval_strategy="no")
    older.train(resume_from_checkpoint=str(out / "checkpoint-3"))
    assert older.state.global_step == 4


def replay_from(
    on_disk: set[int], step: int, evals: dict[int, dict[str, float]], policy: RetentionPolicy, best: int, run_dir: str
) -> set[int]:
    from checkpoint_reference import reference_kept

    from trainer_callbacks.checkpoint.policy import CheckpointInfo

    infos = [
        CheckpointInfo(
            path=Path(run_dir) / f"checkpoint-{s}", step=s, metrics=evals[s], is_best_model_checkpoint=s == best
        )
        for s in sorted(on_disk | {step})
    ]
    return reference_kept(infos, policy, None)


def test_hyperparameter_search_prunes_inside_each_trial_dir(tiny_trainer: Any, tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from transformers import BertConfig, BertForSequenceClassification

    cb = CheckpointPruner(keep_last=1, keep_best=0)
    trainer = tiny_trainer([cb], max_steps=3, eval_strategy="no")
    config = trainer.model.config

    def model_init(trial: Any = None) -> Any:
        assert isinstance(config, BertConfig)
        return BertForSequenceClassification(config)

    trainer.model_init = model_init
    trainer.hyperparameter_search(
        hp_space=lambda trial: {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-4)},
        backend="optuna",
        n_trials=2,
        direction="minimize",
        compute_objective=lambda metrics: 0.0,
    )
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["run-0", "run-1"]
    for run in ("run-0", "run-1"):
        assert sorted(os.listdir(out / run)) == ["checkpoint-3"]


def test_save_total_limit_warns_at_train_begin(training_args: Any, caplog: pytest.LogCaptureFixture) -> None:
    cb = CheckpointPruner()
    with caplog.at_level(logging.WARNING, logger="trainer_callbacks.checkpoint"):
        cb.on_train_begin(training_args(save_total_limit=3), TrainerState(), TrainerControl())
    assert "save_total_limit=3" in caplog.text and "two pruners" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="trainer_callbacks.checkpoint"):
        cb.on_train_begin(training_args(save_total_limit=None), TrainerState(), TrainerControl())
    assert "save_total_limit" not in caplog.text


def test_keep_callable_survives_the_trainer_rebuild_when_importable() -> None:
    cb = CheckpointPruner(keep=checkpoint_reference.keep_sevens)
    saved = json.loads(json.dumps(cb.state()))
    assert saved["args"]["keep"] == "checkpoint_reference:keep_sevens"
    rebuilt = type(cb)(**saved["args"])  # what restore_callback_states_from_checkpoint=True does
    assert rebuilt.keep is checkpoint_reference.keep_sevens


def test_a_keep_that_cannot_be_saved_is_refused_at_construction() -> None:
    """Like gradviz's group_by (core.callable_option): the options are saved in checkpoints and rebuilt by name."""

    def closure(info: Any) -> bool:
        return info.step == 3

    for unsaveable in (lambda info: info.step == 3, closure):
        with pytest.raises(ConfigurationError, match=r"CheckpointPruner\(keep=.*define it at module level"):
            CheckpointPruner(keep=unsaveable)
    # a pruner rebuilt from a checkpoint written by 0.1, which saved a lambda as a marker: what to do instead
    with pytest.raises(ConfigurationError, match="restore_callback_states_from_checkpoint=False"):
        CheckpointPruner(keep="<not saved: <lambda>>")


def test_monitor_without_evaluation_is_an_error(training_args: Any) -> None:
    problems = CheckpointPruner(monitor="eval_loss").check_training_args(training_args(eval_strategy="no"))
    assert len(problems) == 1 and "eval_strategy" in problems[0]
    assert CheckpointPruner().check_training_args(training_args(eval_strategy="no")) == []


def test_plugin_reads_its_logs_back(tmp_path: Path) -> None:
    history = [
        {"loss": 1.0, "step": 1},
        {"checkpoint/kept": 2.0, "checkpoint/deleted": 0.0, "step": 2},
        {"checkpoint/kept": 2.0, "checkpoint/deleted": 1.0, "step": 3},
        {"checkpoint/kept": 3.0, "checkpoint/deleted": 2.0, "step": 6},
        {"checkpoint/bytes_freed": 4_000_000.0, "step": 6},  # once, at train end
    ]
    events = checkpoint_plugin.plot_events(history)
    assert [(e.step, e.kind, e.label) for e in events] == [(3, "prune", "pruned 1"), (6, "prune", "pruned 2")]
    # an entry written by an older version, with its bytes per prune
    (old,) = checkpoint_plugin.plot_events([{"checkpoint/deleted": 1.0, "checkpoint/bytes_freed": 1.5e6, "step": 3}])
    assert old.label == "pruned 1 (1.5 MB)"
    (tmp_path / "checkpoint-6").mkdir()
    lines = checkpoint_plugin.summarize_run(history, tmp_path)
    assert "3 prune(s), 3 checkpoint(s) deleted, 4.0 MB freed; 3 kept" in lines[0]
    assert "checkpoint-6" in lines[1] and len(lines) == 2
    failed = checkpoint_plugin.summarize_run([*history, {"checkpoint/not_removed": 1.0, "step": 6}], tmp_path)
    assert "1 deleted folder(s) could not be removed from disk" in failed[1]
    assert checkpoint_plugin.summarize_run([{"loss": 1.0, "step": 1}], tmp_path) == []


def test_created_by_name_from_a_config() -> None:
    from trainer_callbacks.core import create_all

    (cb,) = create_all(
        {"checkpoint": {"keep_last": 3, "monitor": {"eval_loss": "min"}, "keep": "checkpoint_reference:keep_sevens"}}
    )
    assert isinstance(cb, CheckpointPruner)
    assert cb.keep_last == 3 and cb.monitor == {"eval_loss": "min"} and cb.keep is checkpoint_reference.keep_sevens
