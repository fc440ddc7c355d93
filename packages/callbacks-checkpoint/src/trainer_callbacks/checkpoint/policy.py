"""The retention policy: which checkpoints to keep. A pure function, no file system access.

:func:`decide` takes the candidate checkpoints (what :mod:`.scan` found, with their metrics)
and the settings, and returns the steps to keep (each with the rules that keep it) and the
steps to delete. Kept is the UNION of:

* ``last``: the newest ``keep_last`` checkpoints by global step;
* ``newest_complete``: the newest *complete* checkpoint (what a resume needs), always;
* ``best:<metric>``: for each monitored metric, the ``keep_best`` best checkpoints that have
  a finite value for it (ties: the newer checkpoint wins);
* ``pareto``: with ``keep_pareto`` and several metrics, every checkpoint no other
  checkpoint dominates (at least as good on every metric, better on one), among those
  with finite values for all monitored metrics;
* ``milestone``: with ``keep_every_n_steps=n``, for each k >= 1 the first checkpoint whose
  step lies in ``[k*n, (k+1)*n)`` (exactly the multiples of n when ``save_steps`` divides n);
* ``best_model_checkpoint``: the Trainer's ``state.best_model_checkpoint``;
* ``resume``: the checkpoint this run resumed from, until a newer complete one exists;
* ``unranked``: a checkpoint whose evaluation did not report a metric the ranking rules need
  (``best:*`` with ``keep_best > 0``, ``pareto``): its rank cannot be computed, and the policy
  never deletes on missing information;
* ``keep``: whatever the user's ``keep`` callable says to keep (it is asked only about the
  checkpoints the rules above would delete; if it raises, the checkpoint is kept).

Checkpoints without any evaluation metrics (no evaluation at their step) are never "best";
only the other rules can keep them. A NaN or infinite value is reported information: such a
checkpoint is ranked last, not kept as unranked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from trainer_callbacks.core import ConfigurationError, eval_key, infer_mode, mode_problem, monitor_keys

Mode = Literal["min", "max"]
MODES: tuple[str, ...] = ("min", "max")


@dataclass(frozen=True)
class CheckpointInfo:
    """What the ``keep`` callable receives: one candidate checkpoint.

    Attributes:
        path: the checkpoint folder (``<run dir>/checkpoint-<step>``).
        step: the global step in its name.
        metrics: the evaluation logged at that step (``eval_*`` keys), empty if none.
        complete: ``trainer_state.json`` and the model weights are present.
        is_best_model_checkpoint: it is the Trainer's ``state.best_model_checkpoint``.
        is_resume_point: training resumed from it in this run.
        kept_by: the rules that already keep it (empty for the checkpoints ``keep`` is asked about).
    """

    path: Path
    step: int
    metrics: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    complete: bool = True
    is_best_model_checkpoint: bool = False
    is_resume_point: bool = False
    kept_by: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RetentionPolicy:
    """The settings of :func:`decide`, with ``monitor`` already resolved to ``{metric: mode}``."""

    keep_last: int = 2
    keep_best: int = 1
    monitor: Mapping[str, Mode] = field(default_factory=dict)
    keep_pareto: bool = False
    keep_every_n_steps: int | None = None


@dataclass(frozen=True)
class Decision:
    """The answer of :func:`decide`."""

    kept: Mapping[int, frozenset[str]]
    """Step -> the rules that keep it."""
    deleted: tuple[int, ...]
    """Steps to delete, oldest first."""
    keep_errors: tuple[tuple[int, str], ...] = ()
    """``(step, error)`` for each call of the ``keep`` callable that raised (those are kept)."""


KeepFn = Callable[[CheckpointInfo], Any]


def metric_value(metrics: Mapping[str, Any], name: str) -> float | None:
    """``metrics[name]`` as a finite float, else ``None`` (missing, NaN, inf, not a number)."""
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _better_key(mode: Mode) -> Callable[[tuple[float, int]], tuple[float, int]]:
    # Sort descending by this key: better value first, then the newer (larger step).
    if mode == "max":
        return lambda vs: (vs[0], vs[1])
    return lambda vs: (-vs[0], vs[1])


def top_k(candidates: Sequence[CheckpointInfo], metric: str, mode: Mode, k: int) -> list[int]:
    """Steps of the ``k`` best candidates by ``metric`` (ties: newer wins); candidates without it are skipped."""
    if k <= 0:
        return []
    scored = [(v, c.step) for c in candidates if (v := metric_value(c.metrics, metric)) is not None]
    scored.sort(key=_better_key(mode), reverse=True)
    return [step for _, step in scored[:k]]


def ranking_metrics(policy: RetentionPolicy) -> list[str]:
    """The monitored metrics some rule ranks by (``best:*`` when ``keep_best > 0``; ``pareto``)."""
    if policy.keep_best > 0 or (policy.keep_pareto and len(policy.monitor) > 1):
        return list(policy.monitor)
    return []


def unranked(candidate: CheckpointInfo, policy: RetentionPolicy) -> list[str]:
    """The ranking metrics ``candidate``'s evaluation did not report (empty when it had no evaluation)."""
    if not candidate.metrics:
        return []
    return [name for name in ranking_metrics(policy) if name not in candidate.metrics]


