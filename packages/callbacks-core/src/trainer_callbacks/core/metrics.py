"""The metric conventions every plugin shares: names, modes, strategies, values and evaluation rounds.

One home for facts about the Trainer's evaluation metrics that each plugin needs, so that they
cannot disagree:

* :func:`eval_key`: the key the Trainer reports a metric under (``accuracy`` -> ``eval_accuracy``);
* :func:`monitor_keys`: a callback's monitored names checked (not blank, not twice) and prefixed;
* :func:`infer_mode`: whether lower or higher is better for a metric name, or ``None`` when that
  cannot be known; :func:`mode_problem` is the message that tells the user to pass the mode;
* :func:`strategy`: ``args.eval_strategy`` / ``save_strategy`` / ``logging_strategy`` as a plain
  string, whether ``args`` holds the enum or a string;
* :func:`metric_value`: one reported value as a ``float``, or a :class:`ConfigurationError` naming the
  callback, the metric, the value, its type and the step;
* :class:`EvaluationRound`: groups the ``on_evaluate`` calls of one evaluation (one per eval
  dataset when ``eval_dataset`` is a dict) and says when the round is complete, so a missing
  metric is reported at the end of the round that lacks it (:func:`missing_metrics_message`).

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import logging
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.core.options import OptionProblem, Text

logger = logging.getLogger(__name__)

EVAL_PREFIX = "eval_"
"""What the Trainer puts before every evaluation metric (``metric_key_prefix="eval"``)."""


# ---- names ---------------------------------------------------------------------------------------


def eval_key(name: str) -> str:
    """The key the Trainer reports ``name`` under: ``eval_`` is prepended when absent."""
    return name if name.startswith(EVAL_PREFIX) else f"{EVAL_PREFIX}{name}"


def monitor_keys(names: Iterable[Any], *, callback: str, field: str = "monitor") -> list[str]:
    """``names`` as Trainer keys (stripped, ``eval_`` added), in order.

    A name that is not a string, is blank, or is only the prefix (``"eval_"``), and two names
    that are the same key after the prefix (``"loss"`` and ``"eval_loss"``) are a
    :class:`ConfigurationError` naming the callback and the field.
    """
    keys: list[str] = []
    given: dict[str, Any] = {}
    for name in names:
        if not isinstance(name, str) or not name.strip() or name.strip() == EVAL_PREFIX:
            raise ConfigurationError(
                f"{callback}({field}=...): {name!r} is not a metric name; give the name of an evaluation metric "
                "such as 'eval_loss' (the 'eval_' prefix is added when missing)"
            )
        key = eval_key(name.strip())
        if key in given:
            raise ConfigurationError(
                f"{callback}({field}=...): {given[key]!r} and {name!r} are the same metric {key!r} (the Trainer "
                "adds 'eval_'); list each metric once"
            )
        given[key] = name
        keys.append(key)
    return keys


@dataclass(frozen=True)
class MetricName(Text):
    """An option check (``core.options``) for one monitored metric name: a non-empty string without
    surrounding spaces that is more than the ``eval_`` prefix."""

    meaning: str = "the name of an evaluation metric such as 'eval_loss'"

    def __call__(self, value: Any) -> str:
        name = super().__call__(value)
        if name == EVAL_PREFIX:
            raise OptionProblem("give a metric name after the 'eval_' prefix, e.g. 'eval_loss'")
        return name


# ---- modes ---------------------------------------------------------------------------------------

LOWER_IS_BETTER = frozenset(
    {
        "loss",
        "losses",
        "error",
        "errors",
        "err",
        "wer",
        "cer",
        "ter",
        "perplexity",
        "ppl",
        "mse",
        "mae",
        "rmse",
        "rmsle",
        "msle",
        "mape",
        "smape",
        "nll",
        "bpc",
        "bpb",
        "eer",
        "fpr",
        "fnr",
        "cross_entropy",
        "edit_distance",
    }
)
"""Name components that denote a loss or an error rate: minimised."""

HIGHER_IS_BETTER = frozenset(
    {
        "accuracy",
        "acc",
        "f1",
        "fbeta",
        "precision",
        "recall",
        "auc",
        "auroc",
        "auprc",
        "ap",
        "map",
        "mrr",
        "ndcg",
        "hit",
        "hits",
        "bleu",
        "sacrebleu",
        "rouge",
        "meteor",
        "chrf",
        "bertscore",
        "exact_match",
        "em",
        "iou",
        "miou",
        "dice",
        "r2",
        "pearson",
        "pearsonr",
        "spearman",
        "spearmanr",
        "mcc",
        "matthews_correlation",
        "kappa",
        "accuracies",
        "score",
    }
)
"""Name components that denote a score: maximised."""

_SPLIT = re.compile(r"[_\-./@:\s]+")


def _components(name: str) -> list[str]:
    """``name`` lower-cased and cut at ``_ - . / @ :`` and spaces."""
    return [p for p in _SPLIT.split(name.lower()) if p]


def name_mode(name: str) -> Literal["min", "max"] | None:
    """The mode the NAME alone implies: ``"min"`` for a loss or an error rate, ``"max"`` for a score.

    Whole components only (split at ``_ - . / @ :``): ``eval_mae`` and ``eval_test_wer`` are
    minimised, ``eval_terror`` and ``eval_errand`` are not (no component is an error word);
    a component ending in ``loss`` (``valloss``) is a loss, as the Trainer's own default rule
    has it; ``rouge1``/``rougeLsum``/``bleu4`` count as ``rouge``/``bleu``; two adjacent
    components also match (``exact_match``, ``cross_entropy``). A name with both kinds of
    words (``eval_acc_loss``) or with neither returns ``None``.
    """
    parts = _components(name)
    words = set(parts) | {p.rstrip("0123456789") for p in parts} | {f"{a}_{b}" for a, b in pairwise(parts)}
    lower = bool(words & LOWER_IS_BETTER) or any(p.endswith("loss") for p in parts)
    higher = bool(words & HIGHER_IS_BETTER) or any(p.startswith("rouge") for p in parts)
    if lower == higher:
        return None
    return "min" if lower else "max"


def best_model_mode(name: str, args: Any) -> Literal["min", "max"] | None:
    """The mode of ``name`` when it is ``args.metric_for_best_model`` (both compared with ``eval_``), else ``None``.

    ``args.greater_is_better`` decides; when it is ``None`` the Trainer's own default applies
    (``TrainingArguments``: greater is better unless ``metric_for_best_model`` ends in ``loss``).
    """
    best = getattr(args, "metric_for_best_model", None) if args is not None else None
    if not isinstance(best, str) or not best or eval_key(best) != eval_key(name):
        return None
    greater = getattr(args, "greater_is_better", None)
    if greater is None:
        greater = not best.endswith("loss")
    return "max" if greater else "min"


def infer_mode(name: str, args: Any = None) -> Literal["min", "max"] | None:
    """Whether lower (``"min"``) or higher (``"max"``) is better for the metric ``name``, or ``None``.

    ``greater_is_better`` when ``name`` is ``args.metric_for_best_model`` (:func:`best_model_mode`),
    else what the name says (:func:`name_mode`). ``None``: the caller must ask the user for
    the mode (:func:`mode_problem`).
    """
    return best_model_mode(name, args) or name_mode(name)


def mode_problem(callback: str, names: Sequence[str], args: Any = None, *, fix: str) -> str:
    """The message for monitored ``names`` whose mode :func:`infer_mode` cannot tell; ``fix`` says how to pass it."""
    listed = ", ".join(repr(n) for n in names)
    best = getattr(args, "metric_for_best_model", None) if args is not None else None
    return (
        f"{callback}: cannot tell whether higher or lower is better for {listed}: "
        f"{'it is' if len(names) == 1 else 'they are'} not metric_for_best_model (which is {best!r}) and the name "
        "has no loss/error word (loss, error, err, wer, cer, perplexity, ppl, mse, mae, rmse...) or score word "
        f"(accuracy, acc, f1, precision, recall, auc, bleu, rouge, exact_match...). Pass the mode: {fix}"
    )


# ---- strategies ------------------------------------------------------------------------------------

_STRATEGY_DEFAULTS = {"eval": "no", "save": "steps", "logging": "steps"}


def strategy(args: Any, which: Literal["eval", "save", "logging"]) -> str:
    """``args.<which>_strategy`` as its plain string value (``"no"``, ``"steps"``, ``"epoch"``, ``"best"``).

    ``TrainingArguments`` holds the enums (``IntervalStrategy``/``SaveStrategy``) after
    ``__post_init__``, a copy or a plain namespace may hold strings; both give the same answer.
    A missing attribute gives the ``TrainingArguments`` default.
    """
    if which not in _STRATEGY_DEFAULTS:
        raise ValueError(f"strategy(args, {which!r}): which is one of {', '.join(map(repr, _STRATEGY_DEFAULTS))}")
    value = getattr(args, f"{which}_strategy", None)
    if value is None:
        return _STRATEGY_DEFAULTS[which]
    return str(getattr(value, "value", value))


def evaluates(args: Any) -> bool:
    """Whether ``args`` evaluates during training (``eval_strategy`` is not ``"no"``)."""
    return strategy(args, "eval") != "no"


# ---- values ----------------------------------------------------------------------------------------


def metric_value(metrics: Mapping[str, Any], key: str, *, callback: str, step: Any = None) -> float:
    """``metrics[key]`` as a ``float`` (NaN and inf included: they are numbers).

    Python and numpy numbers and 0-d arrays/tensors are accepted. Anything else (``None``, a
    string, a bool, an array of several values) is a :class:`ConfigurationError` naming the
    callback, the metric, the value, its type and the step. ``key`` must be in ``metrics``.
    """
    value = metrics[key]
    number: Any = value
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "item"):
        try:
            number = value.item() if tuple(shape) == () else None
        except Exception:  # pragma: no cover - an exotic array type
            number = None
    if isinstance(number, numbers.Real) and not isinstance(number, bool):
        return float(number)
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    raise ConfigurationError(
        f"{callback}: the evaluation metric {key!r} at step {step} is {shown} of type {type(value).__module__}."
        f"{type(value).__qualname__}, not a number. Make compute_metrics return one real number per metric "
        "(a float, an int, or a 0-d numpy array / tensor), or monitor another metric"
    )


# ---- evaluation rounds -------------------------------------------------------------------------------


def evaluation_prefix(metrics: Mapping[str, Any]) -> str | None:
    """The ``metric_key_prefix`` of one ``on_evaluate`` call (``eval``, ``eval_<name>``), from ``<prefix>_runtime``."""
    for key in metrics:
        if isinstance(key, str) and key.endswith("_runtime"):
            return key[: -len("_runtime")]
    return None


@dataclass
class Round:
    """One evaluation round: the ``on_evaluate`` calls of one evaluation, merged."""

    step: int
    metrics: dict[str, Any] = field(default_factory=dict)
    """Every metric reported in the round (later calls win on a shared key)."""
    prefixes: list[str] = field(default_factory=list)
    """The ``metric_key_prefix`` of each call, in order (``eval`` or ``eval_<dataset>``)."""
    complete: bool = False
    """Every expected dataset reported; ``False`` when the round was ended by a later event instead."""

    def missing(self, keys: Iterable[str]) -> list[str]:
        """The ``keys`` this round did not report."""
        return [k for k in keys if k not in self.metrics]


def missing_metrics_message(callback: str, missing: Sequence[str], round: Round, *, skip: str | None = None) -> str:
    """The strict-mode error for monitored ``missing`` metrics that ``round`` did not report.

    ``skip``: what ``strict=False`` does instead (for a callback with a ``strict`` option).
    """
    datasets = [p[len(EVAL_PREFIX) :] for p in round.prefixes if p.startswith(EVAL_PREFIX)]
    where = f" (eval datasets: {', '.join(datasets)})" if datasets else ""
    present = ", ".join(str(k) for k in round.metrics) or "(none)"
    fixes = "make compute_metrics return the metric" + (f", or pass strict=False to {skip}" if skip else "")
    return (
        f"{callback}: the monitored metric{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
        f"{'are' if len(missing) > 1 else 'is'} missing from the evaluation at step "
        f"{round.step}{where}. Metrics present: {present}. Monitor one of these (compute_metrics results are "
        f"prefixed with 'eval_', or 'eval_<dataset>_' when eval_dataset is a dict), {fixes}"
    )


class EvaluationRound:
    """Groups ``on_evaluate`` calls into rounds and says when a round is complete.

    With ``eval_dataset`` a dict the Trainer evaluates each dataset in turn at the same step,
    one ``on_evaluate`` per dataset with prefix ``eval_<name>``. Call :meth:`begin` at train
    begin (it reads the dataset names from the running Trainer), :meth:`add` in
    ``on_evaluate`` and :meth:`close` in the events that follow an evaluation (``on_save``,
    ``on_step_begin``, ``on_epoch_end``, ``on_train_end``); each returns the rounds that ended:

    * a round is complete after the call of its last dataset (one dataset: after its one call);
    * when the datasets are not known (no Trainer found: a custom loop, a test driver), a call
      with the prefix ``eval`` completes its round, and a round of ``eval_<name>`` calls ends at
      the next :meth:`close`, at a call for another step, or when a dataset reports twice.
    """

    def __init__(self, datasets: Iterable[str] | None = None) -> None:
        self._expected: frozenset[str] | None = None
        self._pending: Round | None = None
        self.begin(datasets, discover=False)

    def begin(self, datasets: Iterable[str] | None = None, *, discover: bool = True) -> None:
        """Start a run. ``datasets``: the eval dataset names (``eval_dataset`` a dict), ``()`` for one
        dataset; ``None`` reads them from the running Trainer when ``discover`` (else unknown)."""
        if datasets is None and discover:
            datasets = running_eval_datasets()
        self._expected = None if datasets is None else frozenset(f"{EVAL_PREFIX}{d}" for d in datasets) or None
        if datasets is not None and not self._expected:
            self._expected = frozenset({"eval"})
        self._pending = None

    @property
    def expected(self) -> frozenset[str] | None:
        """The prefixes of one complete round, or ``None`` when unknown."""
        return self._expected

    @property
    def pending(self) -> Round | None:
        """The round still collecting calls, if any."""
        return self._pending

    def add(self, step: int, metrics: Mapping[str, Any]) -> list[Round]:
        """Record one ``on_evaluate`` call; returns the rounds that ended (oldest first)."""
        ended: list[Round] = []
        prefix = evaluation_prefix(metrics) or "eval"
        pending = self._pending
        if pending is not None and (pending.step != step or prefix in pending.prefixes):
            ended.append(pending)
            pending = None
        if pending is None:
            pending = Round(step=step)
        pending.metrics.update(metrics)
        pending.prefixes.append(prefix)
        expected = self._expected
        if prefix == "eval" or (expected is not None and expected <= set(pending.prefixes)):
            pending.complete = True
            ended.append(pending)
            self._pending = None
        else:
            self._pending = pending
        return ended

    def close(self) -> list[Round]:
        """End the pending round (an event that follows every evaluation); returns it, if any."""
        pending, self._pending = self._pending, None
        return [pending] if pending is not None else []


def running_eval_datasets() -> tuple[str, ...] | None:
    """The eval dataset names of the Trainer running this event: its ``eval_dataset`` dict's keys,
    ``()`` for a single eval dataset, ``None`` when no Trainer is found on the call stack."""
    from trainer_callbacks.core.compat import dispatching_trainer

    trainer = dispatching_trainer()
    if trainer is None:
        return None
    datasets = getattr(trainer, "eval_dataset", None)
    if isinstance(datasets, Mapping):
        return tuple(str(name) for name in datasets)
    return ()


__all__ = [
    "EVAL_PREFIX",
    "HIGHER_IS_BETTER",
    "LOWER_IS_BETTER",
    "EvaluationRound",
    "MetricName",
    "Round",
    "best_model_mode",
    "eval_key",
    "evaluates",
    "evaluation_prefix",
    "infer_mode",
    "metric_value",
    "missing_metrics_message",
    "mode_problem",
    "monitor_keys",
    "name_mode",
    "running_eval_datasets",
    "strategy",
]
