"""Which metric to watch, in which direction, and finding it in an evaluation's metrics."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_LOSS_LIKE = re.compile(r"loss|error|perplexity|ppl", re.IGNORECASE)


def is_loss_like(name: str) -> bool:
    """Names that are minimised by convention: ``*loss*``, ``*error*``, ``*perplexity*``, ``*ppl*``."""
    return bool(_LOSS_LIKE.search(name))


def with_eval_prefix(name: str) -> str:
    """``name`` as the Trainer names it in evaluation metrics (``accuracy`` -> ``eval_accuracy``)."""
    return name if name.startswith("eval_") else f"eval_{name}"


def resolve_mode(mode: str | None, monitor: str, args: Any) -> tuple[str | None, str | None]:
    """``(mode, None)`` or ``(None, problem)``.

    ``mode=None`` takes ``args.greater_is_better`` when ``monitor`` is ``args.metric_for_best_model``
    (both compared with the Trainer's ``eval_`` prefix), else ``"min"`` for loss-like names.
    """
    if mode is not None:
        return mode, None
    best_metric = getattr(args, "metric_for_best_model", None)
    if best_metric and with_eval_prefix(best_metric) == with_eval_prefix(monitor):
        greater = getattr(args, "greater_is_better", None)
        if greater is None:
            greater = not is_loss_like(best_metric)
        return ("max" if greater else "min"), None
    if is_loss_like(monitor):
        return "min", None
    return None, (
        f"mode=None cannot tell whether {monitor!r} should go down or up: it is not metric_for_best_model "
        f"(which is {best_metric!r}) and its name is not loss-like. Pass mode='max' (accuracy, F1...) or "
        "mode='min', or set metric_for_best_model to it together with greater_is_better"
    )


def find_metric(metrics: Mapping[str, Any], monitor: str) -> str | None:
    """The key of ``monitor`` in ``metrics``: exactly, or with the Trainer's ``eval_`` prefix."""
    if monitor in metrics:
        return monitor
    prefixed = with_eval_prefix(monitor)
    return prefixed if prefixed in metrics else None


def evaluation_prefix(metrics: Mapping[str, Any]) -> str | None:
    """The ``metric_key_prefix`` of an evaluation (``eval``, ``eval_<dataset>``), from its speed metrics."""
    for key in metrics:
        if key.endswith("_runtime"):
            return key[: -len("_runtime")]
    return None


def belongs_to(monitor: str, prefix: str | None) -> bool:
    """Whether ``monitor`` would be reported by the evaluation with ``prefix``.

    With several eval datasets the Trainer evaluates each with its own prefix
    (``eval_val_loss``, ``eval_test_loss``); a metric of another dataset is not missing.
    """
    if prefix is None:
        return True
    if prefix == "eval":
        return True
    return monitor.startswith(prefix + "_") or with_eval_prefix(monitor).startswith(prefix + "_")
