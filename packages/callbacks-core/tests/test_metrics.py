"""core.metrics: the metric conventions every plugin shares (names, modes, strategies, values, rounds)."""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

from trainer_callbacks.core import (
    ConfigurationError,
    EvaluationRound,
    eval_key,
    infer_mode,
    metric_value,
    mode_problem,
    monitor_keys,
    strategy,
)


def test_eval_key() -> None:
    assert eval_key("accuracy") == "eval_accuracy"
    assert eval_key("eval_accuracy") == "eval_accuracy"
    assert eval_key("eval_a_loss") == "eval_a_loss"


def test_monitor_keys_prefix_and_refuse_blank_or_twice() -> None:
    assert monitor_keys(["loss", " eval_f1 "], callback="X") == ["eval_loss", "eval_f1"]
    for bad in ("", "   ", "eval_", 3, None):
        with pytest.raises(ConfigurationError, match=r"^X\(monitor=\.\.\.\): .* is not a metric name"):
            monitor_keys([bad], callback="X")
    with pytest.raises(ConfigurationError, match=r"'loss' and 'eval_loss' are the same metric 'eval_loss'"):
        monitor_keys(["loss", "eval_loss"], callback="X")


# Written by hand from the rule in the issue (not from the code): loss / error rates down, scores up, else unknown.
MODES = {
    "eval_loss": "min",
    "eval_error": "min",
    "eval_wer": "min",
    "eval_cer": "min",
    "eval_perplexity": "min",
    "eval_ppl": "min",
    "eval_mse": "min",
    "eval_mae": "min",
    "eval_rmse": "min",
    "eval_test_wer": "min",
    "eval_a_loss": "min",
    "eval_valloss": "min",  # the Trainer's own rule: a name ending in "loss"
    "eval_char-error": "min",
    "eval_accuracy": "max",
    "eval_acc": "max",
    "eval_f1": "max",
    "eval_f1_macro": "max",
    "eval_precision": "max",
    "eval_recall": "max",
    "eval_roc_auc": "max",
    "eval_bleu": "max",
    "eval_rouge1": "max",
    "eval_rougeLsum": "max",
    "eval_exact_match": "max",
    "eval_sts-dev_spearman_cosine": "max",
    "eval_ir_ndcg@10": "max",
    "eval_terror": None,  # whole components only: not "err"
    "eval_errand": None,
    "eval_acc_loss": None,  # both kinds of word: refuse to guess
    "eval_drift": None,
    "eval_rewards/margins": None,
    "eval_samples_per_second": None,
}


@pytest.mark.parametrize(("name", "expected"), MODES.items())
def test_infer_mode_from_the_name(name: str, expected: str | None) -> None:
    assert infer_mode(name) == expected


def test_metric_for_best_model_wins_with_greater_is_better() -> None:
    args = SimpleNamespace(metric_for_best_model="loss", greater_is_better=True)
    assert infer_mode("eval_loss", args) == "max"
    assert infer_mode("eval_accuracy", args) == "max"  # not metric_for_best_model: the name decides
    args = SimpleNamespace(metric_for_best_model="eval_drift", greater_is_better=False)
    assert infer_mode("eval_drift", args) == "min"
    # greater_is_better None: the Trainer's default (greater unless the name ends in "loss")
    assert infer_mode("eval_drift", SimpleNamespace(metric_for_best_model="drift", greater_is_better=None)) == "max"
    assert infer_mode("eval_x_loss", SimpleNamespace(metric_for_best_model="x_loss", greater_is_better=None)) == "min"
    real = TrainingArguments(output_dir="/tmp/unused", metric_for_best_model="wer", report_to="none")
    assert real.greater_is_better is True and infer_mode("eval_wer", real) == "max"  # what the Trainer ranks by


def test_mode_problem_says_how_to_pass_the_mode() -> None:
    args = SimpleNamespace(metric_for_best_model="loss")
    message = mode_problem("Thing", ["eval_drift"], args, fix="mode='max'")
    assert message.startswith("Thing: cannot tell whether higher or lower is better for 'eval_drift'")
    assert "metric_for_best_model (which is 'loss')" in message and message.endswith("Pass the mode: mode='max'")


def test_strategy_is_the_plain_value_for_enums_and_strings() -> None:
    real = TrainingArguments(
        output_dir="/tmp/unused",
        eval_strategy="steps",
        save_strategy="best",
        logging_strategy="epoch",
        metric_for_best_model="loss",
        report_to="none",
    )
    plain = SimpleNamespace(eval_strategy="steps", save_strategy="best", logging_strategy="epoch")
    for args in (real, plain):
        assert [strategy(args, w) for w in ("eval", "save", "logging")] == ["steps", "best", "epoch"]
    assert [strategy(SimpleNamespace(), w) for w in ("eval", "save", "logging")] == ["no", "steps", "steps"]
    assert strategy(TrainingArguments(output_dir="/tmp/unused", report_to="none"), "eval") == "no"
    with pytest.raises(ValueError, match="which is one of"):
        strategy(real, "evaluation")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [1, 0.5, np.float32(0.5), np.int64(3), np.array(0.25), torch.tensor(0.5), torch.tensor(2, dtype=torch.int64)],
    ids=["int", "float", "np.float32", "np.int64", "0-d array", "0-d tensor", "0-d int tensor"],
)
def test_metric_value_accepts_real_numbers(value: Any) -> None:
    got = metric_value({"eval_x": value}, "eval_x", callback="C", step=1)
    assert type(got) is float and got == pytest.approx(float(value))


