"""Reading the reductions back from ``log_history`` (for ``plot_events`` and ``summarize_run``).

Pure Python: imported by the plugin module, which must not import torch or transformers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainer_callbacks.lr import names


@dataclass(frozen=True)
class Reduction:
    """One plateau reduction as logged."""

    step: int
    old_lrs: tuple[float, ...]
    new_lrs: tuple[float, ...]
    monitor: str | None
    plateau_evaluations: int | None

    @property
    def factor(self) -> float:
        """The multiplier applied to group 0 (``min_lr`` can make it larger than ``factor``)."""
        return self.new_lrs[0] / self.old_lrs[0] if self.old_lrs and self.old_lrs[0] else float("nan")


def _group_values(entry: Mapping[str, Any], prefix: str) -> tuple[float, ...]:
    values = {}
    for key, value in entry.items():
        if key.startswith(prefix):
            suffix = key[len(prefix) :]
            if suffix.isdigit():
                values[int(suffix)] = float(value)
    return tuple(values[i] for i in sorted(values))


def reductions(log_history: Iterable[Mapping[str, Any]]) -> list[Reduction]:
    """Every reduction in ``log_history``, in order."""
    out = []
    for entry in log_history:
        if names.new_lr(0) not in entry:
            continue
        monitor = next((k[len(names.wait("")) :] for k in entry if k.startswith(names.wait(""))), None)
        plateau = entry.get(names.PLATEAU_EVALUATIONS)
        out.append(
            Reduction(
                step=int(entry.get("step", 0)),
                old_lrs=_group_values(entry, names.old_lr(0)[:-1]),
                new_lrs=_group_values(entry, names.new_lr(0)[:-1]),
                monitor=monitor,
                plateau_evaluations=int(plateau) if plateau is not None else None,
            )
        )
    return out


def summary_lines(log_history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Human-readable lines, one per reduction, e.g.
    ``LR reduced x0.1 at step 300 (eval_loss plateaued 10 evaluations): 5e-05 -> 5e-06``."""
    found = reductions(log_history)
    watched = [e for e in log_history if names.SCALE in e]
    if not found:
        if not watched:
            return []
        return [f"LR never reduced ({len(watched)} evaluations watched, scale stays 1)"]
    lines = []
    for r in found:
        why = ""
        if r.monitor is not None and r.plateau_evaluations is not None:
            why = f" ({r.monitor} plateaued {r.plateau_evaluations} evaluations)"
        pairs = list(zip(r.old_lrs, r.new_lrs))
        if len(pairs) > 1 and len(set(pairs)) == 1:
            lrs = f"{pairs[0][0]:.3g} -> {pairs[0][1]:.3g} (all {len(pairs)} param groups)"
        else:
            lrs = ", ".join(f"{o:.3g} -> {n:.3g}" for o, n in pairs)
        lines.append(f"LR reduced x{r.factor:.3g} at step {r.step}{why}: {lrs}")
    final = watched[-1][names.SCALE] if watched else None
    if final is not None:
        lines.append(f"LR plateau scale at the end: {final:.3g} after {len(found)} reduction(s)")
    return lines
