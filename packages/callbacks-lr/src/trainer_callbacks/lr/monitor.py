"""Which metric to watch, in which direction, and finding it in an evaluation's metrics.

The conventions themselves (the ``eval_`` prefix, which names are minimised or maximised) are
core's (``trainer_callbacks.core.eval_key`` / ``infer_mode``); this module applies them to
``ReduceLROnPlateau``'s single ``monitor`` and optional ``mode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainer_callbacks.core import eval_key, infer_mode, mode_problem


def resolve_mode(mode: str | None, monitor: str, args: Any) -> tuple[str | None, str | None]:
    """``(mode, None)`` or ``(None, problem)``.

    An explicit ``mode`` wins; ``mode=None`` takes core's ``infer_mode`` (``greater_is_better``
    when ``monitor`` is ``args.metric_for_best_model``, else what the name says).
    """
    if mode is not None:
        return mode, None
    inferred = infer_mode(eval_key(monitor), args)
    if inferred is not None:
        return inferred, None
    return None, mode_problem(
        "ReduceLROnPlateau",
        [monitor],
        args,
        fix="mode='max' or mode='min', or set metric_for_best_model to it together with greater_is_better",
    )


def find_metric(metrics: Mapping[str, Any], monitor: str) -> str | None:
    """The key of ``monitor`` in ``metrics``: exactly, or with the Trainer's ``eval_`` prefix."""
    if monitor in metrics:
        return monitor
    prefixed = eval_key(monitor)
    return prefixed if prefixed in metrics else None
