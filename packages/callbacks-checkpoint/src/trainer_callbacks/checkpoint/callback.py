"""``CheckpointPruner``: the callback that applies the retention policy after every save."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from trainer_callbacks.checkpoint.deletion import Deleter, Removal, claim_all, leftovers
from trainer_callbacks.checkpoint.options import PrunerOptions
from trainer_callbacks.checkpoint.policy import (
    CheckpointInfo,
    Decision,
    RetentionPolicy,
    monitor_size,
    ranking_metrics,
    resolve_monitor,
    unranked,
)
from trainer_callbacks.checkpoint.rundir import find_run_dir, resume_checkpoint_on_stack
from trainer_callbacks.checkpoint.runindex import RunIndex
from trainer_callbacks.checkpoint.scan import ScanResult
from trainer_callbacks.core import (
    ConfigurationError,
    EvaluationRound,
    PluginCallback,
    Round,
    StateReader,
    callable_option,
    evaluates,
    metric_value,
    missing_metrics_message,
    strategy,
)

logger = logging.getLogger(__name__)

UNSAVED_KEEP_PREFIX = "<not saved: "
"""How trainer-callbacks-checkpoint 0.1 wrote a ``keep`` lambda or closure in the saved options (now refused)."""

KeepCallable = Callable[[CheckpointInfo], Any]


def resolve_keep(keep: Any) -> tuple[KeepCallable | None, str | None]:
    """(the ``keep`` callable used, the ``'module:function'`` it is saved as), or a ``ConfigurationError``.

    The options are saved in every checkpoint and ``restore_callback_states_from_checkpoint=True``
    rebuilds the pruner from them, so ``keep`` must be importable back by name: a module-level
    function (or its name); a lambda or closure is refused here, as every plugin refuses one
    (``core.callable_option``: gradviz's ``group_by`` too).
    """
    if keep is None:
        return None, None
    if isinstance(keep, str) and keep.startswith(UNSAVED_KEEP_PREFIX):
        raise ConfigurationError(
            f"CheckpointPruner was rebuilt from a checkpoint's saved options (restore_callback_states_from_"
            f"checkpoint=True), but its keep callable {keep[len(UNSAVED_KEEP_PREFIX) : -1]} was a lambda or closure "
            "(accepted by trainer-callbacks-checkpoint 0.1), which cannot be saved. Pass CheckpointPruner(keep=...) "
            "a module-level function yourself, or set restore_callback_states_from_checkpoint=False: "
            "trainer-callbacks restores the pruner's progress without it."
        )
    return callable_option(keep, f"CheckpointPruner(keep={keep!r})")


class CheckpointPruner(PluginCallback):
    """Deletes the checkpoints you do not need, never the ones you do, crash-safely and off the training thread.

    After every save (on the processes where ``args.should_save``), the ``checkpoint-N``
    folders of the run directory are the candidates; kept is the union of the newest
    ``keep_last``, the ``keep_best`` best by ``monitor``, the Pareto front (``keep_pareto``),
    milestones (``keep_every_n_steps``), ``state.best_model_checkpoint``, the checkpoint
    training resumed from until a newer complete one exists, the newest complete
    checkpoint, and whatever ``keep`` says; the rest is renamed to a hidden name (atomic) and
    removed. Each prune logs ``checkpoint/kept`` and ``checkpoint/deleted`` at the save's step;
    ``on_train_end`` waits for the removals and logs ``checkpoint/bytes_freed`` once.

    Options: :class:`~trainer_callbacks.checkpoint.options.PrunerOptions` (``trainer-callbacks show checkpoint``).
    """

    declared_options = PrunerOptions
    # The options as attributes (set by PrunerOptions.assign, checked and converted; keep is ``_keep``).
    keep_last: int
    keep_best: int
    monitor: str | dict[str, str] | None
    keep_pareto: bool
    keep_every_n_steps: int | None
    _keep: KeepCallable | None
    background: bool
    dry_run: bool
    strict: bool

    def __init__(
        self,
        keep_last: int = 2,
        keep_best: int = 1,
        monitor: str | dict[str, str] | None = None,
        keep_pareto: bool = False,
        keep_every_n_steps: int | None = None,
        keep: Callable[[CheckpointInfo], bool] | str | None = None,
        background: bool = True,
        dry_run: bool = False,
        strict: bool = True,
    ) -> None:
        options = PrunerOptions.parse(self, locals())
        if options.keep_pareto and monitor_size(options.monitor) < 2:
            raise ConfigurationError(
                f"CheckpointPruner(keep_pareto=True, monitor={options.monitor!r}): a Pareto front needs at least two "
                "metrics; pass monitor={'eval_loss': 'min', 'eval_f1': 'max'} or drop keep_pareto"
            )
        options.assign(self)
        self._deleter = Deleter(background=self.background)
        self.deleted_total = 0
        self.bytes_freed_total = 0
        self.prunes = 0
        super().__init__(**options.saved())

    @property
    def keep(self) -> KeepCallable | None:
        """The user's ``keep`` callable."""
        return self._keep

    # ---- PluginCallback -----------------------------------------------------------------------
    def reset(self) -> None:
        index = getattr(self, "_index", None)
        if index is not None:
            index.close()  # a run that ended without on_train_end
        self._index = RunIndex(background=self.background)
        self._announced = False
        """A reconciliation was started for the coming save (the Trainer's flow said ``should_save``)."""
        self._run_dir: str | None = None
        self._resume_path: str | None = None
        self._warned: set[str] = set()
        self._rounds = EvaluationRound()
        self._training = False
        self.deleted_total = 0
        self.bytes_freed_total = 0
        self.prunes = 0
        self.last_decision: Decision | None = None

    def state_dict(self) -> dict[str, Any]:
        # Only what is known at a save: the bytes freed are learnt by the background thread at
        # a moment that depends on load, so they are not part of the saved state.
        return {"deleted_total": self.deleted_total, "prunes": self.prunes}

    fresh_start_is_safe = True
    """The saved progress is two counters: a damaged one warns and restarts them (decisions come from the disk)."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = StateReader(state)  # "bytes_freed_total", written by older versions, is not read
        deleted_total = saved.integer("deleted_total", 0, minimum=0)
        self.prunes = saved.integer("prunes", 0, minimum=0)
        self.deleted_total = deleted_total

    def check_training_args(self, args: Any) -> list[str]:
        problems = []
        if self.monitor is not None and not evaluates(args):
            problems.append(
                f"monitor={self.monitor!r} ranks checkpoints by evaluation metrics, but eval_strategy='no' never "
                "evaluates; set eval_strategy='steps' with eval_steps equal to save_steps, or drop monitor"
            )
        try:
            self.policy(args)
        except ConfigurationError as exc:  # a bare monitor name whose mode cannot be told
            problems.append(str(exc).removeprefix("CheckpointPruner: "))
        return problems

    def setup_run(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Every process follows the evaluation rounds (the metrics are the same on all of them), so a
        # strict error is raised everywhere, not only where checkpoints are pruned.
        self._rounds.begin()
        self._training = True
        if not args.should_save:
            return
        self._run_dir = find_run_dir(args, state)
        # the pace of background removals: the trash should be gone before the next save is expected
        save_steps = getattr(state, "save_steps", None) if strategy(args, "save") == "steps" else None
        self._deleter.start(state.global_step, save_steps)
        resume = resume_checkpoint_on_stack()
        if resume is None and state.global_step > 0:
            resume = str(Path(self._run_dir) / f"checkpoint-{state.global_step}")
        self._resume_path = resume
        trash = leftovers(self._run_dir)
        if trash:
            if self.dry_run:
                logger.info(
                    "CheckpointPruner (dry run): would remove %d folder(s) left by an interrupted prune: %s",
                    len(trash),
                    ", ".join(p.name for p in trash),
                )
            else:
                logger.info(
                    "CheckpointPruner: removing %d folder(s) left by an interrupted prune: %s",
                    len(trash),
                    ", ".join(p.name for p in trash),
                )
                names = tuple(p.name for p in trash)
                self._deleter.submit(Removal(step=state.global_step, names=names, report=False), trash)
        self._begin_index(args, state, self._run_dir)

    def _begin_index(self, args: Any, state: Any, run_dir: str) -> None:
        """The index of the run directory: one full scan (train begin; see :mod:`.runindex`)."""
        self._index.begin(
            run_dir,
            global_step=state.global_step,
            log_history=state.log_history,
            best=state.best_model_checkpoint,
            resume=self._resume_path,
            policy=self.policy(args),
            keep=self._keep,
        )
        self._warn(self._index.take_warnings())

    # ---- events ---------------------------------------------------------------------------------
    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if self._training:
            for evaluation in self._rounds.add(int(state.global_step), metrics or {}):
                self._check_round(args, evaluation)

    def _close_round(self, args: Any) -> None:
        """A round whose datasets are not known (no Trainer found) ends at the next event after it."""
        if self._training:
            for evaluation in self._rounds.close():
                self._check_round(args, evaluation)

    def _check_round(self, args: Any, evaluation: Round) -> None:
        """What the ranking needs from one evaluation round: every ranking metric, each a number.

        strict: a missing one is an error now, before the save of this step prunes anything.
        strict=False: the checkpoint of this step is kept as unranked (see ``prune``).
        """
        names = ranking_metrics(self.policy(args))
        missing = evaluation.missing(names)
        if missing and self.strict:
            raise ConfigurationError(
                missing_metrics_message(
                    "CheckpointPruner",
                    missing,
                    evaluation,
                    skip="keep (never delete) the checkpoints whose evaluation lacks it",
                )
            )
        for name in names:
            if name in evaluation.metrics:
                metric_value(evaluation.metrics, name, callback="CheckpointPruner", step=evaluation.step)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_round(args)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_round(args)
        self._before_save(args, control)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._before_save(args, control)

    def _before_save(self, args: Any, control: Any) -> None:
        """A save follows (the Trainer's flow callback decided it): reconcile the index meanwhile, off this thread."""
        if getattr(control, "should_save", False) and args.should_save:
            self._index.reconcile_soon()
            self._announced = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_round(args)
        if not args.should_save:
            return
        self.prune(args, state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        try:
            self._close_round(args)  # the run's last round, when its datasets could not be known
        finally:
            self._training = False
            self._finish(args, state, control, **kwargs)

    def _finish(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._index.close()
        self._deleter.close()
        removals = [r for r in self._deleter.finished() if r.report]
        if args.should_save and removals:
            self._report_removals(args, state, removals)
        super().on_train_end(args, state, control, **kwargs)

    # ---- the work ---------------------------------------------------------------------------------
    def wait(self) -> None:
        """Block until every pending deletion is done."""
        self._deleter.wait()

    def policy(self, args: Any) -> RetentionPolicy:
        """The settings for this run's ``TrainingArguments`` (``monitor`` resolved)."""
        return RetentionPolicy(
            keep_last=self.keep_last,
            keep_best=self.keep_best,
            monitor=resolve_monitor(
                self.monitor, getattr(args, "metric_for_best_model", None), getattr(args, "greater_is_better", None)
            ),
            keep_pareto=self.keep_pareto,
            keep_every_n_steps=self.keep_every_n_steps,
        )

    def prune(self, args: Any, state: Any) -> Decision | None:
        """Apply the policy to the run directory now (what ``on_save`` does); returns the decision."""
        run_dir = find_run_dir(args, state)
        self._run_dir = run_dir
        newest = Path(run_dir) / f"checkpoint-{state.global_step}"
        if not newest.is_dir():
            self._warn_once(
                f"missing:{run_dir}",
                "CheckpointPruner: the checkpoint just saved is not at %s; nothing is pruned (is the Trainer's "
                "_save_checkpoint customised?)",
                newest,
            )
            return None
        policy = self.policy(args)
        index = self._index
        if not index.matches(run_dir, policy, self._keep):
            self._begin_index(args, state, run_dir)  # prune() called without on_train_begin, or a new run directory
        index.refresh(
            global_step=state.global_step,
            log_history=state.log_history,
            best=state.best_model_checkpoint,
            saved=newest.name,
            # the Trainer's own rotation has just deleted folders: it keeps the directory at about save_total_limit
            # checkpoints (and lists all of them itself), so a listing here is as cheap as it is sure
            reconcile_now=bool(getattr(args, "save_total_limit", None)),
        )
        self._warn(index.take_warnings())
        decision = index.decide()
        self._warn(index.take_warnings())
        self.last_decision = decision
        if "unranked" not in self._warned:
            info = index.first_unranked()
            if info is not None:
                self._warn_once(
                    "unranked",
                    "CheckpointPruner: the evaluation of %s did not report %s, so its rank cannot be computed; it is "
                    "kept (the pruner never deletes on missing information). Later checkpoints like it are kept "
                    "without another warning.",
                    info.path.name,
                    ", ".join(unranked(info, policy)),
                )
        for step, error in decision.keep_errors:
            logger.warning("CheckpointPruner: keep() raised on checkpoint-%d (%s); it is kept.", step, error)
        doomed = [index.path(step) for step in decision.deleted]
        if self.dry_run:
            if doomed:
                logger.info(
                    "CheckpointPruner (dry run) at step %d: would delete %s; keeps %s",
                    state.global_step,
                    ", ".join(p.name for p in doomed),
                    _Described(decision),
                )
            self._deleter.submit(
                Removal(step=state.global_step, names=tuple(p.name for p in doomed), dry_run=True), doomed
            )
            self._report_prune(args, state, kept=len(decision.kept), deleted=len(doomed))
            self._reconcile_after_prune()
            self._record_in_checkpoint(state, newest)
            return decision
        claims = claim_all(doomed)
        if claims.moved:
            logger.info(
                "CheckpointPruner at step %d: deleting %s; keeps %s",
                state.global_step,
                ", ".join(p.name for p, _ in claims.moved),
                _Described(decision),
            )
        self._deleter.submit(
            Removal(step=state.global_step, names=tuple(p.name for p, _ in claims.moved)),
            [t for _, t in claims.moved],
        )
        index.removed([p.name for p, _ in claims.moved] + [p.name for p in claims.gone])
        self.deleted_total += len(claims.moved)
        # a folder whose rename failed is still on disk, intact: it counts as kept, not deleted
        self._report_prune(args, state, kept=len(decision.kept) + len(claims.failed), deleted=len(claims.moved))
        self._reconcile_after_prune()
        self._record_in_checkpoint(state, newest)
        return decision

    def _record_in_checkpoint(self, state: Any, checkpoint: Path) -> None:
        """Write this prune into the checkpoint just saved, so that a resume from it continues from after it.

        The Trainer writes ``checkpoint-N/trainer_state.json`` (the log history, every callback's
        saved state) *before* ``on_save``, where the pruning happens: without this, a run resumed
        from ``checkpoint-N`` has neither that prune's ``checkpoint/kept|deleted`` entry in its log
        history nor its count in the pruner's totals, and ends with other figures than the
        uninterrupted run. So the pruner puts its state after the prune into the Trainer's
        in-memory ``stateful_callbacks`` entry and writes the Trainer's state again, as the Trainer
        does (``TrainerState.save_to_json``), atomically (``os.replace`` of a file written beside
        it). Only the processes that save call it (``on_save`` returns early elsewhere). Nothing is
        written when the checkpoint has no ``trainer_state.json`` (a customised save), or when
        several pruners share the class name (their entries form a list whose order is the
        Trainer's).
        """
        from transformers.trainer import TRAINER_STATE_NAME  # loaded already: the Trainer is running

        target = checkpoint / TRAINER_STATE_NAME
        saved = getattr(state, "stateful_callbacks", None)
        key = type(self).__name__
        if not target.is_file() or not isinstance(saved, dict) or not isinstance(saved.get(key), dict):
            return
        saved[key] = self.state()
        partial = target.with_name(f".{target.name}.{os.getpid()}.pruner")
        try:
            state.save_to_json(str(partial))
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            self._warn_once(
                f"record:{checkpoint.parent}",
                "CheckpointPruner: could not record the prune in %s (%s); a run resumed from it reports this "
                "prune's counts without it",
                target,
                exc,
            )

    def _reconcile_after_prune(self) -> None:
        """Start a background reconciliation now, unless the Trainer's flow starts one before each save anyway.

        With the Trainer, ``on_step_end``/``on_epoch_end`` see ``should_save`` before every save and start it then
        (closest to the save, once per save); a loop that never says so gets one after each prune instead.
        """
        if not self._announced:
            self._index.reconcile_soon()
        self._announced = False

    def _report_prune(self, args: Any, state: Any, *, kept: int, deleted: int) -> None:
        """What the save decided, at its step: known in ``on_save``, whatever the deleter thread does later."""
        self.prunes += 1
        self.report(args, state, {"checkpoint/kept": kept, "checkpoint/deleted": deleted}, step=state.global_step)

    def _report_removals(self, args: Any, state: Any, removals: list[Removal]) -> None:
        """What only the removals learn (bytes freed, failures), once, after waiting for all of them."""
        freed = sum(r.bytes_freed for r in removals)
        not_removed = sum(len(r.not_removed) for r in removals)
        if not any(r.dry_run for r in removals):
            self.bytes_freed_total += freed
        scalars = {"checkpoint/bytes_freed": freed}
        if not_removed:
            scalars["checkpoint/not_removed"] = not_removed
        self.report(args, state, scalars)

    def _warn(self, scan: ScanResult) -> None:
        for found in scan.newer:
            self._warn_once(
                f"newer:{found.path.name}",
                "CheckpointPruner: %s is from a later step than this run has reached (an earlier run in the same "
                "output_dir?). It is never deleted, but get_last_checkpoint / resume_from_checkpoint=True would pick "
                "it over this run's checkpoints: move it away or use a fresh output_dir.",
                found.path,
            )
        for name in scan.foreign:
            self._warn_once(
                f"foreign:{name}",
                "CheckpointPruner: %s is not a checkpoint folder the Trainer wrote (a symlink, a file, or a "
                "non-canonical step); it is left alone, but get_last_checkpoint may match it.",
                name,
            )
        for name in scan.unreadable:
            self._warn_once(f"unreadable:{name}", "CheckpointPruner: cannot list %s; it is left alone.", name)

    def _warn_once(self, key: str, message: str, *values: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *values)


class _Described:
    """The kept checkpoints of a decision, written out only if the log record is emitted (there may be thousands)."""

    LIMIT = 20

    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    def __str__(self) -> str:
        kept = sorted(self.decision.kept.items())
        text = ", ".join(f"checkpoint-{s} ({'+'.join(sorted(r))})" for s, r in kept[-self.LIMIT :]) or "nothing"
        return text if len(kept) <= self.LIMIT else f"{len(kept) - self.LIMIT} older and {text}"
