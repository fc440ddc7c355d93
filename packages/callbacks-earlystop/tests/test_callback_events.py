"""The callback around the rule, fed events the way the Trainer sends them: logging names,
missing metrics (strict or not), several eval datasets, evaluations outside ``train()``,
reset per run, and the plugin's summary and plot events."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.earlystop import EarlyStopping, Metric
from trainer_callbacks.earlystop import plugin as earlystop_plugin


def _entries(log_history: list[dict[str, Any]], key: str) -> list[tuple[int, Any]]:
    return [(e["step"], e[key]) for e in log_history if key in e]


def test_logged_names_and_values(drive: Any) -> None:
    # By hand: loss 1.0 (best), 0.9 (best), 0.95 (wait 1), 0.95 (wait 2) -> stalled at patience 2;
    # accuracy 0.5, 0.6, 0.7 (improves), 0.6 (wait 1): not stalled, so combine="all" goes on,
    # then loss 0.96 (wait 3), accuracy 0.65 (wait 2): both stalled -> stop at step 50.
    cb = EarlyStopping({"eval_loss": "min", "eval_accuracy": "max"}, patience=2)
    d = drive(cb)
    steps = [10, 20, 30, 40, 50]
    values = [(1.0, 0.5), (0.9, 0.6), (0.95, 0.7), (0.95, 0.6), (0.96, 0.65)]
    index = d.run([{"eval_loss": a, "eval_accuracy": b, "epoch": 1.0} for a, b in values], steps)
    assert index == 4
    history = d.state.log_history
    assert _entries(history, "early_stopping/wait/eval_loss") == [(10, 0), (20, 0), (30, 1), (40, 2), (50, 3)]
    assert _entries(history, "early_stopping/wait/eval_accuracy") == [(10, 0), (20, 0), (30, 0), (40, 1), (50, 2)]
    assert _entries(history, "early_stopping/best/eval_loss") == [(10, 1.0), (20, 0.9), (30, 0.9), (40, 0.9), (50, 0.9)]
    assert _entries(history, "early_stopping/stopped") == [(50, 1.0)]
    reason = cb.stop_reason
    assert reason is not None
    assert (reason.kind, reason.metrics, reason.step) == ("patience", ("eval_loss", "eval_accuracy"), 50)
    assert reason.values == {"eval_loss": 0.96, "eval_accuracy": 0.65}
    assert cb.best == {"eval_loss": (0.9, 20), "eval_accuracy": (0.7, 30)}
    (line,) = earlystop_plugin.summarize_run(history, Path("."))
    assert line == (
        "early stopping: stopped at step 50 (all of eval_loss, eval_accuracy stalled for 2/3 evaluations); "
        "best eval_loss 0.9 at step 20, best eval_accuracy 0.7 at step 30"
    )
    (event,) = earlystop_plugin.plot_events(history)
    assert (event.step, event.kind, event.label) == (50, "early_stop", "early stop (patience)")


def test_pareto_logs_its_shared_wait(drive: Any) -> None:
    # By hand (patience 2): (1.0, 0.5) first -> 0; (0.9, 0.4) better loss -> undominated -> 0;
    # (0.95, 0.45) improves on neither... it improves on (1.0, 0.5) in loss only? 0.95 < 1.0 yes -> not
    # dominated by the first, but (0.9, 0.4) dominates it? loss 0.95 !< 0.9, acc 0.45 > 0.4 -> improves in acc:
    # not dominated -> 0. (0.9, 0.4) again: dominated by the 2nd -> 1. (1.0, 0.3): dominated -> 2 -> stop.
    cb = EarlyStopping({"eval_loss": "min", "eval_acc": "max"}, combine="pareto", patience=2)
    d = drive(cb)
    index = d.run(
        [{"eval_loss": a, "eval_acc": b} for a, b in [(1.0, 0.5), (0.9, 0.4), (0.95, 0.45), (0.9, 0.4), (1.0, 0.3)]]
    )
    assert index == 4
    assert [v for _, v in _entries(d.state.log_history, "early_stopping/wait/pareto")] == [0, 0, 0, 1, 2]
    assert cb.stop_reason is not None
    assert "no Pareto improvement" in cb.stop_reason.message


def test_missing_metric_strict_is_a_clear_error(drive: Any) -> None:
    cb = EarlyStopping({"eval_f1": "max"})
    d = drive(cb)
    with pytest.raises(ConfigurationError) as info:
        d.evaluate(5, {"eval_loss": 0.3, "eval_accuracy": 0.9, "eval_runtime": 0.1})
    message = str(info.value)
    assert "eval_f1" in message and "step 5" in message and "strict=False" in message
    assert "Metrics present: eval_loss, eval_accuracy, eval_runtime" in message


def test_missing_metric_not_strict_skips_and_warns_once(drive: Any, caplog: pytest.LogCaptureFixture) -> None:
    cb = EarlyStopping({"eval_loss": "min", "eval_f1": "max"}, patience=1, strict=False, combine="any")
    d = drive(cb)
    with caplog.at_level(logging.WARNING, logger="trainer_callbacks.earlystop.callback"):
        assert not d.evaluate(1, {"eval_loss": 1.0})
        assert not d.evaluate(2, {"eval_loss": 0.5})
        assert d.evaluate(3, {"eval_loss": 0.6})  # loss stalls; f1 never seen
    assert sum("eval_f1" in r.getMessage() for r in caplog.records) == 1
    assert cb.waits == {"eval_loss": 1, "eval_f1": 0}
    assert cb.best["eval_f1"] == (None, None)


def test_several_eval_datasets_are_one_evaluation(drive: Any) -> None:
    """eval_dataset={"a": ..., "b": ...}: the Trainer calls on_evaluate once per dataset at the same step."""
    cb = EarlyStopping({"eval_a_loss": "min", "eval_b_loss": "min"}, patience=1)
    d = drive(cb, eval_datasets=("a", "b"))
    for step, (a, b) in enumerate([(1.0, 1.0), (0.5, 1.1), (0.6, 1.2)], start=1):
        stopped_a = d.evaluate(step, {"eval_a_loss": a, "eval_a_runtime": 0.1})
        assert not stopped_a, "the decision waits for dataset b"
        stopped_b = d.evaluate(step, {"eval_b_loss": b, "eval_b_runtime": 0.1})
    assert cb.stop_reason is not None
    assert stopped_b and cb.stop_reason.step == 3
    # one set of counters per step, not one per call
    assert [s for s, _ in _entries(d.state.log_history, "early_stopping/wait/eval_a_loss")] == [1, 2, 3]


def test_several_eval_datasets_missing_metric(drive: Any) -> None:
    """The error comes at the end of the round (after the last dataset), listing every dataset's metrics."""
    cb = EarlyStopping({"eval_a_f1": "max"})
    d = drive(cb, eval_datasets=("a", "b"))
    d.evaluate(1, {"eval_a_loss": 1.0, "eval_a_runtime": 0.1})  # the round goes on: dataset b is still to come
    with pytest.raises(ConfigurationError, match=r"eval_a_f1.*step 1.*eval_a_loss, eval_a_runtime, eval_b_loss"):
        d.evaluate(1, {"eval_b_loss": 1.0, "eval_b_runtime": 0.1})


