"""What plugins hand ``trainer-callbacks plot`` through the plot hooks, and a tick helper for their figures.

The plot itself (``curves.png``, the plugins' own figures) is drawn by the app, the
``trainer-callbacks-app`` distribution (``trainer_callbacks.app.plotting``); these types are part
of the plugin contract so that a plugin's ``plot_events`` / ``plot_panels`` hooks need only core.
No matplotlib import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PlotEvent:
    """A moment to mark on the curves: a vertical line at ``step`` labelled ``label``."""

    step: int
    label: str
    kind: str = "event"
    """Plugin-defined category (``early_stop``, ``lr_reduction``, ``prune``...); one colour per kind."""


@dataclass(frozen=True)
class PlotPanel:
    """A panel a plugin adds to ``curves.png`` (from its ``plot_panels`` hook): ``log_history`` keys over the step.

    Each key of ``keys`` found in ``log_history`` is one line (entries whose value is not a number
    are skipped); a panel none of whose keys was logged is left out. The plot events are marked
    on it like on the other panels.
    """

    keys: tuple[str, ...]
    title: str
    ylabel: str = ""
    log_scale: bool = False
    """A logarithmic y axis (for values spanning decades, such as norms)."""

    def __post_init__(self) -> None:
        keys = (self.keys,) if isinstance(self.keys, str) else tuple(self.keys)
        if not keys or not all(isinstance(key, str) and key for key in keys):
            raise ValueError(f"PlotPanel keys must be non-empty log_history key strings, got {self.keys!r}")
        object.__setattr__(self, "keys", keys)


def step_ticks(steps: Sequence[int], max_labels: int = 20) -> tuple[list[int], list[str]]:
    """Ticks for an axis whose cells are ``steps`` (a heatmap's columns): ``(indices, labels)``.

    Every step is labelled when there are at most ``max_labels``; else every k-th one from the
    first (k the smallest stride that fits) and the last, so labels are evenly spaced and no step
    between two labels is left out unevenly. Plugins drawing step-indexed figures use it
    (gradviz's heatmap).
    """
    if max_labels < 2:
        raise ValueError(f"max_labels must be at least 2, got {max_labels}")
    count = len(steps)
    if count == 0:
        return [], []
    stride = max(1, math.ceil((count - 1) / (max_labels - 1))) if count > max_labels else 1
    indices = list(range(0, count, stride))
    if indices[-1] != count - 1:
        if count - 1 - indices[-1] < stride / 2 and len(indices) > 1:
            indices.pop()  # too close to the last step: keep the last one instead
        indices.append(count - 1)
    return indices, [str(steps[i]) for i in indices]
