"""The names this package logs (issue 10, point 5), in one place for the callback and the hooks."""

from __future__ import annotations

PREFIX = "lr_plateau"
SCALE = f"{PREFIX}/scale"
"""Accumulated plateau multiplier of param group 0 (the group the Trainer logs as ``learning_rate``)."""
REDUCTIONS = f"{PREFIX}/reductions"
"""How many reductions so far."""
PLATEAU_EVALUATIONS = f"{PREFIX}/plateau_evaluations"
"""At a reduction: the consecutive evaluations without improvement that triggered it."""


def group_scale(i: int) -> str:
    """Scale of group ``i`` (logged only when the optimizer has several param groups)."""
    return f"{SCALE}/group_{i}"


def wait(monitor: str) -> str:
    """Evaluations without improvement so far (torch's ``num_bad_epochs``)."""
    return f"{PREFIX}/wait/{monitor}"


def best(monitor: str) -> str:
    """Best value of the monitored metric so far (torch's ``best``)."""
    return f"{PREFIX}/best/{monitor}"


def old_lr(i: int) -> str:
    """At a reduction: group ``i``'s peak (base) LR before it."""
    return f"{PREFIX}/old_lr/group_{i}"


def new_lr(i: int) -> str:
    """At a reduction: group ``i``'s peak (base) LR after it."""
    return f"{PREFIX}/new_lr/group_{i}"
