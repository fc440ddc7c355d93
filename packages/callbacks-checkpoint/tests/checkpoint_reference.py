"""An independent model of the retention policy, written from the issue's rules (not from policy.py).

Counting instead of sorting for top-k, brute force for the Pareto front and milestones.
Shared by the policy property test and the stateful test.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from trainer_callbacks.checkpoint.policy import CheckpointInfo, RetentionPolicy


def finite(metrics: dict[str, Any], name: str) -> float | None:
    v = metrics.get(name)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def reference_kept(
    ckpts: list[CheckpointInfo], policy: RetentionPolicy, resume_step: int | None, keep: Any = None
) -> set[int]:
    """The issue's rules written out independently: counting instead of sorting, brute-force Pareto."""
    steps = sorted(c.step for c in ckpts)
    by = {c.step: c for c in ckpts}
    kept: set[int] = set()
    # newest keep_last by step: a step is kept if fewer than keep_last steps are larger
    kept |= {s for s in steps if sum(t > s for t in steps) < policy.keep_last}
    complete = [s for s in steps if by[s].complete]
    if complete:
        kept.add(max(complete))
    for name, mode in policy.monitor.items():
        have = {s: v for s in steps if (v := finite(dict(by[s].metrics), name)) is not None}
        for s, v in have.items():
            better = [t for t, w in have.items() if t != s and (w > v if mode == "max" else w < v)]
            tied_newer = [t for t, w in have.items() if t > s and w == v]
            if len(better) + len(tied_newer) < policy.keep_best:
                kept.add(s)
    if policy.keep_pareto and len(policy.monitor) > 1:
        sign = {n: (1 if m == "max" else -1) for n, m in policy.monitor.items()}
        pts = {}
        for s in steps:
            vals = [finite(dict(by[s].metrics), n) for n in policy.monitor]
            if None not in vals:
                pts[s] = [sign[n] * v for n, v in zip(policy.monitor, vals)]  # type: ignore[operator]
        for s, p in pts.items():
            dominated = any(
                all(a >= b for a, b in zip(q, p)) and any(a > b for a, b in zip(q, p)) for t, q in pts.items() if t != s
            )
            if not dominated:
                kept.add(s)
    if policy.keep_every_n_steps:
        n = policy.keep_every_n_steps
        for s in steps:
            # the first checkpoint at or after a multiple k*n (k >= 1) before the next multiple
            if s >= n and not any(t < s and t // n == s // n for t in steps):
                kept.add(s)
    kept |= {c.step for c in ckpts if c.is_best_model_checkpoint}
    # never delete on missing information: an evaluated checkpoint that lacks a metric a ranking rule needs
    ranks = policy.keep_best >= 1 or (policy.keep_pareto and len(policy.monitor) >= 2)
    if ranks:
        kept |= {s for s in steps if by[s].metrics and any(n not in by[s].metrics for n in policy.monitor)}
    if resume_step in by and not any(s > resume_step for s in complete):
        kept.add(resume_step)  # type: ignore[arg-type]
    if keep is not None:
        kept |= {s for s in steps if s not in kept and _keeps(keep, by[s])}
    return kept


def _keeps(keep: Any, info: CheckpointInfo) -> bool:
    """The user's answer; a ``keep`` that raises keeps the checkpoint (a bug in it must never cost one)."""
    try:
        return bool(keep(info))
    except Exception:
        return True


def keep_sevens(info: CheckpointInfo) -> bool:
    """A module-level ``keep`` callable (importable as ``checkpoint_reference:keep_sevens``)."""
    return info.step % 7 == 0


def replay(
    evals: dict[int, dict[str, float]],
    save_steps: list[int],
    policy: RetentionPolicy,
    best_metric: str,
    greater_is_better: bool,
    run_dir: str,
) -> set[int]:
    """What remains after a run that saves at ``save_steps``, pruning after each save with the reference policy.

    The Trainer's ``best_model_checkpoint`` is replayed too: it moves on a strict improvement of
    ``best_metric`` (the first of equal values stays best), as in ``Trainer._determine_best_metric``.
    """
    on_disk: set[int] = set()
    best_value: float | None = None
    best_step: int | None = None
    for step in save_steps:
        value = evals.get(step, {}).get(best_metric)
        if value is not None and (
            best_value is None or (value > best_value if greater_is_better else value < best_value)
        ):
            best_value, best_step = value, step
        on_disk.add(step)
        infos = [
            CheckpointInfo(
                path=Path(run_dir) / f"checkpoint-{s}",
                step=s,
                metrics=evals.get(s, {}),
                is_best_model_checkpoint=s == best_step,
            )
            for s in sorted(on_disk)
        ]
        on_disk = reference_kept(infos, policy, None)
    return on_disk
