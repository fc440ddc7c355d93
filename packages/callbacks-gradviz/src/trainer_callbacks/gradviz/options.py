"""The options of :class:`~trainer_callbacks.gradviz.GradNormLogger`, declared once (docs, checks, saved form)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from trainer_callbacks.core import CallbackOptions, Choice, Flag, Integer, OrNone, Real, option

NONFINITE_CHOICES = ("warn", "raise", "ignore")


@dataclasses.dataclass(frozen=True)
class _NormType(Real):
    """A number >= 0, ``inf``, or the text ``"inf"`` (how an infinite norm is saved in checkpoints)."""

    def __call__(self, value: Any) -> float:
        if isinstance(value, str) and value == "inf":
            return math.inf
        return super().__call__(value)


def _group_by(value: Any) -> Any:
    from trainer_callbacks.gradviz.callback import _resolve_group_by

    return _resolve_group_by(value)[0]


def _saved_group_by(stored: Any, given: Any) -> str:
    from trainer_callbacks.gradviz.callback import _resolve_group_by

    return _resolve_group_by(given)[1]


def _include(value: Any) -> list[str] | None:
    from trainer_callbacks.gradviz.callback import _patterns

    return _patterns(value, "include")


def _exclude(value: Any) -> list[str] | None:
    from trainer_callbacks.gradviz.callback import _patterns

    return _patterns(value, "exclude")


@dataclasses.dataclass(frozen=True)
class GradNormOptions(CallbackOptions):
    every_n_steps: int | None = option(
        None,
        "`None`: measure exactly on the Trainer's logging steps (`logging_steps`, fractional `logging_steps`, "
        '`logging_first_step`, `logging_strategy="epoch"`); N: every N optimizer steps',
        OrNone(Integer(minimum=1, meaning="optimizer steps between measurements")),
    )
    group_by: str | Callable[[str], str] = option(
        "layer",
        '`"layer"`: the blocks found from the module tree (`model.layers.3`, `bert.encoder.layer.3`, `h.3`) and '
        "the parts outside them (`bert.embeddings`, `model.norm`, `lm_head`), without wrapper prefixes (see "
        '"Groups" in the README); `"module"`: the module owning each parameter; `"parameter"`; or a module-level '
        'callable `name -> group` (also accepted as, and saved in checkpoints as, a `"package.module:function"` '
        "string; a lambda cannot be saved and is refused)",
        _group_by,
        save=_saved_group_by,
    )
    norm_type: float = option(
        2.0,
        "p of the p-norm (2.0 like the Trainer's `grad_norm`; `float('inf')` for the max-norm)",
        _NormType(minimum=0.0, finite=False, meaning="p of the p-norm; float('inf') for the max-norm"),
        save=lambda stored, given: stored if math.isfinite(stored) else "inf",
    )
    include: list[str] | None = option(
        None,
        'fnmatch globs of parameter names to measure, e.g. `["bert.encoder.*"]`; `None` includes all',
        _include,
    )
    exclude: list[str] | None = option(
        None, 'fnmatch globs of parameter names to leave out, e.g. `["*.bias"]`', _exclude
    )
    log_param_norm: bool = option(
        False, "also log `param_norm/<group>`: the norm of the weights before the step", Flag()
    )
    log_update_ratio: bool = option(
        False,
        "also log `update_ratio/<group>` = ||w_after - w_before|| / ||w_before|| of the optimizer step (the effective "
        "step size), on measured steps only; the weights before the step are copied to host memory (reused pinned "
        "buffers) and compared in 64 MiB chunks, so the extra accelerator memory is one chunk (weights on the CPU: "
        "one temporary copy of them)",
        Flag(),
    )
    histogram: bool = option(
        False,
        "also write a TensorBoard histogram `grad_norm_groups` of the per-group norms (not per element)",
        Flag(),
    )
    on_nonfinite: str = option(
        "warn",
        '`"warn"`: on measured steps, a `NonFiniteGradientWarning` naming the groups with NaN/inf gradients and the '
        'step, and `grad_nonfinite/<group>` = 1 (free); `"raise"`: on every step, `NonFiniteGradientError` '
        "(attributes `.step`, `.groups`) before the optimizer step, for one fused pass over the gradients and one "
        "host sync per step (about 3.5% of a step of a 4-layer BERT on CPU, docs/benchmarks.md); "
        '`"ignore"`: no check. Under fp16 loss scaling an overflow is normal: the scaler skips the step, logged as '
        "`grad_norm/skipped` = 1",
        Choice(NONFINITE_CHOICES),
    )