def test_metric_value_keeps_nan_and_inf() -> None:
    assert math.isnan(metric_value({"k": float("nan")}, "k", callback="C"))
    assert metric_value({"k": float("inf")}, "k", callback="C") == math.inf


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (None, "NoneType"),
        ("abc", "str"),
        ("0.5", "str"),
        (True, "bool"),
        ([0.1, 0.2], "list"),
        (np.array([0.1, 0.2]), "ndarray"),
        (torch.tensor([0.1, 0.2]), "Tensor"),
    ],
)
def test_metric_value_refuses_what_is_not_a_number(value: Any, type_name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        metric_value({"eval_x": value}, "eval_x", callback="MyCallback", step=12)
    message = str(info.value)
    assert message.startswith("MyCallback: the evaluation metric 'eval_x' at step 12 is ")
    assert type_name in message and "not a number" in message
    assert repr(value)[:20] in message


def test_one_dataset_completes_each_round_at_once() -> None:
    rounds = EvaluationRound(datasets=())
    (r,) = rounds.add(5, {"eval_loss": 1.0, "eval_runtime": 0.1})
    assert (r.step, r.complete, r.prefixes, r.missing(["eval_loss", "eval_f1"])) == (5, True, ["eval"], ["eval_f1"])
    assert rounds.close() == []


def test_several_datasets_complete_after_the_last_one() -> None:
    rounds = EvaluationRound(datasets=("a", "b"))
    assert rounds.add(2, {"eval_a_loss": 1.0, "eval_a_runtime": 0.1}) == []
    (r,) = rounds.add(2, {"eval_b_loss": 2.0, "eval_b_runtime": 0.1})
    assert r.complete and r.metrics == {
        "eval_a_loss": 1.0,
        "eval_a_runtime": 0.1,
        "eval_b_loss": 2.0,
        "eval_b_runtime": 0.1,
    }
    assert r.prefixes == ["eval_a", "eval_b"]


def test_unknown_datasets_end_the_round_at_close_or_at_another_step() -> None:
    rounds = EvaluationRound()  # no Trainer to ask
    assert rounds.add(2, {"eval_a_loss": 1.0, "eval_a_runtime": 0.1}) == []
    assert rounds.add(2, {"eval_b_loss": 1.0, "eval_b_runtime": 0.1}) == []
    (r,) = rounds.close()
    assert (r.step, r.complete, r.prefixes) == (2, False, ["eval_a", "eval_b"])
    rounds.add(4, {"eval_a_loss": 1.0, "eval_a_runtime": 0.1})
    (r4,) = rounds.add(6, {"eval_a_loss": 1.0, "eval_a_runtime": 0.1})  # the next step ends step 4's round
    assert r4.step == 4 and rounds.pending is not None and rounds.pending.step == 6
    # the same dataset twice at one step is a second round (eval_on_start after a resume at that step)
    rounds = EvaluationRound()
    rounds.add(1, {"eval_a_loss": 1.0, "eval_a_runtime": 0.1})
    (first,) = rounds.add(1, {"eval_a_loss": 2.0, "eval_a_runtime": 0.1})
    assert first.metrics["eval_a_loss"] == 1.0


class _Recorder(TrainerCallback):
    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.rounds = EvaluationRound()
        self.ended: list[tuple[int, bool, list[str]]] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.rounds.begin()  # reads the running Trainer's eval_dataset
        self.seen.append(self.rounds.expected)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        for r in self.rounds.add(state.global_step, metrics):
            self.ended.append((r.step, r.complete, r.prefixes))


def test_the_datasets_come_from_the_running_trainer(tiny_trainer: Any) -> None:
    from trainer_callbacks.testing import TokenTask

    recorder = _Recorder()
    datasets = {"a": TokenTask(8, seed=1), "b": TokenTask(8, seed=2)}
    tiny_trainer([recorder], max_steps=2, eval_strategy="steps", eval_steps=1, eval_dataset=datasets).train()
    assert recorder.seen == [frozenset({"eval_a", "eval_b"})]
    # complete at the call of the last dataset, not one event later
    assert recorder.ended == [(1, True, ["eval_a", "eval_b"]), (2, True, ["eval_a", "eval_b"])]
    single = _Recorder()
    tiny_trainer([single], max_steps=1, eval_strategy="steps", eval_steps=1, eval_dataset=TokenTask(8)).train()
    assert single.seen == [frozenset({"eval"})] and single.ended == [(1, True, ["eval"])]


def test_importing_the_conventions_imports_no_heavy_library() -> None:
    code = (
        "import sys; from trainer_callbacks.core import infer_mode, strategy, EvaluationRound, metric_value; "
        "infer_mode('eval_wer'); metric_value({'k': 1.0}, 'k', callback='c'); EvaluationRound(()); "
        "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_metric_name_is_an_option_check() -> None:
    from trainer_callbacks.core import MetricName, OptionProblem

    check = MetricName()
    assert check("eval_loss") == "eval_loss" and check.kind == "text"
    for bad in ("", " loss", "eval_", 3):
        with pytest.raises(OptionProblem):
            check(bad)
