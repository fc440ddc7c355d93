"""The options of :class:`~trainer_callbacks.lr.ReduceLROnPlateau`, declared once (docs, checks, saved form)."""

from __future__ import annotations

import dataclasses

from trainer_callbacks.core import (
    CallbackOptions,
    Choice,
    Either,
    Flag,
    Integer,
    ListOf,
    MetricName,
    OrNone,
    Real,
    option,
)

_LR = Real(minimum=0.0, meaning="a learning rate")


@dataclasses.dataclass(frozen=True)
class PlateauOptions(CallbackOptions):
    monitor: str = option(
        "eval_loss",
        "the evaluation metric to watch, as in the metrics of `on_evaluate` (`eval_loss`, `eval_accuracy`, "
        "`eval_<dataset>_loss` with several eval datasets); a name without `eval_` is also found",
        MetricName(),
    )
    mode: str | None = option(
        None,
        '`"min"` or `"max"`; `None`: from `greater_is_better` when `monitor` is `metric_for_best_model`, else '
        'from the name (`"min"` for a loss or an error rate, `"max"` for a score), else a configuration error at '
        "train begin that asks for the mode",
        OrNone(Choice(("min", "max"), "None derives it from greater_is_better / the name")),
    )
    factor: float = option(
        0.1,
        "multiplier of the peak LR at each reduction, in (0, 1)",
        Real(0.0, 1.0, open_min=True, open_max=True, meaning="the LR is multiplied by it, e.g. 0.1 or 0.5"),
    )
    patience: int = option(
        10,
        "evaluations without improvement that are tolerated; the LR is cut at the `patience + 1`-th (as torch): "
        "0 cuts at the first evaluation that does not improve",
        Integer(minimum=0, meaning="a number of evaluations"),
    )
    threshold: float = option(
        1e-4,
        "minimal change that counts as an improvement: `threshold * |best|` with `rel`, `threshold` with `abs`",
        Real(minimum=0.0),
    )
    threshold_mode: str = option(
        "rel",
        '`"rel"`: improve by `threshold * |best|` (sign-safe for negative metrics); `"abs"`: by `threshold`',
        Choice(("rel", "abs")),
    )
    cooldown: int = option(
        0,
        "evaluations after a reduction during which bad evaluations are not counted",
        Integer(minimum=0, meaning="a number of evaluations"),
    )
    min_lr: float | list[float] = option(
        0.0,
        "floor of each group's peak LR: one number for all groups, or one per param group (the length must equal "
        "the optimizer's param groups)",
        Either((_LR, ListOf(_LR, "one per param group"))),
    )
    eps: float = option(1e-8, "a reduction smaller than this (in LR units) is skipped, as in torch", Real(minimum=0.0))
    strict: bool = option(
        True,
        "a monitored metric missing from an evaluation round (every eval dataset's call at one step) is a "
        "`ConfigurationError` listing the metrics present, raised at the end of that round; `False`: warn once and "
        "skip such evaluations",
        Flag(),
    )
    min_steps: int = option(
        0,
        "evaluations before this global step are ignored entirely (no best, no bad count, no cooldown change)",
        Integer(minimum=0, meaning="a global step"),
    )
