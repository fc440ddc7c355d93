"""Where a simulated evaluation gets its metrics from.

``simulate(metrics=...)`` accepts:

* ``None``: ``{"eval_loss": 1 / (1 + i)}`` for the i-th evaluation (always improving);
* a callable ``(eval_index, global_step) -> dict``;
* a sequence of dicts, one per evaluation (after the last one, the last one repeats).

``eval_index`` counts the evaluations of the run so far as recorded in
``state.log_history`` (so a run resumed from a checkpoint goes on with the index where
the checkpoint left it). Keys get the ``eval_`` prefix unless they have it, like
``Trainer.evaluation_loop``; numpy and tensor scalars become Python numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

MetricsFn = Callable[[int, int], Mapping[str, Any]]
MetricsSource = MetricsFn | Sequence[Mapping[str, Any]] | None


def default_metrics(eval_index: int, global_step: int) -> dict[str, float]:
    """An always-improving ``eval_loss``."""
    return {"eval_loss": 1.0 / (1.0 + eval_index)}


def metric_function(metrics: MetricsSource) -> MetricsFn:
    """``metrics`` as a ``(eval_index, global_step) -> dict`` function."""
    if metrics is None:
        return default_metrics
    if callable(metrics):
        return metrics
    stream = [dict(m) for m in metrics]
    if not stream:
        raise ValueError("simulate(metrics=[]): give at least one metrics dict (one per evaluation)")

    def from_stream(eval_index: int, global_step: int) -> Mapping[str, Any]:
        return stream[min(eval_index, len(stream) - 1)]

    return from_stream


def as_eval_metrics(raw: Mapping[str, Any], prefix: str = "eval") -> dict[str, Any]:
    """Prefix and convert like ``Trainer.evaluation_loop`` (``denumpify_detensorize`` then ``eval_`` keys)."""
    from transformers.trainer_utils import denumpify_detensorize

    metrics = denumpify_detensorize(dict(raw))
    start = f"{prefix}_"
    return {(k if k.startswith(start) else start + k): v for k, v in metrics.items()}


def count_evaluations(log_history: Sequence[Mapping[str, Any]], prefix: str = "eval") -> int:
    """How many evaluations ``log_history`` holds (entries logged by ``evaluate``: they carry ``eval_runtime``)."""
    key = f"{prefix}_runtime"
    return sum(1 for entry in log_history if key in entry)
