"""Construction errors (each names its field), mode resolution, ``from_training_args``, and
the checks run at train begin."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest

from trainer_callbacks.core import create, create_all
from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.earlystop import EarlyStopping, EarlyStoppingRule, Metric


def _rule(cb: EarlyStopping) -> EarlyStoppingRule:
    """``cb``'s rule, resolved at construction when every metric's mode is known (else ``None``)."""
    assert cb._rule is not None, "the rule is unresolved: a metric's mode is not known yet"
    return cb._rule


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"monitor": []}, "monitor"),
        ({"monitor": {}}, "monitor"),
        ({"monitor": ""}, "monitor"),
        ({"monitor": 3}, "monitor"),
        ({"monitor": ["eval_loss", "loss"]}, "more than once"),
        ({"monitor": {"eval_acc": "up"}}, "monitor['eval_acc']"),
        ({"monitor": [{"name": "eval_acc", "mood": "max"}]}, "mood"),
        ({"patience": -1}, "patience"),
        ({"patience": 1.5}, "patience"),
        ({"patience": True}, "patience"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold_mode": "relative"}, "threshold_mode"),
        ({"combine": "both"}, "combine"),
        ({"combine": "pareto"}, "pareto"),
        ({"baseline": {"eval_accuracy": 0.5}}, "baseline"),
        ({"stopping_threshold": {"accuracy": 0.9}}, "stopping_threshold"),
        ({"divergence_threshold": {"eval_f1": 0.1}}, "divergence_threshold"),
        ({"baseline": float("inf")}, "baseline"),
        ({"min_steps": -5}, "min_steps"),
        ({"check_finite": "yes"}, "check_finite"),
        ({"strict": 1}, "strict"),
        ({"stopping_threshold": 2.0, "divergence_threshold": 1.0}, "overlap"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, Any], field: str) -> None:
    options = {"monitor": "eval_loss", **options}
    with pytest.raises(ConfigurationError, match=field.replace("[", r"\[").replace("]", r"\]")) as info:
        EarlyStopping(**options)
    assert isinstance(info.value, ValueError)


def test_bad_metric_fields() -> None:
    with pytest.raises(ConfigurationError, match="mode"):
        Metric("acc", mode="higher")
    with pytest.raises(ConfigurationError, match=r"Metric\('eval_acc'\).patience"):
        Metric("acc", mode="max", patience=-2)
    with pytest.raises(ConfigurationError, match="name"):
        Metric("")
    with pytest.raises(ConfigurationError, match="per-metric patience"):
        EarlyStopping([Metric("loss", patience=2), Metric("acc", mode="max")], combine="pareto")
    with pytest.raises(ConfigurationError, match="per-metric patience"):
        EarlyStopping({"loss": "min", "acc": "max"}, combine="pareto", patience={"loss": 2})


def test_names_get_the_eval_prefix_and_settings_merge() -> None:
    cb = EarlyStopping(
        [Metric("loss"), Metric("accuracy", mode="max", patience=5, threshold=0.01), "eval_error"],
        patience={"loss": 2},
        threshold=0.1,
        baseline={"eval_accuracy": 0.5},
        stopping_threshold={"loss": 0.05},
    )
    assert cb.monitored == ["eval_loss", "eval_accuracy", "eval_error"]
    rules = {m.name: m for m in _rule(cb).metrics}
    assert (rules["eval_loss"].patience, rules["eval_loss"].threshold, rules["eval_loss"].stopping_threshold) == (
        2,
        0.1,
        0.05,
    )
    # Metric overrides win over the mappings and scalars
    assert (rules["eval_accuracy"].patience, rules["eval_accuracy"].threshold) == (5, 0.01)
    assert rules["eval_accuracy"].baseline == 0.5 and rules["eval_accuracy"].mode == "max"
    # a mapping that leaves a metric out gives it the default patience 3
    assert rules["eval_error"].patience == 3 and rules["eval_error"].mode == "min"


def test_bare_string_modes(training_args: Any) -> None:
    assert _rule(EarlyStopping("eval_loss")).metrics[0].mode == "min"
    assert _rule(EarlyStopping("perplexity")).metrics[0].mode == "min"
    assert _rule(EarlyStopping("eval_wer")).metrics[0].mode == "min"
    assert _rule(EarlyStopping("accuracy")).metrics[0].mode == "max"  # a score word (core.infer_mode)
    # unknown direction: not an error yet (args may tell), an error at train begin if they do not
    cb = EarlyStopping("drift")
    assert cb._rule is None
    problems = cb.check_training_args(training_args())
    assert len(problems) == 1 and "'eval_drift'" in problems[0] and "Pass the mode" in problems[0]
    args = training_args(metric_for_best_model="drift")  # greater_is_better defaults to True
    assert cb.check_training_args(args) == []
    assert cb._config.resolve(args).metrics[0].mode == "max"
    # metric_for_best_model with greater_is_better wins even over a loss-like name
    args = training_args(metric_for_best_model="eval_loss", greater_is_better=True)
    assert EarlyStopping("loss")._config.resolve(args).metrics[0].mode == "max"


def test_from_training_args(training_args: Any) -> None:
    cb = EarlyStopping.from_training_args(training_args(metric_for_best_model="f1"), patience=2, threshold=0.01)
    rule = _rule(cb).metrics[0]
    assert (rule.name, rule.mode, rule.patience, rule.threshold) == ("eval_f1", "max", 2, 0.01)
    cb = EarlyStopping.from_training_args(training_args(metric_for_best_model="loss"))
    assert (_rule(cb).metrics[0].mode, _rule(cb).metrics[0].patience) == ("min", 1)  # EarlyStoppingCallback's default
    with pytest.raises(ConfigurationError, match="metric_for_best_model"):
        EarlyStopping.from_training_args(training_args())


def test_check_training_args(training_args: Any) -> None:
    cb = EarlyStopping("eval_loss", min_steps=50)
    (problem,) = cb.check_training_args(training_args(eval_strategy="no"))
    assert "eval_strategy" in problem and "'steps'" in problem
    (problem,) = cb.check_training_args(training_args(max_steps=49))
    assert "min_steps" in problem
    assert cb.check_training_args(training_args(eval_strategy="epoch")) == []
    assert cb.check_training_args(training_args(max_steps=50)) == []  # the evaluation at step 50 counts


def test_create_and_toml(tmp_path: Any) -> None:
    cb = create("earlystop", monitor={"eval_loss": "min", "eval_accuracy": "max"}, combine="any", patience=2)
    assert isinstance(cb, EarlyStopping) and cb.monitored == ["eval_loss", "eval_accuracy"]
    toml = tmp_path / "callbacks.toml"
    toml.write_text(
        '[earlystop]\ncombine = "all"\npatience = 4\n'
        '[[earlystop.monitor]]\nname = "loss"\n'
        '[[earlystop.monitor]]\nname = "accuracy"\nmode = "max"\nthreshold = 0.01\n'
    )
    (cb,) = create_all(toml)
    assert cb.monitored == ["eval_loss", "eval_accuracy"]
    assert {m.name: m.threshold for m in cb._rule.metrics} == {"eval_loss": 0.0, "eval_accuracy": 0.01}


def test_state_is_json_and_the_object_copies(drive: Any) -> None:
    cb = EarlyStopping([Metric("loss"), Metric("acc", mode="max")], combine="pareto", patience=2)
    d = drive(cb)
    d.evaluate(1, {"eval_loss": 1.0, "eval_acc": 0.5})
    d.evaluate(2, {"eval_loss": 1.1, "eval_acc": 0.4})
    saved = cb.state()
    assert json.loads(json.dumps(saved)) == saved
    assert saved["args"]["monitor"] == [{"name": "eval_loss", "mode": "min"}, {"name": "eval_acc", "mode": "max"}]
    # the saved args rebuild an equal callback (ExportableState.from_state)
    clone = EarlyStopping.from_state(saved)
    assert clone.state() == saved and clone.waits == cb.waits and clone._rule.shared_wait == 1
    # trainer_state.json is written with sorted keys: the metric order must survive it
    ordered = EarlyStopping({"eval_loss": "min", "eval_accuracy": "max"})
    sorted_json = json.loads(json.dumps(ordered.state(), sort_keys=True))
    assert EarlyStopping.from_state(sorted_json).monitored == ["eval_loss", "eval_accuracy"]
    for other in (copy.deepcopy(cb), pickle.loads(pickle.dumps(cb))):
        assert other.state() == saved
