"""All first-party plugins answer "is lower or higher better?" alike (issue 13, section 1).

Before core.metrics each plugin had its own rule: with monitor="eval_error" early stopping and the LR
plateau minimised it while the pruner kept the checkpoints with the HIGHEST error as best. Here every
plugin is asked through its own resolution path (what its setup_run uses), for any metric name and any
metric_for_best_model / greater_is_better, and all must give the same answer: a mode, or "tell me".
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import TrainingArguments

from trainer_callbacks.checkpoint import CheckpointPruner
from trainer_callbacks.core import ConfigurationError, eval_key, infer_mode
from trainer_callbacks.earlystop import EarlyStopping
from trainer_callbacks.lr import ReduceLROnPlateau
from trainer_callbacks.lr.monitor import resolve_mode

UNKNOWN = "unknown"

_BASE = TrainingArguments(output_dir="/tmp/unused-metric-modes", report_to="none", use_cpu=True)


def args_with(metric_for_best_model: str | None, greater_is_better: bool | None) -> TrainingArguments:
    """Real TrainingArguments with the two fields set as drawn (also the None combinations __post_init__ fills)."""
    args = copy.copy(_BASE)
    args.metric_for_best_model = metric_for_best_model
    args.greater_is_better = greater_is_better
    return args


def earlystop_mode(name: str, args: Any) -> str:
    try:
        rule = EarlyStopping(monitor=name)._config.resolve(args)
    except ConfigurationError:
        return UNKNOWN
    return rule.metrics[0].mode


def lr_mode(name: str, args: Any) -> str:
    callback = ReduceLROnPlateau(monitor=name)
    mode, problem = resolve_mode(callback.mode, callback.monitor, args)
    return mode if problem is None else UNKNOWN  # type: ignore[return-value]


def checkpoint_mode(name: str, args: Any) -> str:
    try:
        monitor = CheckpointPruner(monitor=name).policy(args).monitor
    except ConfigurationError:
        return UNKNOWN
    (mode,) = monitor.values()
    return mode


WORDS = [
    "loss", "error", "err", "wer", "cer", "perplexity", "ppl", "mse", "mae", "rmse", "accuracy", "acc", "f1",
    "precision", "recall", "auc", "bleu", "rouge1", "rougeLsum", "exact", "match", "score", "terror", "valloss",
    "drift", "a", "b", "test", "margins", "rewards", "10",
]  # fmt: skip
components = st.one_of(st.sampled_from(WORDS), st.from_regex(r"[a-zA-Z][a-zA-Z0-9]{0,6}", fullmatch=True))
names = st.builds(
    lambda prefix, parts, seps: prefix + "".join(p + s for p, s in zip(parts, seps))[:-1],
    st.sampled_from(["", "eval_"]),
    st.lists(components, min_size=1, max_size=4),
    st.lists(st.sampled_from(["_", "-", ".", "/", "@"]), min_size=4, max_size=4),
).filter(lambda n: n.strip() and n != "eval_")


@st.composite
def names_and_args(draw: Any) -> tuple[str, Any]:
    name = draw(names)
    best = draw(
        st.one_of(
            st.none(),
            st.just(name),
            st.just(eval_key(name)),
            st.just(name.removeprefix("eval_")),
            names,
        )
    )
    greater = draw(st.one_of(st.none(), st.booleans()))
    return name, args_with(best, greater)


@given(names_and_args())
def test_every_plugin_gives_the_same_mode(case: tuple[str, Any]) -> None:
    name, args = case
    answers = {
        "earlystop": earlystop_mode(name, args),
        "lr": lr_mode(name, args),
        "checkpoint": checkpoint_mode(name, args),
    }
    expected = infer_mode(eval_key(name), args) or UNKNOWN
    assert answers == dict.fromkeys(answers, expected), (name, args.metric_for_best_model, args.greater_is_better)


@pytest.mark.parametrize("name", ["eval_error", "eval_wer", "eval_cer", "eval_perplexity", "error", "eval_test_wer"])
@pytest.mark.parametrize("best", [None, "loss", "accuracy"])
def test_error_rates_are_minimised_by_every_plugin(name: str, best: str | None) -> None:
    args = args_with(best, None if best is None else best != "loss")
    assert (earlystop_mode(name, args), lr_mode(name, args), checkpoint_mode(name, args)) == ("min", "min", "min")


def test_metric_for_best_model_with_greater_is_better_wins_everywhere() -> None:
    args = args_with("error", True)  # the user says higher is better for this metric: every plugin follows
    assert (earlystop_mode("error", args), lr_mode("eval_error", args), checkpoint_mode("error", args)) == (
        "max",
        "max",
        "max",
    )
