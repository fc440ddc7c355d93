"""``EarlyStopping``: the Trainer callback around :mod:`trainer_callbacks.earlystop.rule`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from trainer_callbacks.core import (
    ConfigurationError,
    EvaluationRound,
    PluginCallback,
    Round,
    StateReader,
    eval_key,
    evaluates,
    infer_mode,
    metric_value,
    missing_metrics_message,
)
from trainer_callbacks.earlystop.metric import Metric, build_config, mode_problem
from trainer_callbacks.earlystop.options import StopperOptions
from trainer_callbacks.earlystop.rule import Best, EarlyStoppingRule, StopReason, read_state

logger = logging.getLogger(__name__)

PREFIX = "early_stopping"
REASON_KEY = f"{PREFIX}/reason"
"""A ``log_history`` entry (text, not a scalar) that records the stop reason for summaries and plots."""


class EarlyStopping(PluginCallback):
    """Stop training when the monitored evaluation metrics stop improving.

    Watches one or several metrics and stops when all of them (``combine="all"``), any of them
    (``"any"``) have stalled, or when no evaluation has improved the Pareto front for
    ``patience`` evaluations (``"pareto"``); stops at once on a NaN/inf value, a crossed
    ``divergence_threshold`` or a reached ``stopping_threshold``. It keeps its own bests (never
    ``state.best_metric``), resets at each ``train()``, resumes exactly from checkpoints, and logs
    ``early_stopping/wait/<metric>``, ``early_stopping/best/<metric>`` and ``early_stopping/stopped``.

    Options: :class:`~trainer_callbacks.earlystop.options.StopperOptions` (``trainer-callbacks show earlystop``).
    """

    declared_options = StopperOptions

    def __init__(
        self,
        monitor: str | Mapping[str, str] | list[Any] = "eval_loss",
        patience: int | Mapping[str, int] = 3,
        threshold: float | Mapping[str, float] = 0.0,
        threshold_mode: str | Mapping[str, str] = "abs",
        combine: str = "all",
        baseline: float | Mapping[str, float] | None = None,
        stopping_threshold: float | Mapping[str, float] | None = None,
        divergence_threshold: float | Mapping[str, float] | None = None,
        check_finite: bool = True,
        min_steps: int = 0,
        strict: bool = True,
    ) -> None:
        options = StopperOptions.parse(self, locals())
        self._config = build_config(**options.as_dict())
        super().__init__(**options.saved())

    @classmethod
    def from_training_args(cls, args: Any, patience: int = 1, threshold: float = 0.0, **options: Any) -> EarlyStopping:
        """The single-metric stopper of transformers' ``EarlyStoppingCallback``, from ``TrainingArguments``.

        Monitors ``args.metric_for_best_model`` with the mode of ``args.greater_is_better``;
        ``patience`` and ``threshold`` default to ``EarlyStoppingCallback``'s (1 and 0.0).
        Other ``EarlyStopping`` options pass through.
        """
        name = getattr(args, "metric_for_best_model", None)
        if not name:
            raise ConfigurationError(
                "EarlyStopping.from_training_args: args.metric_for_best_model is not set; set it "
                "(e.g. metric_for_best_model='eval_loss') or build EarlyStopping(monitor=...) directly"
            )
        mode = infer_mode(eval_key(name), args)
        return cls(monitor={eval_key(name): mode or "min"}, patience=patience, threshold=threshold, **options)

    # ---- PluginCallback -----------------------------------------------------------------
    def reset(self) -> None:
        self._rule: EarlyStoppingRule | None = None if self._config.unresolved() else self._config.resolve()
        self._saved: dict[str, Any] | None = None
        self._training = False
        self._rounds = EvaluationRound()
        self._warned: set[str] = set()
        self._last_step: int | None = None
        """The global step of the latest counted evaluation (kept across resume)."""

    def state_dict(self) -> dict[str, Any]:
        if self._rule is None:
            return dict(self._saved or {})
        return {**self._rule.state_dict(), "last_step": self._last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if isinstance(state, Mapping) and not state:  # saved before the first train begin: nothing to restore
            return
        # every field is checked now, even when the monitor is resolved only at setup_run
        last = StateReader(state).integer("last_step", None, none=True, minimum=0)
        read_state(state)
        if self._rule is None:
            self._saved = dict(state)
            return
        self._rule.load_state_dict(state)
        self._last_step = last

    def check_training_args(self, args: Any) -> list[str]:
        problems = []
        if not evaluates(args):
            problems.append(
                "eval_strategy='no' means no evaluation runs during training, so early stopping can never act; "
                "set eval_strategy='steps' (with eval_steps) or 'epoch' in TrainingArguments"
            )
        unresolved = self._config.unresolved(args)
        if unresolved:
            problems.append(mode_problem(unresolved, args))
        max_steps = getattr(args, "max_steps", -1)
        if isinstance(max_steps, int) and 0 < max_steps < self._config.min_steps:
            problems.append(
                f"min_steps={self._config.min_steps} > max_steps={max_steps}: every evaluation would be ignored; "
                "lower min_steps"
            )
        return problems

    def setup_run(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        restored = self.state_dict()
        self._rule = self._config.resolve(args)
        self._saved = None
        if restored:
            self.load_state_dict(restored)
        self._rounds.begin()
        self._training = True

    # ---- the public view ------------------------------------------------------------------
    @property
    def monitored(self) -> list[str]:
        """The monitored metric names (with ``eval_``)."""
        return self._config.names

    @property
    def stop_reason(self) -> StopReason | None:
        """Why the current (or last) run stopped (``kind``, ``metrics``, ``step``, ``values``), or ``None``."""
        return self._rule.stop_reason if self._rule is not None else None

    @property
    def best(self) -> dict[str, Best]:
        """Per metric, ``Best(value, step)`` of the current (or last) run."""
        if self._rule is None:
            return {name: Best(None, None) for name in self._config.names}
        return self._rule.best

    @property
    def waits(self) -> dict[str, int]:
        """Per metric, evaluations since its last improvement."""
        if self._rule is None:
            return dict.fromkeys(self._config.names, 0)
        return self._rule.waits

    # ---- events ------------------------------------------------------------------------------
    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Mapping[str, float] | None = None, **kwargs: Any
    ) -> None:
        # Only evaluations inside train() count; trainer.evaluate() before/after training does not.
        # With several eval datasets the Trainer calls this once per dataset: the decision is taken
        # when the round is complete (core's EvaluationRound), with the metrics of every dataset.
        if not self._training or self._rule is None or not metrics:
            return
        for evaluation in self._rounds.add(int(state.global_step), metrics):
            self._round(args, state, control, evaluation)

    # A round whose datasets are not known (no Trainer found) ends at the next of these events.
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_round(args, state, control)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_round(args, state, control)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_round(args, state, control)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        try:
            self._close_round(args, state, control)
        finally:
            self._training = False
            super().on_train_end(args, state, control, **kwargs)

    # ---- internals ----------------------------------------------------------------------------
    def _close_round(self, args: Any, state: Any, control: Any) -> None:
        if self._training and self._rule is not None:
            for evaluation in self._rounds.close():
                self._round(args, state, control, evaluation)

    def _round(self, args: Any, state: Any, control: Any, evaluation: Round) -> None:
        """One complete evaluation round: check what it reported, then update the rule."""
        step = evaluation.step
        # One decision per global step: a second round at a step already decided (an empty epoch,
        # eval_on_start after resuming at that step) is not counted.
        if self._last_step is not None and step <= self._last_step:
            return
        names = self._config.names
        missing = evaluation.missing(names)
        if missing:
            if self._config.strict:
                raise ConfigurationError(
                    missing_metrics_message(
                        "EarlyStopping", missing, evaluation, skip="skip a missing metric in the evaluations without it"
                    )
                )
            new = [n for n in missing if n not in self._warned]
            if new:
                logger.warning(
                    "EarlyStopping: monitored metric(s) %s missing from the evaluation at step %s (present: %s); "
                    "skipping them for the evaluations that lack them (strict=False)",
                    ", ".join(new),
                    step,
                    ", ".join(evaluation.metrics),
                )
                self._warned.update(new)
        seen = {
            n: metric_value(evaluation.metrics, n, callback="EarlyStopping", step=step)
            for n in names
            if n in evaluation.metrics
        }
        if seen:
            self._decide(args, state, control, step, seen)

    def _decide(self, args: Any, state: Any, control: Any, step: int, seen: Mapping[str, float]) -> None:
        assert self._rule is not None
        self._last_step = step
        reason = self._rule.update(step, seen)
        if step < self._config.min_steps:
            return
        scalars: dict[str, float] = {}
        for name, best in self._rule.best.items():
            scalars[f"{PREFIX}/wait/{name}"] = float(self._rule.progress[name].wait)
            if best.value is not None:
                scalars[f"{PREFIX}/best/{name}"] = float(best.value)
        if self._config.combine == "pareto":
            scalars[f"{PREFIX}/wait/pareto"] = float(self._rule.shared_wait)
        if reason is not None:
            scalars[f"{PREFIX}/stopped"] = 1.0
        self.report(args, state, scalars, step=step)
        if reason is not None:
            control.should_training_stop = True
            state.log_history.append({REASON_KEY: f"{reason.kind}: {reason.message}", "step": step})
            if getattr(state, "is_world_process_zero", True):
                logger.info("EarlyStopping: stopping at step %d: %s", step, reason.message)


__all__ = ["EarlyStopping", "Metric"]