def test_missing_metric_at_the_last_evaluation_of_the_run_is_an_error(drive: Any) -> None:
    """Issue 15 item 3: the only evaluation is the last one; it used to be a warning at train end."""
    cb = EarlyStopping("eval_loss")
    d = drive(cb, eval_datasets=("a", "b"))
    d.evaluate(4, {"eval_a_loss": 1.0, "eval_a_runtime": 0.1})
    with pytest.raises(ConfigurationError, match=r"eval_loss.*step 4 \(eval datasets: a, b\).*eval_b_loss"):
        d.evaluate(4, {"eval_b_loss": 1.0, "eval_b_runtime": 0.1})


def test_unknown_datasets_end_the_round_at_the_next_event(drive: Any) -> None:
    """Without a Trainer to read eval_dataset from (a custom loop), the round ends at the next event after it."""
    cb = EarlyStopping("eval_loss")
    d = drive(cb)  # no datasets known
    d.evaluate(4, {"eval_a_loss": 1.0, "eval_a_runtime": 0.1})
    d.evaluate(4, {"eval_b_loss": 1.0, "eval_b_runtime": 0.1})
    with pytest.raises(ConfigurationError, match=r"eval_loss.*step 4.*eval_a_loss.*eval_b_loss"):
        d.end()


@pytest.mark.parametrize("value", [None, "abc", [0.1, 0.2]], ids=["None", "str", "list"])
def test_a_metric_that_is_not_a_number_is_a_clear_error(drive: Any, value: Any) -> None:
    cb = EarlyStopping("eval_loss", strict=False)
    d = drive(cb)
    with pytest.raises(ConfigurationError) as info:
        d.evaluate(3, {"eval_loss": value, "eval_runtime": 0.1})
    message = str(info.value)
    assert "EarlyStopping" in message and "'eval_loss'" in message and "step 3" in message
    assert repr(value) in message and type(value).__name__ in message


