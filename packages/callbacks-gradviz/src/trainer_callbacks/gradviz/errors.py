"""What gradviz raises and warns when gradients are not finite."""

from __future__ import annotations

from collections.abc import Sequence

from trainer_callbacks.core import TrainerCallbacksError


def describe(step: int, bad: Sequence[tuple[str, float]], total_groups: int, limit: int = 8) -> str:
    shown = ", ".join(f"{name} ({'nan' if value != value else value})" for name, value in bad[:limit])
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return (
        f"non-finite gradients at step {step} (before clipping) in {len(bad)} of {total_groups} groups: {shown}{more}"
    )


class NonFiniteGradientError(TrainerCallbacksError, FloatingPointError):
    """Raised by ``GradNormLogger(on_nonfinite="raise")``; ``.step`` and ``.groups`` name the offenders."""

    def __init__(self, step: int, groups: Sequence[str], message: str) -> None:
        self.step = step
        self.groups = list(groups)
        super().__init__(
            f"{message}. Lower the learning rate, check the data of this step, or use bf16 instead of fp16; "
            'GradNormLogger(on_nonfinite="warn") logs it and goes on.'
        )


class NonFiniteGradientWarning(RuntimeWarning):
    """Emitted once per step by ``GradNormLogger(on_nonfinite="warn")``."""
