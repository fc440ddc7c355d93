"""Clear errors at construction or train begin, mode resolution, min_steps, strictness, reuse."""

from __future__ import annotations

import logging

import pytest
import torch
from lr_testing import ScriptedMetric, TinyDataset, sgd, tiny_trainer, torch_oracle_lrs, trainer_loop, training_args
from transformers import TrainerControl, TrainerState, TrainingArguments

from trainer_callbacks.core import create
from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.lr import ReduceLROnPlateau
from trainer_callbacks.lr.monitor import resolve_mode


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"factor": 1.0}, r"ReduceLROnPlateau\(factor=1.0\): give a finite number in \(0, 1\)"),
        ({"factor": 0.0}, "factor=0.0"),
        ({"factor": -0.5}, "factor=-0.5"),
        ({"patience": -1}, "patience=-1"),
        ({"cooldown": -2}, "cooldown=-2"),
        ({"patience": 1.5}, "patience=1.5"),
        ({"min_steps": -1}, "min_steps=-1"),
        ({"mode": "up"}, "mode='up'"),
        ({"threshold_mode": "pct"}, "threshold_mode='pct'"),
        ({"threshold": -0.1}, "threshold=-0.1"),
        ({"threshold": 1.0}, "must be < 1"),
        ({"min_lr": -1e-5}, "min_lr=-1e-05"),
        ({"min_lr": []}, "min_lr=\\[\\]"),
        ({"eps": -1.0}, "eps=-1.0"),
        ({"monitor": ""}, "monitor=''"),
        ({"strict": "yes"}, "strict='yes'"),
    ],
)
def test_bad_options_fail_at_construction(kwargs, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError, match=fragment):
        ReduceLROnPlateau(**kwargs)


def _trainer(tmp_path, callbacks, **overrides):  # type: ignore[no-untyped-def]
    options = dict(output_dir=tmp_path, max_steps=4, eval_strategy="steps", eval_steps=2, per_device_train_batch_size=4)
    options.update(overrides)
    return tiny_trainer(callbacks, **options)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"lr_scheduler_type": "reduce_lr_on_plateau", "metric_for_best_model": "loss"}, "second plateau controller"),
        ({"eval_strategy": "no"}, "eval_strategy='no'"),
    ],
)
def test_impossible_training_args_fail_at_train_begin(tmp_path, overrides, fragment: str) -> None:  # type: ignore[no-untyped-def]
    trainer = _trainer(tmp_path, [ReduceLROnPlateau()], **overrides)
    with pytest.raises(ConfigurationError, match=fragment):
        trainer.train()
    assert trainer.state.global_step == 0  # before any step


