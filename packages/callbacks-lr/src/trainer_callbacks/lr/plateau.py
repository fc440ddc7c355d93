"""The plateau rule: torch's ``ReduceLROnPlateau.step`` as pure Python, one call per evaluation.

:class:`PlateauRule` keeps exactly torch's state (``best``, ``num_bad_epochs``,
``cooldown_counter``) and updates it with torch's algorithm::

    if better(value, best): best = value; num_bad_epochs = 0
    else:                   num_bad_epochs += 1
    if cooldown_counter > 0: cooldown_counter -= 1; num_bad_epochs = 0
    if num_bad_epochs > patience: REDUCE; cooldown_counter = cooldown; num_bad_epochs = 0

:func:`reduced_lrs` is torch's ``_reduce_lr``: each group's ``new = max(lr * factor, min_lr)``,
kept only when ``lr - new > eps``.

One deliberate difference: the ``rel`` threshold is sign-safe. torch tests
``value < best * (1 - threshold)`` (mode ``min``) and ``value > best * (1 + threshold)``
(mode ``max``). For a negative ``best`` both move the bar to the wrong side of ``best``:
with ``best = -1.0`` and ``threshold = 0.1``, torch's ``min`` mode counts ``-0.95`` (worse)
as an improvement and its ``max`` mode counts ``-1.05`` (worse) as one. Here the margin is
``threshold * |best|`` beyond ``best``: ``value < best * (1 + threshold)`` for a negative
``best`` in ``min`` mode, ``value > best * (1 - threshold)`` in ``max`` mode. For
``best >= 0`` the very expressions of torch are used, so non-negative metrics get torch's
decisions bit for bit. NaN is never an
improvement (it counts as a bad evaluation, as in torch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from trainer_callbacks.core import StateReader

Mode = Literal["min", "max"]
ThresholdMode = Literal["rel", "abs"]


def is_improvement(value: float, best: float, *, mode: Mode, threshold: float, threshold_mode: ThresholdMode) -> bool:
    """Whether ``value`` improves on ``best`` by more than the threshold (sign-safe ``rel``)."""
    if math.isnan(value):
        return False
    if math.isinf(best):
        # torch starts from best = +inf (min) / -inf (max): any finite value improves on it.
        return value < best if mode == "min" else value > best
    if threshold_mode == "abs":
        return value < best - threshold if mode == "min" else value > best + threshold
    # torch's own expressions for best >= 0 (bit-for-bit the same decisions); for a negative
    # best the factor moves to the other side so the bar stays beyond best, never before it.
    if mode == "min":
        return value < best * ((1.0 - threshold) if best >= 0 else (1.0 + threshold))
    return value > best * ((threshold + 1.0) if best >= 0 else (1.0 - threshold))


@dataclass
class PlateauRule:
    """torch's plateau bookkeeping; :meth:`step` returns whether to reduce now."""

    mode: Mode = "min"
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: ThresholdMode = "rel"
    cooldown: int = 0
    best: float = field(default=math.nan)
    num_bad_epochs: int = 0
    cooldown_counter: int = 0

    def __post_init__(self) -> None:
        if math.isnan(self.best):
            self.best = self.mode_worse

    @property
    def mode_worse(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def reset(self) -> None:
        self.best = self.mode_worse
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def is_better(self, value: float) -> bool:
        return is_improvement(
            value, self.best, mode=self.mode, threshold=self.threshold, threshold_mode=self.threshold_mode
        )

    def step(self, value: float) -> bool:
        """Account for one evaluation; ``True`` when the learning rate must be reduced now."""
        value = float(value)
        if self.is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
            return True
        return False

    # JSON-able: infinities are written as strings so json.dumps(allow_nan=False) readers cope too.
    def state_dict(self) -> dict[str, Any]:
        return {
            "best": _float_to_json(self.best),
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; a missing or mistyped field is a ``StateFieldError`` naming it."""
        saved = StateReader(state)
        best = saved.number("best")  # also "inf"/"-inf", as _float_to_json writes them
        num_bad_epochs = saved.integer("num_bad_epochs", minimum=0)
        cooldown_counter = saved.integer("cooldown_counter", minimum=0)
        self.best, self.num_bad_epochs, self.cooldown_counter = best, num_bad_epochs, cooldown_counter


def reduced_lrs(lrs: Sequence[float], factor: float, min_lrs: Sequence[float], eps: float) -> list[float]:
    """torch's ``_reduce_lr``: ``max(lr * factor, min_lr)`` per group, kept only if it drops by more than ``eps``."""
    out = []
    for lr, min_lr in zip(lrs, min_lrs, strict=True):
        old = float(lr)
        new = max(old * factor, min_lr)
        out.append(new if old - new > eps else old)
    return out


def _float_to_json(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
