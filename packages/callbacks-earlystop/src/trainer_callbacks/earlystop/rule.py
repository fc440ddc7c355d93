"""The early-stopping decision rule: a small pure-Python state machine.

Feed it one evaluation at a time (:meth:`EarlyStoppingRule.update`); it returns a
:class:`StopReason` when training should stop. It knows nothing about the Trainer, torch
or files, so it is tested on its own. The exact semantics (README, "The rule"):

On each evaluation at global step >= ``min_steps``, per monitored metric with value v:

1. ``check_finite`` and v is NaN/inf: stop, kind ``"nonfinite"``.
2. ``divergence_threshold`` d crossed (min: v > d, max: v < d): stop, kind ``"divergence"``.
3. ``stopping_threshold`` s reached (min: v <= s, max: v >= s): stop, kind ``"goal"``.
4. improvement: abs min ``v < best - t``, abs max ``v > best + t``; rel min
   ``v < best - |best|*t``, rel max ``v > best + |best|*t``. With no best yet the first value
   improves, unless a baseline is set: then best starts at the baseline. NaN never improves.
   On improvement best = v and wait = 0, else wait += 1. A metric has stalled when its latest
   evaluation did not improve and wait >= patience (so patience 0 acts like 1).
5. combine ``"any"``: stop when any metric has stalled; ``"all"``: when all have;
   ``"pareto"``: one shared wait that resets when the evaluation's vector is not dominated
   by any earlier evaluation (q dominates p when p improves on q, in the sense of 4, in no
   metric); stop when it reaches patience. Kind ``"patience"``.

Lines 1-3 win over 5, and among them the lower line wins. Line 4 runs at every evaluation,
the stopping one included, so ``best`` and the waits describe it. A metric absent from an
evaluation (only with ``strict=False``) keeps its state; with ``"pareto"`` such an
incomplete evaluation leaves the shared wait and the history unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from trainer_callbacks.core import StateReader

COMBINES = ("all", "any", "pareto")
MODES = ("min", "max")
THRESHOLD_MODES = ("abs", "rel")
STOP_KINDS = ("nonfinite", "divergence", "goal", "patience")


@dataclass(frozen=True)
class MetricRule:
    """One monitored metric with every setting resolved (no ``None`` for mode/patience/threshold)."""

    name: str
    mode: str = "min"
    patience: int = 3
    threshold: float = 0.0
    threshold_mode: str = "abs"
    baseline: float | None = None
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None

    def improves(self, value: float, best: float | None) -> bool:
        """Line 4: does ``value`` improve on ``best`` (``None``: nothing to beat)?"""
        if math.isnan(value):
            return False
        if best is None:
            return True
        margin = self.threshold if self.threshold_mode == "abs" else abs(best) * self.threshold
        if self.mode == "min":
            return value < best - margin
        return value > best + margin

    def diverged(self, value: float) -> bool:
        d = self.divergence_threshold
        if d is None:
            return False
        return value > d if self.mode == "min" else value < d

    def reached_goal(self, value: float) -> bool:
        s = self.stopping_threshold
        if s is None:
            return False
        return value <= s if self.mode == "min" else value >= s

    @property
    def effective_patience(self) -> int:
        return max(self.patience, 1)


class Best(NamedTuple):
    """The best value of a metric so far and the global step it was seen at.

    ``step`` is ``None`` while the value is the baseline (nothing has beaten it yet), and
    ``value`` is ``None`` before the first evaluation when there is no baseline.
    """

    value: float | None
    step: int | None


@dataclass
class MetricProgress:
    best: float | None = None
    best_step: int | None = None
    wait: int = 0
    improved: bool = False
    """Whether the latest evaluation of this metric improved."""


@dataclass(frozen=True)
class StopReason:
    """Why training stopped: ``kind`` (one of :data:`STOP_KINDS`), the metrics that caused it,
    the global step, and the monitored values of that evaluation."""

    kind: str
    metrics: tuple[str, ...]
    step: int
    values: dict[str, float]
    combine: str = "all"
    waits: dict[str, int] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    """The crossed ``stopping_threshold``/``divergence_threshold`` per metric (goal/divergence)."""

    @property
    def message(self) -> str:
        names = ", ".join(self.metrics)
        if self.kind == "nonfinite":
            got = ", ".join(f"{m}={self.values[m]}" for m in self.metrics)
            return f"non-finite {names} ({got})"
        if self.kind in ("divergence", "goal"):
            word = "divergence_threshold" if self.kind == "divergence" else "stopping_threshold"
            verb = "crossed" if self.kind == "divergence" else "reached"
            parts = [f"{m}={_fmt(self.values[m])} {verb} {word} {_fmt(self.thresholds[m])}" for m in self.metrics]
            return "; ".join(parts)
        waits = sorted({self.waits.get(m, 0) for m in self.metrics})
        span = "/".join(str(w) for w in waits)
        if self.combine == "pareto":
            return f"no Pareto improvement in {names} for {span} evaluations"
        if self.combine == "all":
            lead = "all of " if len(self.metrics) > 1 else ""
            return f"{lead}{names} stalled for {span} evaluations"
        return f"{names} stalled for {span} evaluations"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metrics": list(self.metrics),
            "step": self.step,
            "values": dict(self.values),
            "combine": self.combine,
            "waits": dict(self.waits),
            "thresholds": dict(self.thresholds),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | StateReader) -> StopReason:
        """Read back :meth:`to_dict`; a missing or mistyped field is a ``StateFieldError`` naming it."""
        saved = data if isinstance(data, StateReader) else StateReader(data)
        return cls(
            kind=saved.text("kind", choices=STOP_KINDS),
            metrics=tuple(saved.strings("metrics")),
            step=saved.integer("step", minimum=0),
            values=saved.number_table("values", {}),
            combine=saved.text("combine", "all", choices=COMBINES),
            waits=saved.number_table("waits", {}, integers=True),
            thresholds=saved.number_table("thresholds", {}),
        )


def _fmt(value: float) -> str:
    return f"{value:.6g}"


class EarlyStoppingRule:
    """The decision rule over several metrics; see the module docstring for the semantics.

    Args:
        metrics: the monitored metrics, resolved.
        combine: ``"all"``, ``"any"`` or ``"pareto"``.
        patience: the shared patience of ``"pareto"`` (per-metric patience is used otherwise).
        check_finite: stop on a NaN/inf value.
        min_steps: evaluations at a global step below this are ignored entirely.
    """

    def __init__(
        self,
        metrics: Sequence[MetricRule],
        *,
        combine: str = "all",
        patience: int = 3,
        check_finite: bool = True,
        min_steps: int = 0,
    ) -> None:
        if not metrics:
            raise ValueError("EarlyStoppingRule needs at least one metric")
        if combine not in COMBINES:
            raise ValueError(f"combine={combine!r}: use one of {', '.join(COMBINES)}")
        self.metrics = tuple(metrics)
        self.combine = combine
        self.patience = patience
        self.check_finite = check_finite
        self.min_steps = min_steps
        self.reset()

    # ---- state -----------------------------------------------------------------------
    def reset(self) -> None:
        self.progress: dict[str, MetricProgress] = {m.name: MetricProgress(best=m.baseline) for m in self.metrics}
        self.history: list[dict[str, float]] = []
        """Pareto: the value vectors of every counted evaluation."""
        self.shared_wait = 0
        self.evaluations = 0
        self.stop_reason: StopReason | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "progress": {
                name: {"best": p.best, "best_step": p.best_step, "wait": p.wait, "improved": p.improved}
                for name, p in self.progress.items()
            },
            "history": [dict(v) for v in self.history],
            "shared_wait": self.shared_wait,
            "evaluations": self.evaluations,
            "stop_reason": self.stop_reason.to_dict() if self.stop_reason is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (checked by :func:`read_state`: a bad field raises before any change)."""
        saved = read_state(state)
        self.reset()
        for name, progress in saved["progress"].items():
            if name in self.progress:
                self.progress[name] = progress
        self.history = saved["history"]
        self.shared_wait = saved["shared_wait"]
        self.evaluations = saved["evaluations"]
        self.stop_reason = saved["stop_reason"]

    # ---- views -------------------------------------------------------------------------
    @property
    def best(self) -> dict[str, Best]:
        return {name: Best(p.best, p.best_step) for name, p in self.progress.items()}

    @property
    def waits(self) -> dict[str, int]:
        return {name: p.wait for name, p in self.progress.items()}

    def stalled(self, metric: MetricRule) -> bool:
        p = self.progress[metric.name]
        return not p.improved and p.wait >= metric.effective_patience

    # ---- the rule ----------------------------------------------------------------------
    def dominates(self, earlier: Mapping[str, float | None], point: Mapping[str, float]) -> bool:
        """Whether ``earlier`` dominates ``point``: ``point`` improves on it in no metric.

        A ``None`` coordinate of ``earlier`` cannot be beaten (used for the baseline point).
        """
        return not any(
            earlier.get(m.name) is not None and m.improves(point[m.name], earlier[m.name]) for m in self.metrics
        )

    def update(self, step: int, values: Mapping[str, float]) -> StopReason | None:
        """Feed one evaluation; returns why to stop, or ``None`` to go on.

        ``values`` holds the monitored metrics of this evaluation (extra keys are ignored;
        a missing one keeps its state).
        """
        if step < self.min_steps:
            return None
        present = [m for m in self.metrics if m.name in values]
        if not present:
            return None
        vals = {m.name: float(values[m.name]) for m in present}
        self.evaluations += 1
        for m in present:
            p = self.progress[m.name]
            if m.improves(vals[m.name], p.best):
                p.best, p.best_step, p.wait, p.improved = vals[m.name], step, 0, True
            else:
                p.wait += 1
                p.improved = False
        if self.combine == "pareto" and len(present) == len(self.metrics):
            earlier: list[Mapping[str, float | None]] = list(self.history)
            baselines = {m.name: m.baseline for m in self.metrics}
            if any(b is not None for b in baselines.values()):
                earlier.insert(0, baselines)
            if any(self.dominates(q, vals) for q in earlier):
                self.shared_wait += 1
            else:
                self.shared_wait = 0
            self.history.append(dict(vals))

        reason = self._immediate(step, present, vals)
        if reason is None:
            reason = self._patience(step, vals)
        if reason is not None and self.stop_reason is None:
            self.stop_reason = reason
        return reason

    def _immediate(self, step: int, present: Sequence[MetricRule], vals: Mapping[str, float]) -> StopReason | None:
        checks = (
            ("nonfinite", lambda m, v: self.check_finite and not math.isfinite(v), None),
            ("divergence", MetricRule.diverged, "divergence_threshold"),
            ("goal", MetricRule.reached_goal, "stopping_threshold"),
        )
        for kind, test, attr in checks:
            hits = [m for m in present if test(m, vals[m.name])]
            if hits:
                thresholds = {m.name: float(getattr(m, attr)) for m in hits} if attr else {}
                return StopReason(
                    kind=kind,
                    metrics=tuple(m.name for m in hits),
                    step=step,
                    values=dict(vals),
                    combine=self.combine,
                    waits=self.waits,
                    thresholds=thresholds,
                )
        return None

    def _patience(self, step: int, vals: Mapping[str, float]) -> StopReason | None:
        if self.combine == "pareto":
            if self.shared_wait < max(self.patience, 1):
                return None
            names = tuple(m.name for m in self.metrics)
            waits = dict.fromkeys(names, self.shared_wait)
        else:
            stalled = [m for m in self.metrics if self.stalled(m)]
            if not stalled or (self.combine == "all" and len(stalled) < len(self.metrics)):
                return None
            names = tuple(m.name for m in stalled)
            waits = {name: self.progress[name].wait for name in names}
        return StopReason(
            kind="patience", metrics=names, step=step, values=dict(vals), combine=self.combine, waits=waits
        )


def read_state(state: Any) -> dict[str, Any]:
    """The fields of a saved :meth:`EarlyStoppingRule.state_dict`, typed; a ``StateFieldError`` names a bad one.

    Every field ``state_dict`` writes must be there: a half-written entry would otherwise
    resume with a wait of 0 or no stop reason, and stop at the wrong evaluation.
    """
    saved = StateReader(state)
    progress: dict[str, MetricProgress] = {}
    table = saved.table("progress", none=True)
    for name in table.names() if table is not None else ():
        entry = table.table(name)
        progress[name] = MetricProgress(
            best=entry.number("best", none=True),
            best_step=entry.integer("best_step", none=True, minimum=0),
            wait=entry.integer("wait", minimum=0),
            improved=entry.boolean("improved"),
        )
    history = []
    for i, point in enumerate(saved.items("history")):
        values = saved.element("history", i, point)
        history.append({key: values.number(key) for key in values.names()})
    reason = saved.table("stop_reason", none=True)
    return {
        "progress": progress,
        "history": history,
        "shared_wait": saved.integer("shared_wait", minimum=0),
        "evaluations": saved.integer("evaluations", minimum=0),
        "stop_reason": StopReason.from_dict(reason) if reason is not None else None,
    }
