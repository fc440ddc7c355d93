"""Reference rules, written here from each callback's documented rule and not from its code.

The integration tests feed them what the Trainer itself logged (``state.log_history``) and
compare their answer with what happened: the step training stopped at, the learning rates
the Trainer logged, and the checkpoint folders left on disk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Keys of the Trainer's own end-of-train summary entry; it carries a ``step`` too.
_SUMMARY_KEYS = ("train_runtime", "train_loss")


def evaluations(log_history: Iterable[Mapping[str, Any]], metric: str) -> list[tuple[int, float]]:
    """``(step, value)`` of every Trainer evaluation entry that holds ``metric``, in order."""
    return [(int(entry["step"]), float(entry[metric])) for entry in log_history if metric in entry]


def training_logs(log_history: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The Trainer's per-step training log entries (the ones with ``loss`` and ``learning_rate``)."""
    return [
        entry
        for entry in log_history
        if "learning_rate" in entry and "loss" in entry and not any(k in entry for k in _SUMMARY_KEYS)
    ]


def _improves(value: float, best: float | None, mode: str, threshold: float) -> bool:
    """Absolute-threshold improvement: ``v < best - t`` (min) or ``v > best + t`` (max); the first value improves."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - threshold if mode == "min" else value > best + threshold


def early_stop_step(evals: Sequence[tuple[int, float]], *, mode: str, patience: int, threshold: float) -> int | None:
    """The step of the evaluation at which one-metric early stopping stops (``None``: it never does).

    Per evaluation: improvement resets the wait, anything else adds one; the metric has stalled
    when the evaluation did not improve and the wait reached ``max(patience, 1)``.
    """
    best: float | None = None
    wait = 0
    for step, value in evals:
        if _improves(value, best, mode, threshold):
            best, wait = value, 0
            continue
        wait += 1
        if wait >= max(patience, 1):
            return step
    return None


def plateau_cut_steps(
    evals: Sequence[tuple[int, float]], *, mode: str, patience: int, threshold: float, cooldown: int = 0
) -> list[int]:
    """Steps of the evaluations after which torch's ReduceLROnPlateau rule (absolute threshold) cuts the LR.

    better -> best, bad = 0, else bad += 1; during cooldown bad = 0; bad > patience -> cut,
    cooldown restarts, bad = 0.
    """
    best: float | None = None
    bad = 0
    cooling = 0
    cuts = []
    for step, value in evals:
        if _improves(value, best, mode, threshold):
            best, bad = value, 0
        else:
            bad += 1
        if cooling > 0:
            cooling -= 1
            bad = 0
        if bad > patience:
            cuts.append(step)
            cooling = cooldown
            bad = 0
    return cuts


def linear_schedule(k: int, *, warmup_steps: int, max_steps: int) -> float:
    """transformers' ``linear`` schedule multiplier after ``k`` scheduler steps: warmup 0 -> 1, then linear to 0."""
    if k < warmup_steps:
        return k / max(1, warmup_steps)
    return max(0.0, (max_steps - k) / max(1, max_steps - warmup_steps))


def expected_learning_rate(
    step: int, *, peak: float, warmup_steps: int, max_steps: int, factor: float, cut_steps: Sequence[int]
) -> float:
    """The LR the optimizer step ``step`` runs at: the schedule after ``step - 1`` scheduler steps, times
    ``factor`` for every cut decided at an evaluation before ``step`` (an evaluation at step e runs after
    optimizer step e, so its cut first shows at step e + 1)."""
    cuts = sum(1 for cut in cut_steps if cut < step)
    return peak * linear_schedule(step - 1, warmup_steps=warmup_steps, max_steps=max_steps) * factor**cuts


def best_model_step(evals: Sequence[tuple[int, float]], *, mode: str) -> int | None:
    """The step the Trainer records as its best model: the first evaluation of the best value (a tie is no gain)."""
    best: tuple[int, float] | None = None
    for step, value in evals:
        if best is None or (value < best[1] if mode == "min" else value > best[1]):
            best = (step, value)
    return None if best is None else best[0]


def kept_checkpoints(
    saved_steps: Iterable[int],
    metrics_at: Mapping[int, Mapping[str, float]],
    monitors: Mapping[str, str],
    *,
    best_model_step: int | None = None,
) -> set[int]:
    """The steps ``CheckpointPruner(keep_last=1, keep_best=1, monitor=monitors)`` leaves, from the whole run.

    The newest saved checkpoint; for each monitored metric the best checkpoint that has it (ties:
    the newer); the Trainer's best model. With ``keep_last=1`` and ``keep_best=1`` pruning after each
    save leaves exactly this set: the best checkpoint is the newest when it is saved and stays the
    best of the survivors afterwards.
    """
    steps = sorted(set(saved_steps))
    kept = {steps[-1]} if steps else set()
    for metric, mode in monitors.items():
        scored = [(metrics_at[s][metric], s) for s in steps if metric in metrics_at.get(s, {})]
        scored = [(v, s) for v, s in scored if math.isfinite(v)]
        if not scored:
            continue
        sign = 1.0 if mode == "max" else -1.0
        kept.add(max(scored, key=lambda vs: (sign * vs[0], vs[1]))[1])
    if best_model_step is not None:
        kept.add(best_model_step)
    return kept


def group_norms_by_step(
    log_history: Iterable[Mapping[str, Any]], prefix: str = "grad_norm/"
) -> dict[int, dict[str, float]]:
    """``{step: {group: norm}}`` of every logged ``grad_norm/<group>`` value (gradviz's bookkeeping keys skipped)."""
    out: dict[int, dict[str, float]] = {}
    for entry in log_history:
        for key, value in entry.items():
            if key.startswith(prefix) and key != f"{prefix}skipped":
                out.setdefault(int(entry["step"]), {})[key[len(prefix) :]] = float(value)
    return out