def test_evaluations_outside_train_are_ignored(training_args: Any) -> None:
    from transformers import TrainerControl, TrainerState

    cb = EarlyStopping("eval_loss", patience=1)
    args, state, control = training_args(), TrainerState(), TrainerControl()
    cb.on_evaluate(args, state, control, metrics={"eval_loss": 1.0})  # trainer.evaluate() before train()
    assert cb.best["eval_loss"] == (None, None) and state.log_history == []
    cb.on_train_begin(args, state, control)
    state.global_step = 1
    cb.on_evaluate(args, state, control, metrics={"eval_loss": 1.0})
    cb.on_train_end(args, state, control)
    state.global_step = 2
    cb.on_evaluate(args, state, control, metrics={"eval_loss": 5.0})  # trainer.evaluate() after train()
    assert cb.waits == {"eval_loss": 0} and not control.should_training_stop


def test_min_steps_ignores_early_evaluations_entirely(drive: Any) -> None:
    cb = EarlyStopping("eval_loss", patience=1, min_steps=3)
    d = drive(cb)
    # steps 1, 2 ignored: a very good value there must not become the best
    assert d.run([{"eval_loss": v} for v in [0.1, 0.1, 1.0, 0.9, 0.95]]) == 4
    assert cb.best["eval_loss"] == (0.9, 4)
    assert [s for s, _ in _entries(d.state.log_history, "early_stopping/wait/eval_loss")] == [3, 4, 5]


def test_each_train_starts_fresh(drive: Any) -> None:
    cb = EarlyStopping("eval_loss", patience=2)
    d = drive(cb)
    assert d.run([{"eval_loss": v} for v in [1.0, 1.0, 1.0]]) == 2
    d2 = drive(cb)  # a second train() with the same instance
    assert cb.stop_reason is None and cb.best["eval_loss"] == (None, None)
    assert d2.run([{"eval_loss": v} for v in [5.0, 4.0, 4.0, 4.0]]) == 3


def test_goal_and_divergence_per_metric(drive: Any) -> None:
    cb = EarlyStopping(
        [Metric("loss", divergence_threshold=10.0), Metric("accuracy", mode="max", stopping_threshold=0.9)],
        combine="all",
    )
    d = drive(cb)
    assert d.run([{"eval_loss": 1.0, "eval_accuracy": 0.5}, {"eval_loss": 0.9, "eval_accuracy": 0.95}]) == 1
    assert cb.stop_reason is not None
    assert cb.stop_reason.kind == "goal" and cb.stop_reason.metrics == ("eval_accuracy",)
    assert cb.stop_reason.message == "eval_accuracy=0.95 reached stopping_threshold 0.9"
    assert cb.best["eval_accuracy"] == (0.95, 2)  # line 4 still ran at the stopping evaluation