def pareto_front(candidates: Sequence[CheckpointInfo], monitor: Mapping[str, Mode]) -> list[int]:
    """Steps of the candidates no other candidate dominates, among those with every monitored metric."""
    names = list(monitor)
    points: list[tuple[int, tuple[float, ...]]] = []
    for c in candidates:
        values = [metric_value(c.metrics, n) for n in names]
        present = [v for v in values if v is not None]
        if len(present) == len(names):
            # Orient every metric so that larger is better.
            points.append((c.step, tuple(v if monitor[n] == "max" else -v for n, v in zip(names, present))))

    def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [s for s, p in points if not any(dominates(q, p) for _, q in points)]


def milestones(steps: Sequence[int], every: int) -> list[int]:
    """For each k >= 1, the smallest step in ``[k*every, (k+1)*every)``."""
    first: dict[int, int] = {}
    for step in steps:
        window = step // every
        if window >= 1 and (window not in first or step < first[window]):
            first[window] = step
    return sorted(first.values())


def decide(
    candidates: Sequence[CheckpointInfo],
    policy: RetentionPolicy,
    *,
    resume_step: int | None = None,
    keep: KeepFn | None = None,
) -> Decision:
    """Which candidates to keep and which to delete (see the module docstring for the rules).

    ``candidates`` must have distinct steps. ``resume_step`` is the step of the checkpoint this
    run resumed from (if it is among the candidates). Nothing but ``keep`` is called.
    """
    by_step = {c.step: c for c in candidates}
    if len(by_step) != len(candidates):
        raise ValueError("decide: candidates must have distinct steps")
    steps = sorted(by_step)
    reasons: dict[int, set[str]] = {s: set() for s in steps}

    for s in steps[-policy.keep_last :] if policy.keep_last > 0 else []:
        reasons[s].add("last")
    complete = [s for s in steps if by_step[s].complete]
    if complete:
        reasons[complete[-1]].add("newest_complete")
    for name, mode in policy.monitor.items():
        for s in top_k(candidates, name, mode, policy.keep_best):
            reasons[s].add(f"best:{name}")
    if policy.keep_pareto and len(policy.monitor) > 1:
        for s in pareto_front(candidates, policy.monitor):
            reasons[s].add("pareto")
    if policy.keep_every_n_steps:
        for s in milestones(steps, policy.keep_every_n_steps):
            reasons[s].add("milestone")
    for c in candidates:
        if c.is_best_model_checkpoint:
            reasons[c.step].add("best_model_checkpoint")
    if resume_step is not None and resume_step in by_step and not any(s > resume_step for s in complete):
        reasons[resume_step].add("resume")
    for c in candidates:
        if unranked(c, policy):
            reasons[c.step].add("unranked")

    errors: list[tuple[int, str]] = []
    if keep is not None:
        for s in steps:
            if reasons[s]:
                continue
            info = replace(by_step[s], is_resume_point=by_step[s].is_resume_point or s == resume_step)
            try:
                wanted = bool(keep(info))
            except Exception as exc:  # a bug in the user's callable must never cost a checkpoint
                errors.append((s, f"{type(exc).__name__}: {exc}"))
                wanted = True
            if wanted:
                reasons[s].add("keep")

    kept = {s: frozenset(r) for s, r in reasons.items() if r}
    deleted = tuple(s for s in steps if not reasons[s])
    return Decision(kept=MappingProxyType(kept), deleted=deleted, keep_errors=tuple(errors))


