"""``ReduceLROnPlateau``: cut the learning rate when an evaluation metric stalls, on top of any schedule."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from trainer_callbacks.core import (
    ConfigurationError,
    EvaluationRound,
    PluginCallback,
    Round,
    StateFieldError,
    StateReader,
    evaluates,
    metric_value,
    missing_metrics_message,
)
from trainer_callbacks.lr import names
from trainer_callbacks.lr.monitor import find_metric, resolve_mode
from trainer_callbacks.lr.options import PlateauOptions
from trainer_callbacks.lr.plateau import PlateauRule, reduced_lrs
from trainer_callbacks.lr.scaling import LRTarget

logger = logging.getLogger(__name__)


def _setting(value: Any) -> str:
    return str(getattr(value, "value", value))


class ReduceLROnPlateau(PluginCallback):
    """Reduce the learning rate when an evaluation metric has stopped improving, on top of the Trainer's schedule.

    At every evaluation it runs the rule of ``torch.optim.lr_scheduler.ReduceLROnPlateau.step``;
    a reduction multiplies each param group's peak (base) learning rate by ``factor`` (never
    below its ``min_lr``), so the effective LR at every later step is the schedule's value
    (warmup, linear, cosine, a user ``LambdaLR``...) times the accumulated plateau scale,
    from the very next optimizer step. The ``rel`` threshold is sign-safe for negative
    metrics (torch's is not); for non-negative metrics the decisions equal torch's.

    Options: :class:`~trainer_callbacks.lr.options.PlateauOptions` (``trainer-callbacks show lr``).
    """

    declared_options = PlateauOptions
    # The options as attributes (set by PlateauOptions.assign, checked and converted).
    monitor: str
    mode: str | None
    factor: float
    patience: int
    threshold: float
    threshold_mode: str
    cooldown: int
    min_lr: float | list[float]
    eps: float
    strict: bool
    min_steps: int

    def __init__(
        self,
        monitor: str = "eval_loss",
        mode: str | None = None,
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0.0,
        eps: float = 1e-8,
        strict: bool = True,
        min_steps: int = 0,
    ) -> None:
        options = PlateauOptions.parse(self, locals())
        if options.threshold_mode == "rel" and options.threshold >= 1:
            raise ConfigurationError(
                f"ReduceLROnPlateau(threshold={threshold!r}) with threshold_mode='rel': must be < 1 (a fraction of "
                "|best|); lower it or use threshold_mode='abs'"
            )
        options.assign(self)
        super().__init__(**options.saved())

    # ---- per-run state ---------------------------------------------------------------
    def reset(self) -> None:
        self.rule = PlateauRule(
            mode=self.mode or "min",  # type: ignore[arg-type]
            patience=self.patience,
            threshold=self.threshold,
            threshold_mode=self.threshold_mode,  # type: ignore[arg-type]
            cooldown=self.cooldown,
        )
        self.scales: list[float] = []
        self.reductions = 0
        self.target: LRTarget | None = None
        self.min_lrs: list[float] = []
        self._active = False
        self._restored = False
        self._warned_missing = False
        self._rounds = EvaluationRound()

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.rule.state_dict(),
            "mode": self.rule.mode,
            "scales": list(self.scales),
            "reductions": self.reductions,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if isinstance(state, Mapping) and not state:  # saved before the first train begin: nothing to restore
            return
        # every field is checked before anything changes (a StateFieldError names the bad one)
        saved = StateReader(state)
        mode = saved.text("mode", None, choices=("min", "max"), none=True)
        scales = saved.numbers("scales")
        bad = [s for s in scales if not (math.isfinite(s) and s > 0)]
        if bad:
            raise StateFieldError("scales", f"expected positive finite multipliers, got {bad[0]!r}")
        reductions = saved.integer("reductions", minimum=0)
        self.rule.load_state_dict(state)
        if mode is not None:
            self.rule.mode = mode
        self.scales = scales
        self.reductions = reductions
        self._restored = True

    @property
    def scale(self) -> float:
        """The accumulated plateau multiplier of param group 0 (1.0 before any reduction)."""
        return self.scales[0] if self.scales else 1.0

    # ---- train begin -----------------------------------------------------------------------
    def check_training_args(self, args: Any) -> list[str]:
        problems = []
        scheduler_type = _setting(getattr(args, "lr_scheduler_type", ""))
        if scheduler_type in ("reduce_lr_on_plateau", "greedy"):
            problems.append(
                f"lr_scheduler_type={scheduler_type!r} is a second plateau controller (and drops warmup and decay); "
                "set lr_scheduler_type to the schedule you want ('linear', 'cosine', 'constant_with_warmup'...) "
                "and let this callback cut the LR on plateaus"
            )
        if not evaluates(args):
            problems.append(
                f"eval_strategy='no': there are no evaluations, so {self.monitor!r} never arrives and the LR is "
                "never reduced; set eval_strategy='steps' (with eval_steps) or 'epoch'"
            )
        _, problem = resolve_mode(self.mode, self.monitor, args)
        if problem:
            problems.append(problem)
        return problems

    def setup_run(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        mode, problem = resolve_mode(self.mode, self.monitor, args)
        if problem:  # pragma: no cover - check_training_args already raised
            raise ConfigurationError(problem)
        fresh = not self._restored
        if self._restored and self.rule.mode != mode:
            logger.warning(
                "ReduceLROnPlateau: the checkpoint watched %s in mode %r, this run in mode %r; starting the plateau "
                "bookkeeping afresh",
                self.monitor,
                self.rule.mode,
                mode,
            )
            fresh = True
        self.rule.mode = mode  # type: ignore[assignment]
        if fresh:
            self.rule.reset()
        self.target = LRTarget.from_trainer(kwargs.get("optimizer"), kwargs.get("lr_scheduler"))
        n_groups = len(self.target.param_groups)
        if isinstance(self.min_lr, list):
            if len(self.min_lr) != n_groups:
                raise ConfigurationError(
                    f"ReduceLROnPlateau: min_lr has {len(self.min_lr)} values but the optimizer has {n_groups} param "
                    f"group(s); pass one value per group (in the optimizer's order) or a single float"
                )
            self.min_lrs = list(self.min_lr)
        else:
            self.min_lrs = [self.min_lr] * n_groups
        if len(self.scales) != n_groups:
            if self.scales:
                logger.warning(
                    "ReduceLROnPlateau: the checkpoint had %d param group(s), the optimizer has %d; the logged "
                    "scale restarts at 1 (the LRs themselves come from the optimizer and scheduler state)",
                    len(self.scales),
                    n_groups,
                )
            self.scales = [1.0] * n_groups
        if state.global_step == 0:  # a new train(), not a resume: its schedule starts unscaled
            undone = self.target.undo_reductions()
            if undone:
                logger.info("ReduceLROnPlateau: param group(s) %s start from the unscaled peak LR again", undone)
        else:
            self.target.remember_scales(self.scales)
        self._rounds.begin()
        self._active = True

    # ---- evaluation -------------------------------------------------------------------------
    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not self._active or self.target is None:
            return  # an evaluate() outside train(): nothing to schedule
        # With several eval datasets the Trainer calls this once per dataset: the monitored metric is
        # looked up when the round is complete (core's EvaluationRound), in every dataset's metrics.
        for evaluation in self._rounds.add(int(state.global_step), metrics or {}):
            self._round(args, state, evaluation)

    # A round whose datasets are not known (no Trainer found) ends at the next of these events.
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_round(args, state)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_round(args, state)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_round(args, state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        try:
            self._close_round(args, state)
        finally:
            self._active = False
            super().on_train_end(args, state, control, **kwargs)

    def _close_round(self, args: Any, state: Any) -> None:
        if self._active and self.target is not None:
            for evaluation in self._rounds.close():
                self._round(args, state, evaluation)

    def _round(self, args: Any, state: Any, evaluation: Round) -> None:
        """One complete evaluation round: the plateau rule on the monitored value, if reported."""
        assert self.target is not None
        step = evaluation.step
        if step < self.min_steps:
            return
        key = find_metric(evaluation.metrics, self.monitor)
        if key is None:
            if self.strict:
                raise ConfigurationError(
                    missing_metrics_message(
                        "ReduceLROnPlateau", [self.monitor], evaluation, skip="skip the evaluations without it"
                    )
                )
            if not self._warned_missing:
                logger.warning(
                    "ReduceLROnPlateau: %r is not among the evaluation metrics %s; evaluations without it are "
                    "skipped (strict=False)",
                    self.monitor,
                    list(evaluation.metrics),
                )
                self._warned_missing = True
            return
        value = metric_value(evaluation.metrics, key, callback="ReduceLROnPlateau", step=step)
        old_peaks = self.target.peak_lrs()
        bad_before = self.rule.num_bad_epochs + (0 if self.rule.is_better(value) else 1)
        scalars: dict[str, float] = {}
        if self.rule.step(value):
            new_peaks = reduced_lrs(old_peaks, self.factor, self.min_lrs, self.eps)
            if new_peaks != old_peaks:
                self.target.set_peak_lrs(new_peaks)
                for i, (old, new) in enumerate(zip(old_peaks, new_peaks)):
                    if old > 0:
                        self.scales[i] *= new / old
                    scalars[names.old_lr(i)] = old
                    scalars[names.new_lr(i)] = new
                self.reductions += 1
                scalars[names.PLATEAU_EVALUATIONS] = float(bad_before)
                logger.info(
                    "ReduceLROnPlateau: %s did not improve for %d evaluations; step %d: peak LR %s",
                    key,
                    bad_before,
                    step,
                    ", ".join(f"group {i} {o:.3g} -> {n:.3g}" for i, (o, n) in enumerate(zip(old_peaks, new_peaks))),
                )
        scalars[names.SCALE] = self.scale
        if len(self.scales) > 1:
            for i, s in enumerate(self.scales):
                scalars[names.group_scale(i)] = s
        scalars[names.REDUCTIONS] = float(self.reductions)
        scalars[names.wait(self.monitor)] = float(self.rule.num_bad_epochs)
        if math.isfinite(self.rule.best):
            scalars[names.best(self.monitor)] = self.rule.best
        self.report(args, state, scalars, step=step)
