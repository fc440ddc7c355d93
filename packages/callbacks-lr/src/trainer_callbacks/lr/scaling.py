"""Applying a plateau reduction on top of the Trainer's schedule.

The Trainer's schedules are ``LambdaLR``s: ``lr(t) = base_lr * f(t)``. Multiplying a
group's ``base_lr`` by ``r`` therefore multiplies every later value of the schedule by
``r``: warmup, decay and floors defined relative to the peak (``polynomial``'s ``lr_end``,
``cosine_with_min_lr``'s min rate, ``warmup_stable_decay``'s ``min_lr_ratio``) all continue
on the reduced scale. :meth:`LRTarget.set_peak_lrs` writes the new peak into everything
that holds it, so the change is exact from the very next optimizer step:

* the scheduler's ``base_lrs`` (and those of the children of ``SequentialLR`` /
  ``ChainedScheduler``), which are saved in ``scheduler.pt`` and so come back on resume
  already reduced (the reduction is never applied twice);
* each param group's ``initial_lr`` (saved in ``optimizer.pt``);
* each param group's current ``lr`` (the value the next ``optimizer.step()`` uses) and the
  scheduler's last LR (what ``get_last_lr()`` returns and the Trainer logs as ``learning_rate``).

A later ``train()`` on the same Trainer starts afresh: it builds a new schedule on the same
optimizer, and torch's schedulers take the param groups' ``initial_lr`` as their peak, which
still holds the reduced value. :meth:`LRTarget.undo_reductions` (called at the start of every
run that is not a resume) puts the unscaled peak back wherever an earlier reduction of this
package left its value untouched, so each ``train()`` starts from the unscaled schedule.

The scheduler internals this needs (the children of ``SequentialLR`` / ``ChainedScheduler``,
the last LR, transformers' scheduler classes) are reached through
:mod:`trainer_callbacks.core.compat`.

Which schedulers are exact (:func:`scheduler_support`):

* exact: ``LambdaLR`` (every ``get_scheduler`` type except ``reduce_lr_on_plateau`` and
  ``greedy``; user ``LambdaLR``s), and torch's multiplicative schedulers ``MultiplicativeLR``,
  ``StepLR``, ``MultiStepLR``, ``ConstantLR``, ``LinearLR``, ``ExponentialLR``,
  ``PolynomialLR``; ``CosineAnnealingLR`` / ``CosineAnnealingWarmRestarts`` with
  ``eta_min=0``; ``SequentialLR`` / ``ChainedScheduler`` of exact schedulers;
* approximate (a warning says so): ``CosineAnnealing*`` with ``eta_min > 0`` (``eta_min``
  is an absolute floor and is not scaled) and any other ``LRScheduler`` subclass;
* refused (``ConfigurationError``): torch's ``ReduceLROnPlateau`` and transformers'
  ``GreedyLR`` (a second plateau controller), ``OneCycleLR`` and ``CyclicLR`` (they compute
  the LR from their own absolute bounds), ``AdafactorSchedule`` (Adafactor's relative step
  ignores the group LR), layer-wise dummy schedulers and anything else that is not a torch
  ``LRScheduler`` (DeepSpeed's ``OneCycle`` and ``LRRangeTest``: absolute bounds).

DeepSpeed-config schedulers (``"scheduler"`` in the DeepSpeed config: the engine steps them, not
the Trainer): ``WarmupLR``, ``WarmupDecayLR`` and ``WarmupCosineLR`` are exact: they compute each
group's LR from absolute per-group lists (``min_lrs``/``max_lrs``/``delta_lrs``, ``org_lrs``), which
a reduction scales (through ``compat.deepspeed_schedule_lists``). Their ``state_dict`` keeps only the
step, so on resume the lists come back unscaled from the config and :meth:`LRTarget.remember_scales`
applies the restored scales again.

accelerate's ``AcceleratedOptimizer`` / ``AcceleratedScheduler`` and DeepSpeed's wrappers are
unwrapped through their ``.optimizer`` / ``.scheduler`` attributes, as accelerate does.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import lr_scheduler as torch_sched

from trainer_callbacks.core import ConfigurationError, compat

_EXACT: tuple[type, ...] = (
    torch_sched.LambdaLR,
    torch_sched.MultiplicativeLR,
    torch_sched.StepLR,
    torch_sched.MultiStepLR,
    torch_sched.ConstantLR,
    torch_sched.LinearLR,
    torch_sched.ExponentialLR,
    torch_sched.PolynomialLR,
)
_ETA_MIN: tuple[type, ...] = (torch_sched.CosineAnnealingLR, torch_sched.CosineAnnealingWarmRestarts)
_COMPOSITE: tuple[type, ...] = (torch_sched.SequentialLR, torch_sched.ChainedScheduler)
_REFUSED_TORCH: tuple[tuple[type, str], ...] = (
    (torch_sched.ReduceLROnPlateau, "it is a second plateau controller; use this callback instead of it"),
    (
        torch_sched.OneCycleLR,
        "it computes the LR from its own absolute max_lr/min_lr, so a multiplier cannot be applied",
    ),
    (
        torch_sched.CyclicLR,
        "it computes the LR from its own absolute base_lr/max_lr, so a multiplier cannot be applied",
    ),
)
_REFUSED_TRANSFORMERS = {
    "GreedyLR": "it is a plateau controller of its own; use this callback instead of it",
    "AdafactorSchedule": "Adafactor with relative_step=True ignores the group LR; use Adafactor(relative_step=False, "
    "lr=...) with a Trainer schedule",
    "LayerWiseDummyScheduler": "layer-wise optimizers keep one scheduler per parameter that it cannot reach",
}


def _refused_reason(scheduler: Any) -> str | None:
    for cls, reason in _REFUSED_TORCH:
        if isinstance(scheduler, cls):
            return reason
    for name, cls in compat.transformers_scheduler_classes().items():
        if isinstance(scheduler, cls):
            return _REFUSED_TRANSFORMERS[name]
    return None


@dataclass(frozen=True)
class Support:
    """How a plateau reduction composes with a scheduler."""

    kind: str
    """``"exact"``, ``"approximate"`` or ``"refused"``."""
    reason: str = ""


def unwrap_optimizer(optimizer: Any) -> Any:
    """The innermost optimizer under accelerate / DeepSpeed wrappers (``.optimizer`` chain)."""
    seen = set()
    while id(optimizer) not in seen and hasattr(getattr(optimizer, "optimizer", None), "param_groups"):
        seen.add(id(optimizer))
        optimizer = optimizer.optimizer
    return optimizer


def unwrap_scheduler(scheduler: Any) -> Any:
    """The innermost scheduler under accelerate / DeepSpeed wrappers (``.scheduler`` chain)."""
    seen = set()
    while (
        scheduler is not None
        and id(scheduler) not in seen
        and not isinstance(scheduler, torch_sched.LRScheduler)
        and getattr(scheduler, "scheduler", None) is not None
    ):
        seen.add(id(scheduler))
        scheduler = scheduler.scheduler
    return scheduler


def children(scheduler: Any) -> list[Any]:
    """The sub-schedulers of ``SequentialLR`` / ``ChainedScheduler`` (recursively), outermost first."""
    out = []
    for child in compat.scheduler_children(scheduler) or []:
        out.append(child)
        out.extend(children(child))
    return out


def scheduler_support(scheduler: Any) -> Support:
    """Whether scaling the peak LR of ``scheduler`` scales its whole schedule (see the module docstring)."""
    if scheduler is None:
        return Support("exact", "no scheduler: the LR is constant")
    name = type(scheduler).__name__
    refused = _refused_reason(scheduler)
    if refused is not None:
        return Support("refused", f"{name}: {refused}")
    if compat.deepspeed_schedule_lists(scheduler) is not None:
        return Support("exact", f"DeepSpeed's {name}: every LR it sets is a per-group list value x f(step)")
    if not isinstance(scheduler, torch_sched.LRScheduler):
        return Support(
            "refused",
            f"{name} is not a torch LRScheduler (a DeepSpeed-config scheduler?); let the Trainer build the schedule "
            "(remove the scheduler from the DeepSpeed config) or pass a torch LambdaLR",
        )
    if isinstance(scheduler, _COMPOSITE):
        found = compat.scheduler_children(scheduler)
        if found is None:
            return Support(
                "refused",
                f"{name}: its child schedulers cannot be read with this torch version (see the "
                "'scheduler-children' warning), so their peak LRs cannot be rewritten",
            )
        parts = [scheduler_support(child) for child in found]
        for kind in ("refused", "approximate"):
            bad = [p.reason for p in parts if p.kind == kind]
            if bad:
                return Support(kind, f"{name} contains " + "; ".join(bad))
        return Support("exact", f"{name} of multiplicative schedulers")
    if isinstance(scheduler, _ETA_MIN):
        eta_min = getattr(scheduler, "eta_min", 0)
        if eta_min != 0:
            return Support(
                "approximate",
                f"{name} with eta_min={eta_min}: eta_min is an absolute floor and is not scaled, so the "
                "LR is only approximately schedule x scale near the floor (use eta_min=0 or a LambdaLR for exactness)",
            )
        return Support("exact", f"{name} with eta_min=0")
    if isinstance(scheduler, _EXACT):
        return Support("exact", f"{name}: lr = base_lr x f(step) (or lr x g(step)), a multiplier on the peak")
    return Support(
        "approximate",
        f"{name} is not a scheduler this package knows: the reduction scales its base_lrs and the current LR, "
        "which is exact for schedules of the form base_lr x f(step) or lr_prev x g(step) only",
    )


def _value(x: Any) -> float:
    return float(x.item()) if isinstance(x, torch.Tensor) else float(x)


def _scaled(old_value: Any, old: float, new: float) -> Any:
    """``old_value * new / old`` in the type of ``old_value``; exactly ``new`` when ``old_value == old``."""
    current = _value(old_value)
    target = new if current == old else current * (new / old)
    if isinstance(old_value, torch.Tensor):
        old_value.fill_(target)
        return old_value
    return target


# Per optimizer (weakly held), per param group: (the initial_lr a reduction wrote, the unscaled peak).
_REDUCED: weakref.WeakKeyDictionary[Any, dict[int, tuple[float, float]]] = weakref.WeakKeyDictionary()


@dataclass
class LRTarget:
    """The optimizer param groups and scheduler whose peak learning rates a reduction rewrites."""

    optimizer: Any
    scheduler: Any

    @classmethod
    def from_trainer(cls, optimizer: Any, lr_scheduler: Any) -> LRTarget:
        """Unwrap what the Trainer passes to callbacks and check the scheduler composes (raises when refused)."""
        scheduler = unwrap_scheduler(lr_scheduler)
        support = scheduler_support(scheduler)
        if support.kind == "refused":
            raise ConfigurationError(f"ReduceLROnPlateau cannot scale this learning-rate schedule: {support.reason}.")
        if support.kind == "approximate":
            warnings.warn(f"ReduceLROnPlateau: {support.reason}.", UserWarning, stacklevel=2)
        # The scheduler writes the LRs of its own optimizer: that is the one to rewrite.
        inner = getattr(scheduler, "optimizer", None) if scheduler is not None else None
        opt = unwrap_optimizer(inner if inner is not None else optimizer)
        if opt is None or not hasattr(opt, "param_groups"):
            raise ConfigurationError(
                "ReduceLROnPlateau needs the Trainer's optimizer at train begin, but none was passed to the callback"
            )
        return cls(optimizer=opt, scheduler=scheduler)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups  # type: ignore[no-any-return]

    def peak_lrs(self) -> list[float]:
        """Each group's peak (base) LR: the scheduler's ``base_lrs``, else ``initial_lr``, else ``lr``."""
        lists = compat.deepspeed_schedule_lists(self.scheduler)
        if lists is not None:  # DeepSpeed: the schedule's peak is max_lrs (WarmupLR*) or org_lrs (WarmupCosineLR)
            return [_value(v) for v in getattr(self.scheduler, lists[1] if len(lists) > 1 else lists[0])]
        base = getattr(self.scheduler, "base_lrs", None)
        if base is not None and len(base) == len(self.param_groups):
            return [_value(b) for b in base]
        return [_value(g.get("initial_lr", g["lr"])) for g in self.param_groups]

    def current_lrs(self) -> list[float]:
        return [_value(g["lr"]) for g in self.param_groups]

    def _remember(self, index: int, before: float, written: float) -> None:
        """Keep the unscaled peak of group ``index`` for :meth:`undo_reductions`."""
        try:
            reduced = _REDUCED.setdefault(self.optimizer, {})
        except TypeError:  # an optimizer that cannot be weakly referenced: nothing to undo later
            return
        earlier = reduced.get(index)
        unscaled = earlier[1] if earlier is not None and earlier[0] == before else before
        if written == unscaled:
            reduced.pop(index, None)
        else:
            reduced[index] = (written, unscaled)

    def remember_scales(self, scales: Sequence[float]) -> None:
        """On resume: group ``i``'s ``initial_lr`` is its unscaled peak times ``scales[i]`` (restored progress).

        A DeepSpeed-config scheduler saves only its step: its LR lists come back unscaled from the
        config, so the restored scales are applied to them again here.
        """
        if compat.deepspeed_schedule_lists(self.scheduler) is not None:
            peaks = self.peak_lrs()
            self.set_peak_lrs([p * s if s > 0 else p for p, s in zip(peaks, scales)])
            return
        for i, (group, scale) in enumerate(zip(self.param_groups, scales)):
            if "initial_lr" in group and scale != 1.0 and scale > 0:
                written = _value(group["initial_lr"])
                self._remember(i, written / scale, written)

    def undo_reductions(self) -> list[int]:
        """Put back the unscaled peak of every group whose ``initial_lr`` a reduction of an earlier run left behind.

        Call it at the start of a run that is not a resume: the Trainer built this run's
        schedule from the ``initial_lr`` that the earlier run reduced. A group whose
        ``initial_lr`` someone else changed since is left alone. Returns the groups restored.
        """
        try:
            reduced = _REDUCED.pop(self.optimizer, {})
        except TypeError:
            return []
        peaks = self.peak_lrs()
        restored = []
        for i, (written, unscaled) in reduced.items():
            if i < len(self.param_groups) and _value(self.param_groups[i].get("initial_lr", math.nan)) == written:
                peaks[i] = unscaled
                restored.append(i)
        if restored:
            self.set_peak_lrs(peaks)
        _REDUCED.pop(self.optimizer, None)  # what set_peak_lrs recorded while undoing is not a reduction
        return restored

    def set_peak_lrs(self, new_peaks: Sequence[float]) -> None:
        """Rewrite every place that holds the peak LRs so the schedule continues at ``new_peaks``."""
        old_peaks = self.peak_lrs()
        if len(new_peaks) != len(old_peaks):
            raise ValueError(f"expected {len(old_peaks)} peak LRs, got {len(new_peaks)}")
        changed = [i for i, (o, n) in enumerate(zip(old_peaks, new_peaks)) if n != o]
        if not changed:
            return
        sched = self.scheduler
        recompute = isinstance(sched, torch_sched.LambdaLR) and scheduler_support(sched).kind == "exact"
        for i in changed:
            old, new = old_peaks[i], float(new_peaks[i])
            if old == 0 or not math.isfinite(old):
                continue
            group = self.param_groups[i]
            for name in compat.deepspeed_schedule_lists(sched) or ():
                values = getattr(sched, name)
                if i < len(values):
                    values[i] = values[i] * (new / old)
            for s in [sched, *children(sched)] if sched is not None else []:
                base = getattr(s, "base_lrs", None)
                if base is not None and i < len(base):
                    base[i] = _scaled(base[i], old, new)
            if "initial_lr" in group:
                before = _value(group["initial_lr"])
                group["initial_lr"] = _scaled(group["initial_lr"], old, new)
                self._remember(i, before, _value(group["initial_lr"]))
            if recompute:
                # What the LambdaLR itself would have set at this step with the new peak.
                value = new * sched.lr_lambdas[i](sched.last_epoch)
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(value)
                else:
                    group["lr"] = value
            else:
                group["lr"] = _scaled(group["lr"], old, new)
        if sched is not None:
            current = [g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"] for g in self.param_groups]
            for s in [sched, *children(sched)]:
                compat.set_last_lr(s, current)
