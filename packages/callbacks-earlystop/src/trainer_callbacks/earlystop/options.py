"""The options of :class:`~trainer_callbacks.earlystop.EarlyStopping`, declared once (docs, checks, saved form).

The per-value checks here are also what :mod:`.metric` applies to ``Metric(...)`` overrides and
to each entry of a per-metric mapping, so a value means the same wherever it is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from trainer_callbacks.core import CallbackOptions, Choice, Flag, Integer, OrNone, PerKey, Real, option
from trainer_callbacks.earlystop.rule import COMBINES, THRESHOLD_MODES

PATIENCE = Integer(
    minimum=0,
    meaning="a number of evaluations; 0 acts like 1: stop at the first evaluation that does not improve",
)
THRESHOLD = Real(
    minimum=0.0,
    meaning="the minimum change that counts as improvement; the direction comes from mode",
)
THRESHOLD_MODE = Choice(
    THRESHOLD_MODES, "'abs': improve by more than threshold; 'rel': by more than threshold * |best|"
)
VALUE = Real()
COMBINE = Choice(
    COMBINES,
    "'all': stop when every metric has stalled; 'any': when one has; 'pareto': when no evaluation improves the "
    "Pareto front for patience evaluations",
)
MIN_STEPS = Integer(minimum=0, meaning="a global step")


def _saved_monitor(stored: Any, given: Any) -> Any:
    from trainer_callbacks.earlystop.metric import monitor_to_json

    return monitor_to_json(given)


@dataclasses.dataclass(frozen=True)
class StopperOptions(CallbackOptions):
    monitor: str | Mapping[str, str] | list[Any] = option(
        "eval_loss",
        '`"eval_loss"`, `{"eval_loss": "min", "eval_accuracy": "max"}`, or a list of `Metric(...)` (or of tables '
        "of `Metric` fields). Names without `eval_` get it. A bare name takes its mode from `greater_is_better` "
        "when it is `metric_for_best_model`, else from its name (`min` for a loss or an error rate, `max` for a "
        "score), else a configuration error that asks for the mode",
        save=_saved_monitor,
    )
    patience: int | Mapping[str, int] = option(
        3,
        "evaluations without improvement before a metric counts as stalled (`0` acts like `1`); one number, or "
        "a mapping per metric",
        PerKey(PATIENCE),
    )
    threshold: float | Mapping[str, float] = option(
        0.0, "minimum change that counts as improvement (one number, or a mapping per metric)", PerKey(THRESHOLD)
    )
    threshold_mode: str | Mapping[str, str] = option(
        "abs",
        '`"abs"` (change > threshold) or `"rel"` (change > threshold * abs(best)); one, or a mapping per metric',
        PerKey(THRESHOLD_MODE),
    )
    combine: str = option(
        "all",
        '`"all"`: stop when every metric has stalled; `"any"`: when one has; `"pareto"`: when no evaluation\'s '
        "vector of values has been undominated for `patience` evaluations",
        COMBINE,
    )
    baseline: float | Mapping[str, float] | None = option(
        None, "value(s) that must be beaten to count as improvement", OrNone(PerKey(VALUE))
    )
    stopping_threshold: float | Mapping[str, float] | None = option(
        None, "value(s) at which the goal is reached: stop at once", OrNone(PerKey(VALUE))
    )
    divergence_threshold: float | Mapping[str, float] | None = option(
        None, "value(s) past which training is hopeless: stop at once", OrNone(PerKey(VALUE))
    )
    check_finite: bool = option(True, "NaN/inf in a monitored metric: stop at once", Flag())
    min_steps: int = option(0, "evaluations before this global step are ignored entirely", MIN_STEPS)
    strict: bool = option(
        True,
        "a monitored metric missing from an evaluation round (every eval dataset's call at one step) is an error "
        "listing the metrics present, raised at the end of that round; `False`: skip it for that evaluation "
        "(one warning)",
        Flag(),
    )