def test_min_lr_list_must_match_param_groups(tmp_path) -> None:
    trainer = _trainer(tmp_path, [ReduceLROnPlateau(min_lr=[0.0, 0.0, 0.0])])  # the Trainer builds 2 groups
    with pytest.raises(ConfigurationError, match="min_lr has 3 values but the optimizer has 2 param group"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_mode_resolution() -> None:
    acc = TrainingArguments(output_dir="/tmp/x", metric_for_best_model="accuracy", report_to="none")
    assert acc.greater_is_better is True
    assert resolve_mode(None, "eval_accuracy", acc) == ("max", None)
    assert resolve_mode(None, "accuracy", acc) == ("max", None)
    assert resolve_mode(None, "eval_loss", acc) == ("min", None)  # loss-like name
    assert resolve_mode(None, "eval_perplexity", acc) == ("min", None)
    assert resolve_mode("min", "eval_accuracy", acc) == ("min", None)  # explicit wins
    lower = TrainingArguments(
        output_dir="/tmp/x", metric_for_best_model="wer", greater_is_better=False, report_to="none"
    )
    assert resolve_mode(None, "eval_wer", lower) == ("min", None)
    assert resolve_mode(None, "eval_f1", acc) == ("max", None)  # a score word
    assert resolve_mode(None, "eval_error", acc) == ("min", None)  # an error rate, as in EarlyStopping and the pruner
    mode, problem = resolve_mode(None, "eval_drift", acc)
    assert mode is None and problem is not None and "mode='max'" in problem and "eval_drift" in problem


def test_unresolvable_mode_fails_at_train_begin(tmp_path) -> None:
    trainer = _trainer(tmp_path, [ReduceLROnPlateau(monitor="eval_drift")])
    with pytest.raises(ConfigurationError, match="cannot tell whether higher or lower is better for 'eval_drift'"):
        trainer.train()


def test_max_mode_from_greater_is_better_in_a_real_run(tmp_path) -> None:
    """metric_for_best_model='accuracy' (greater is better): a falling accuracy must cut the LR, patience 0."""
    acc = ScriptedMetric("eval_accuracy", lambda i: 0.9 - 0.1 * i)
    callback = ReduceLROnPlateau(monitor="eval_accuracy", patience=0, factor=0.5)
    trainer = _trainer(tmp_path, [acc, callback], metric_for_best_model="accuracy")
    trainer.train()
    assert callback.rule.mode == "max"
    assert callback.reductions == 1  # evaluation 2 fell: cut; (evaluation 1 set the best)


def test_missing_metric_strict_lists_present_metrics(tmp_path) -> None:
    trainer = _trainer(tmp_path, [ReduceLROnPlateau(monitor="eval_accuracy", mode="max")])
    with pytest.raises(
        ConfigurationError,
        match=r"eval_accuracy is missing from the evaluation at step \d+\. Metrics present: .*eval_loss",
    ):
        trainer.train()


def test_missing_metric_not_strict_skips(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    args = training_args(tmp_path)
    optimizer = sgd([0.1])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    callback = ReduceLROnPlateau(patience=0, strict=False)
    with caplog.at_level(logging.WARNING):
        result = trainer_loop(callback, args, optimizer, scheduler, [1.0, None, None, 2.0])
    assert result.lrs_after_eval == [[0.1], [0.1], [0.1], [pytest.approx(0.01)]]  # skipped ones do not count
    assert sum("is not among the evaluation metrics" in r.message for r in caplog.records) == 1


def test_several_eval_datasets_monitor_one_of_them(tmp_path) -> None:
    """With eval_dataset={"val":..., "test":...} each dataset is evaluated with its own prefix; the monitored
    eval_val_loss is missing from eval_test_* evaluations and that is not an error."""
    callback = ReduceLROnPlateau(monitor="eval_val_loss", patience=0)

    def build(callback: ReduceLROnPlateau):  # type: ignore[no-untyped-def]
        datasets = {"test": TinyDataset(8, seed=2), "val": TinyDataset(8, seed=1)}
        return _trainer(tmp_path, [callback], eval_dataset=datasets, logging_steps=500)  # the TrainingArguments default

    trainer = build(callback)
    trainer.train()
    assert sum(1 for e in trainer.state.log_history if "lr_plateau/scale" in e) == 2
    wrong = ReduceLROnPlateau(monitor="eval_dev_loss", patience=0)
    trainer = build(wrong)
    with pytest.raises(
        ConfigurationError, match=r"eval_dev_loss.*step 2 \(eval datasets: test, val\)\. Metrics.*val_loss"
    ):
        trainer.train()


def test_missing_metric_at_the_last_evaluation_with_several_datasets(tmp_path) -> None:
    """The only evaluation is the run's last one, over two eval datasets: the error comes at the end of that round
    (after dataset b, so it lists both datasets' metrics), not one evaluation late or never."""
    datasets = {"a": TinyDataset(8, seed=2), "b": TinyDataset(8, seed=1)}
    trainer = _trainer(tmp_path, [ReduceLROnPlateau(monitor="eval_loss")], eval_dataset=datasets, eval_steps=4)
    with pytest.raises(ConfigurationError, match=r"eval_loss is missing .* step 4 \(eval datasets: a, b\)") as info:
        trainer.train()
    assert "eval_a_loss" in str(info.value) and "eval_b_loss" in str(info.value)
    assert trainer.state.global_step == 4


@pytest.mark.parametrize("value", [None, "abc", torch.tensor([0.1, 0.2])], ids=["None", "str", "tensor"])
def test_a_metric_that_is_not_a_number_is_a_clear_error(tmp_path, value) -> None:  # type: ignore[no-untyped-def]
    callback = ReduceLROnPlateau(patience=0)
    optimizer = sgd([0.1])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    state, control = TrainerState(), TrainerControl()
    callback.on_train_begin(training_args(tmp_path), state, control, optimizer=optimizer, lr_scheduler=scheduler)
    state.global_step = 7
    with pytest.raises(ConfigurationError) as info:
        callback.on_evaluate(training_args(tmp_path), state, control, metrics={"eval_loss": value, "eval_runtime": 0.1})
    message = str(info.value)
    assert "ReduceLROnPlateau" in message and "'eval_loss'" in message and "step 7" in message
    assert type(value).__name__ in message
    # a 0-d tensor or numpy scalar is a number
    state.global_step = 8
    callback.on_evaluate(training_args(tmp_path), state, control, metrics={"eval_loss": torch.tensor(0.5)})
    assert callback.rule.best == 0.5


def test_min_steps_ignores_early_evaluations_entirely(tmp_path) -> None:
    """Hand-derived: evaluations every step with metrics [5, 1, 1, 1, 1]; min_steps=3 ignores the evaluations at
    steps 1 and 2 (the 1.0 at step 2 would have set best=1), so best is set at step 3 and patience 0 cuts at
    step 4 -- the same as torch fed only the evaluations from step 3 on."""
    metrics = [5.0, 1.0, 1.0, 1.0, 1.0]
    optimizer = sgd([0.1])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    callback = ReduceLROnPlateau(patience=0, factor=0.5, min_steps=3)
    result = trainer_loop(callback, training_args(tmp_path), optimizer, scheduler, metrics)
    expected = [[0.1], [0.1], *torch_oracle_lrs([0.1], metrics[2:], mode="min", factor=0.5, patience=0)]
    assert result.lrs_after_eval == expected
    assert [lrs[0] for lrs in result.lrs_after_eval] == [0.1, 0.1, 0.1, 0.05, 0.025]


def test_evaluate_outside_train_changes_nothing(tmp_path) -> None:
    callback = ReduceLROnPlateau(patience=0)
    args = training_args(tmp_path)
    state = TrainerState()
    callback.on_evaluate(args, state, TrainerControl(), metrics={"eval_loss": 1.0})
    assert state.log_history == [] and callback.rule.best == float("inf")


def test_one_instance_serves_several_runs(tmp_path) -> None:
    """reset() at every train begin: the second run starts from scale 1 with fresh plateau state."""
    callback = ReduceLROnPlateau(patience=0, factor=0.5)
    args = training_args(tmp_path)
    for _ in range(2):
        optimizer = sgd([0.1])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        result = trainer_loop(callback, args, optimizer, scheduler, [1.0, 1.0])
        assert result.lrs_after_eval == [[0.1], [0.05]]
        assert callback.reductions == 1 and callback.scale == 0.5


def test_create_by_name_and_state_round_trip() -> None:
    callback = create("lr", monitor="eval_loss", patience=2, min_lr=[0.0, 1e-6])
    assert isinstance(callback, ReduceLROnPlateau)
    state = callback.state()
    assert state["args"]["min_lr"] == [0.0, 1e-6]
    rebuilt = ReduceLROnPlateau(**state["args"])
    rebuilt.load_state_dict(state["attributes"]["progress"])
    assert rebuilt.state_dict() == callback.state_dict()


@pytest.mark.parametrize("monitor", ["", " ", "eval_", " eval_loss"])
def test_blank_or_prefix_only_monitor_fails_at_construction(monitor: str) -> None:
    with pytest.raises(ConfigurationError, match=r"ReduceLROnPlateau\(monitor="):
        ReduceLROnPlateau(monitor=monitor)