# ---- the options, checked at construction and resolved at run time -----------------------------


def normalize_monitor(monitor: str | Mapping[str, str] | None) -> str | dict[str, str] | None:
    """Check ``monitor`` as given to the constructor; raise :class:`ConfigurationError` if it is malformed.

    Names must be non-blank and distinct once the Trainer's ``eval_`` prefix is added
    (``{"loss": "min", "eval_loss": "max"}`` names one metric twice).
    """
    if monitor is None:
        return None
    if isinstance(monitor, str):
        monitor_keys([monitor], callback="CheckpointPruner")
        return monitor
    if not isinstance(monitor, Mapping) or not monitor:
        raise ConfigurationError(
            f"CheckpointPruner(monitor={monitor!r}): pass None (metric_for_best_model), a metric name, "
            "or a non-empty mapping such as {'eval_loss': 'min', 'eval_f1': 'max'}"
        )
    monitor_keys(monitor, callback="CheckpointPruner")
    out: dict[str, str] = {}
    for name, mode in monitor.items():
        if mode not in MODES:
            raise ConfigurationError(
                f"CheckpointPruner(monitor={{{name!r}: {mode!r}}}): the mode must be 'min' or 'max'"
            )
        out[name] = mode
    return out


def resolve_monitor(
    monitor: str | Mapping[str, str] | None,
    metric_for_best_model: str | None,
    greater_is_better: bool | None,
) -> dict[str, Mode]:
    """``monitor`` as ``{eval key: mode}`` for this run's ``TrainingArguments``.

    ``None`` means ``metric_for_best_model`` with ``greater_is_better``, exactly as the Trainer
    ranks it (empty when that is unset). A bare name takes core's ``infer_mode``:
    ``greater_is_better`` when it is ``metric_for_best_model``, else what the name says (a loss
    or error rate is minimised, a score maximised); a name that says neither is a
    :class:`ConfigurationError` asking for the mode. Names get the ``eval_`` prefix.
    """
    args = _BestModelArgs(metric_for_best_model, greater_is_better)
    if monitor is None:
        if not metric_for_best_model:
            return {}
        key = eval_key(metric_for_best_model)
        return {key: infer_mode(key, args) or "max"}  # the Trainer's own default when nothing tells
    if isinstance(monitor, str):
        key = eval_key(monitor.strip())
        mode = infer_mode(key, args)
        if mode is None:
            raise ConfigurationError(
                mode_problem(
                    "CheckpointPruner",
                    [key],
                    args,
                    fix=f"monitor={{{key!r}: 'max'}} (or 'min'), or set metric_for_best_model to it together with "
                    "greater_is_better",
                )
            )
        return {key: mode}
    return {eval_key(name.strip()): mode for name, mode in monitor.items()}  # type: ignore[misc]


@dataclass(frozen=True)
class _BestModelArgs:
    """The two ``TrainingArguments`` fields :func:`trainer_callbacks.core.infer_mode` reads."""

    metric_for_best_model: str | None
    greater_is_better: bool | None


def monitor_size(monitor: str | Mapping[str, str] | None) -> int:
    """How many metrics ``monitor`` names (``None`` names one: ``metric_for_best_model``)."""
    return len(monitor) if isinstance(monitor, Mapping) else 1
