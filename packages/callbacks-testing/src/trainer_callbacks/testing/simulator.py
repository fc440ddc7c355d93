"""A Trainer-faithful simulation of the callback event stream.

:func:`simulate` drives callbacks through exactly the events, ``TrainerState`` fields and
``TrainerControl`` handling of ``transformers.Trainer.train()``, without data, forward
passes or wall-clock cost. It uses transformers' real ``CallbackHandler`` (with
``DefaultFlowCallback`` first, then the reporting integrations of ``args.report_to``,
then your callbacks, as the Trainer orders them), real ``TrainerState`` and
``TrainerControl``, and a real tiny torch model, optimizer and scheduler stepped where
the Trainer steps them. Each method below mirrors the ``Trainer`` method of the same
name; the differential tests in ``tests/testing`` check the two against each other.

It mirrors the ``Trainer`` of the transformers releases in :data:`TRANSFORMERS_VERSIONS`
(the versions the differential tests ran against); a :class:`Simulation` built under another
version warns once (:class:`SimulatorVersionWarning`), since the Trainer's loop, its rotation
and its checks change between releases. The arguments are checked by the Trainer's own
constructor check (``Trainer._validate_args``), so a configuration the Trainer refuses raises
the same ``ValueError`` here, and resuming from a folder that is not a checkpoint raises what
``Trainer.train`` raises. Checkpoint rotation follows the Trainer's modification-time rule,
with saves at least a second apart (see :mod:`.checkpoints`).

What is not simulated (the Trainer's behaviour there is out of scope for callbacks
tests): DeepSpeed/FSDP, mixed precision, ``auto_find_batch_size``, hyperparameter-search
backends (``trial``), memory metrics (``skip_memory_metrics=False``), pushing to the Hub,
the progress bar / printer callbacks (they only display), and counting input tokens
(``num_input_tokens_seen`` stays 0).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import torch
from transformers.trainer_callback import (
    CallbackHandler,
    DefaultFlowCallback,
    ExportableState,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from transformers.trainer_utils import SaveStrategy, TrainOutput, speed_metrics

from trainer_callbacks.core import compat
from trainer_callbacks.testing.checkpoints import PREFIX, CheckpointStore, SavedCheckpoint, trainer_state_json
from trainer_callbacks.testing.metric_source import (
    MetricsSource,
    as_eval_metrics,
    count_evaluations,
    metric_function,
)
from trainer_callbacks.testing.recording import Event
from trainer_callbacks.testing.schedule import TrainingPlan, dataloader_length, plan_training
from trainer_callbacks.testing.tiny_model import (
    TinyModel,
    build_optimizer,
    build_scheduler,
    current_learning_rate,
    default_loss_fn,
    is_metric_driven,
    optimizer_step_is_a_no_op,
)
from trainer_callbacks.testing.versions import require_kit_transformers

require_kit_transformers()  # under transformers 4.x (or 5.0-5.3): a clear error naming the kit's range

logger = logging.getLogger(__name__)

TRANSFORMERS_VERSIONS = ">=5.24,<5.25"
"""The transformers releases whose ``Trainer`` the simulator mirrors (a PEP 440 specifier).

The differential tests (``tests/testing/test_differential.py``, ``test_resume_differential.py``)
check the simulator against the installed ``Trainer``; widen this only after they pass on the new
release.
"""


class SimulatorVersionWarning(UserWarning):
    """The installed transformers is outside :data:`TRANSFORMERS_VERSIONS`: the simulation may not match it."""


_warned_versions: set[str] = set()


def check_transformers_version(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed transformers) is in :data:`TRANSFORMERS_VERSIONS`.

    Warns (:class:`SimulatorVersionWarning`, once per version and process) when it is not.
    """
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    if version is None:
        import transformers

        version = transformers.__version__
    if Version(version) in SpecifierSet(TRANSFORMERS_VERSIONS):
        return True
    if version not in _warned_versions:
        _warned_versions.add(version)
        warnings.warn(
            f"trainer_callbacks.testing.simulate mirrors the Trainer of transformers {TRANSFORMERS_VERSIONS}, "
            f"but transformers {version} is installed: simulated runs may differ from real ones. Run the "
            "simulator's differential tests (packages/callbacks-testing/tests) against this version, or "
            "install a mirrored one.",
            SimulatorVersionWarning,
            stacklevel=3,
        )
    return False


class _TrainerView:
    """What ``Trainer._validate_args`` reads of a ``Trainer``: the simulated one's; anything else is ``None``."""

    def __init__(self, args: Any, train_dataset: Any) -> None:
        self.args = args
        self.train_dataset = train_dataset
        self.eval_dataset = ()  # the simulator always evaluates on a dataset of its own

    def __getattr__(self, name: str) -> Any:
        return None


class _Unsized(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """A training set without a length (an ``IterableDataset``)."""

    def __iter__(self) -> Any:
        return iter(())


def validate_like_trainer(args: Any, *, train_dataset_has_length: bool) -> None:
    """Refuse what ``Trainer(args=args, ...)`` refuses, with the Trainer's own check and exception.

    Runs ``Trainer._validate_args`` (transformers >= 5.x) on a view of the simulated Trainer: an
    evaluation dataset, a training set with or without a length, no custom optimizer, collator,
    ``compute_metrics`` or ``model_init``.
    """
    compat.validate_trainer_args(_TrainerView(args, range(1) if train_dataset_has_length else _Unsized()))


def _exportable(objects: Iterable[Any]) -> list[TrainerCallback]:
    """The ``ExportableState`` objects among ``objects``, as the Trainer passes them to ``TrainerState``.

    transformers annotates ``TrainerState(stateful_callbacks=...)`` as ``list[TrainerCallback]``, but
    the Trainer passes every ``ExportableState``, ``TrainerControl`` included (not a ``TrainerCallback``).
    """
    return cast("list[TrainerCallback]", [cb for cb in objects if isinstance(cb, ExportableState)])


def _saved_callback_states(state: TrainerState) -> dict[str, Any]:
    """``state.stateful_callbacks``: the exported states keyed by class name (a list for duplicates).

    transformers annotates the field ``list[TrainerCallback] | None``, but ``TrainerState.__post_init__``
    always replaces it with this dict (``{}`` for ``None``), and a loaded ``trainer_state.json`` holds the dict.
    """
    return cast("dict[str, Any]", state.stateful_callbacks)


LossFn = Callable[[torch.nn.Module, int], torch.Tensor]


def default_losses(micro_step: int) -> float:
    """The training loss of micro-batch ``micro_step`` when no gradients are computed (slowly decreasing)."""
    return 2.0 / (1.0 + 0.01 * micro_step)


class _RecordingHandler(CallbackHandler):
    """transformers' ``CallbackHandler`` that also records each event before dispatching it."""

    def __init__(self, callbacks: Sequence[Any], model: Any, record: list[Event] | None) -> None:
        super().__init__(callbacks, model, None, None, None)
        self.record = record

    def call_event(self, event: str, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.record is not None:
            payload = kwargs.get("logs") if event == "on_log" else kwargs.get("metrics")
            self.record.append(
                Event(event, state.global_step, state.epoch, dict(payload) if payload is not None else None)
            )
        return super().call_event(event, args, state, control, **kwargs)


_RANK_CLASSES: dict[tuple[type, int, int, int], type] = {}


def as_process(
    args: Any, process_index: int, local_process_index: int | None = None, world_size: int | None = None
) -> Any:
    """A copy of ``args`` (still a ``TrainingArguments``) as seen by process ``process_index`` of ``world_size``.

    ``args.process_index``, ``local_process_index`` and ``world_size`` answer as on that
    process, so ``args.should_save`` and ``args.should_log`` do too. ``local_process_index``
    defaults to ``process_index`` (one node); ``world_size`` to ``process_index + 1`` (at least 2
    when ``process_index > 0``).
    """
    if process_index == 0 and not local_process_index and not world_size:
        return args
    local = process_index if local_process_index is None else local_process_index
    size = world_size or max(process_index + 1, 2 if process_index else 1)
    if not 0 <= process_index < size:
        raise ValueError(f"process_index={process_index} must be in [0, world_size={size})")
    base = type(args)
    key = (base, process_index, local, size)
    cls = _RANK_CLASSES.get(key)
    if cls is None:
        cls = type(
            base.__name__,
            (base,),
            {
                "process_index": property(lambda self: process_index),
                "local_process_index": property(lambda self: local),
                "world_size": property(lambda self: size),
                "__module__": base.__module__,
            },
        )
        _RANK_CLASSES[key] = cls
    clone = copy.copy(args)
    clone.__class__ = cls
    return clone


class Simulation:
    """A simulated ``Trainer``: call :meth:`train` (as often as you like, like ``Trainer.train``).

    Attributes:
        args: the ``TrainingArguments`` (as seen by the simulated process).
        state (TrainerState): the state of the latest ``train()``.
        control (TrainerControl): the Trainer's control object.
        events (list[Event]): every event dispatched, in order, across all ``train()`` calls.
        model, optimizer, lr_scheduler: the real torch objects handed to callbacks.
        callback_handler: transformers' ``CallbackHandler``; :attr:`callbacks` is its list.
        checkpoints (list[SavedCheckpoint]): the checkpoint folders that exist now, oldest first.
        train_output: the ``TrainOutput`` of the latest ``train()``.
    """

    def __init__(
        self,
        args: Any,
        callbacks: Iterable[TrainerCallback | type[TrainerCallback]] = (),
        metrics: MetricsSource = None,
        *,
        train_dataset_len: int | None = None,
        batches_per_epoch: int | None = None,
        steps_per_epoch: int | None = None,
        eval_dataset_len: int | None = None,
        model: torch.nn.Module | None = None,
        compute_gradients: bool = False,
        loss_fn: LossFn | None = None,
        losses: Callable[[int], float] | None = None,
        process_index: int = 0,
        local_process_index: int | None = None,
        world_size: int | None = None,
        save_checkpoints: bool = False,
        integrations: bool = True,
        record_events: bool = True,
    ) -> None:
        check_transformers_version()
        self.args = as_process(args, process_index, local_process_index, world_size)
        self.model = model if model is not None else TinyModel()
        self.metrics = metric_function(metrics)
        self.compute_gradients = compute_gradients
        self.loss_fn = loss_fn or default_loss_fn
        self.losses = losses or default_losses
        self.save_checkpoints = save_checkpoints
        self._len_dataloader, self._num_examples = dataloader_length(
            self.args,
            train_dataset_len=train_dataset_len,
            batches_per_epoch=batches_per_epoch,
            steps_per_epoch=steps_per_epoch,
        )
        validate_like_trainer(self.args, train_dataset_has_length=self._len_dataloader is not None)
        self._empty_train_dataset = train_dataset_len == 0
        eval_len = eval_dataset_len if eval_dataset_len is not None else self.args.per_device_eval_batch_size
        self._eval_samples = eval_len
        per_batch = self.args.per_device_eval_batch_size
        self._eval_batches = (
            eval_len // per_batch if self.args.dataloader_drop_last else math.ceil(eval_len / per_batch)
        )
        self.events: list[Event] = []
        default: list[Any] = [DefaultFlowCallback]
        if integrations and self.args.report_to:
            from transformers.integrations import get_reporting_integration_callbacks

            default += get_reporting_integration_callbacks(self.args.report_to)
        self.callback_handler = _RecordingHandler(
            default + list(callbacks), self.model, self.events if record_events else None
        )
        if save_checkpoints and self.args.should_save:
            os.makedirs(self.args.output_dir, exist_ok=True)
        self.optimizer: torch.optim.Optimizer | None = None
        self.lr_scheduler: Any = None
        self._created_lr_scheduler = False
        self._store = CheckpointStore(self.args.output_dir, write=save_checkpoints)
        self.train_output: TrainOutput | None = None
        self.control = TrainerControl()
        self.state = TrainerState(
            is_local_process_zero=self.args.local_process_index == 0,
            is_world_process_zero=self.args.process_index == 0,
            stateful_callbacks=_exportable([*self.callbacks, self.control]),
        )
        self.control = self.callback_handler.on_init_end(self.args, self.state, self.control)

    # ---- views ---------------------------------------------------------------------------
    @property
    def callbacks(self) -> list[Any]:
        return self.callback_handler.callbacks

    @property
    def checkpoints(self) -> list[SavedCheckpoint]:
        return [self._store.folders[p] for p in self._store.paths()]

    def checkpoint(self, step: int) -> SavedCheckpoint:
        """The existing checkpoint of ``step`` (``KeyError`` when there is none)."""
        path = os.path.join(self.args.output_dir, f"{PREFIX}-{step}")
        if path not in self._store.folders:
            raise KeyError(f"no checkpoint-{step}; existing: {[c.name for c in self.checkpoints]}")
        return self._store.folders[path]

    def events_named(self, *names: str) -> list[Event]:
        return [e for e in self.events if e.name in names]

    @property
    def logs(self) -> list[dict[str, Any]]:
        """The payloads of every ``on_log`` event."""
        return [e.payload or {} for e in self.events if e.name == "on_log"]

    # ---- Trainer.train -------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | SavedCheckpoint | None = None) -> TrainOutput:
        """``Trainer.train``: one training run, optionally resumed from a checkpoint."""
        args = self.args
        if resume_from_checkpoint is False:
            resume_from_checkpoint = None
        if self.save_checkpoints:
            self._store = CheckpointStore(args.output_dir, write=True, folders=self._store.folders)
        if resume_from_checkpoint is True:
            resume_from_checkpoint = self._store.last()
            if resume_from_checkpoint is None:
                raise ValueError(f"No valid checkpoint found in output directory ({args.output_dir})")
        saved: SavedCheckpoint | None = None
        if resume_from_checkpoint is not None:
            saved = self._store.load(resume_from_checkpoint)
            if not self._store.folders and saved.folders:
                self._store.folders.update(saved.folders)
            if saved.model_state is not None:  # Trainer._load_from_checkpoint
                self.model.load_state_dict(saved.model_state)

        if self._empty_train_dataset and args.train_sampling_strategy == "random":
            # Trainer.get_train_dataloader: torch's RandomSampler refuses an empty dataset (ValueError)
            torch.utils.data.RandomSampler(range(0))
        plan = plan_training(args, self._len_dataloader, self._num_examples)
        epochs_trained, steps_trained_in_current_epoch = self._init_training_state(plan, saved)
        self._prepare_for_training(plan, saved)

        start_time = time.time()
        self._start_time = start_time
        self._initial_num_input_tokens_seen = self.state.num_input_tokens_seen
        self._initial_global_step = self.state.global_step
        self._tr_loss = 0.0
        self._total_loss_scalar = 0.0
        self._globalstep_last_logged = self.state.global_step
        self._eval_index = count_evaluations(self.state.log_history)
        self.model.zero_grad()

        self.control = self.callback_handler.on_train_begin(args, self.state, self.control)
        if args.eval_on_start:
            self._evaluate(skip_scheduler=True)
        for epoch in range(epochs_trained, plan.num_train_epochs):
            self.control = self.callback_handler.on_epoch_begin(args, self.state, self.control)
            self._run_epoch(plan, epoch, saved is not None, epochs_trained, steps_trained_in_current_epoch)
            if self.control.should_training_stop:
                break
        self.train_output = self._finalize_training(plan, start_time)
        return self.train_output

    def _init_training_state(self, plan: TrainingPlan, saved: SavedCheckpoint | None) -> tuple[int, int]:
        args = self.args
        self.state = TrainerState(stateful_callbacks=_exportable([*self.callbacks, self.control]))
        self.state.is_hyper_param_search = False
        self.state.train_batch_size = args.train_batch_size
        self.state.compute_steps(args, plan.max_steps)
        epochs_trained, steps_trained = 0, 0
        if saved is not None and saved.trainer_state is not None:
            from transformers.trainer_utils import compare_trainer_and_checkpoint_args

            self.state = saved.load_state()
            best = self.state.best_model_checkpoint
            if best is not None and not self._store.exists(best):
                logger.warning("The best checkpoint %s recorded in the resumed state does not exist anymore.", best)
                self.state.best_model_checkpoint = None
            compare_trainer_and_checkpoint_args(args, self.state)
            self._load_callback_state()
            epochs_trained, steps_trained = plan.resume_position(self.state.global_step, args)
        # TrainerState.init_training_references
        self.state.trial_params = None
        self.state.max_steps = plan.max_steps
        self.state.num_train_epochs = plan.num_train_epochs
        self.state.is_local_process_zero = args.local_process_index == 0
        self.state.is_world_process_zero = args.process_index == 0
        return epochs_trained, steps_trained

    def _load_callback_state(self) -> None:
        """``Trainer._load_callback_state``, line for line."""
        if not self.args.restore_callback_states_from_checkpoint:
            return
        not_found = []
        new_callbacks = []
        original_callbacks = [*self.callback_handler.callbacks, self.control]
        for stored_callback, data in _saved_callback_states(self.state).items():
            if not isinstance(data, list):
                data = [data]
            if any(callback.__class__.__name__ == stored_callback for callback in original_callbacks):
                duplicates = [cb for cb in original_callbacks if cb.__class__.__name__ == stored_callback]
                for callback, callback_data in zip(duplicates, data):
                    new_callback = type(callback)(**callback_data.get("args", {}))
                    for attribute, value in callback_data.get("attributes", {}).items():
                        setattr(new_callback, attribute, value)
                    if isinstance(callback, TrainerControl):
                        self.control = new_callback
                    else:
                        new_callbacks.append(new_callback)
                    self.callback_handler.remove_callback(type(new_callback))
            else:
                not_found.append(stored_callback)
        if not_found:
            logger.warning(
                "Checkpoint included callbacks not included in current configuration. Ignoring. (%s)",
                ", ".join(not_found),
            )
        for callback in new_callbacks:
            self.callback_handler.add_callback(callback)

    def _prepare_for_training(self, plan: TrainingPlan, saved: SavedCheckpoint | None) -> None:
        if self._created_lr_scheduler:
            self.lr_scheduler = None
            self._created_lr_scheduler = False
        if self.optimizer is None:
            self.optimizer = build_optimizer(self.args, self.model)
        if self.lr_scheduler is None:
            self.lr_scheduler = build_scheduler(self.args, self.optimizer, plan.max_steps)
            self._created_lr_scheduler = True
        if saved is not None:  # Trainer._load_optimizer_and_scheduler
            if saved.optimizer_state is not None:
                self.optimizer.load_state_dict(saved.optimizer_state)
            if saved.scheduler_state is not None:
                self.lr_scheduler.load_state_dict(saved.scheduler_state)
        handler = self.callback_handler
        handler.model, handler.optimizer, handler.lr_scheduler = self.model, self.optimizer, self.lr_scheduler
        if plan.batches_per_epoch is not None:
            # A range is a map-style dataset (``__len__`` + ``__getitem__``); torch's annotation wants a Dataset.
            handler.train_dataloader = torch.utils.data.DataLoader(
                cast("torch.utils.data.Dataset[int]", range(plan.num_examples)),
                batch_size=self.args.per_device_train_batch_size,
                drop_last=self.args.dataloader_drop_last,
            )

    # ---- Trainer._run_epoch --------------------------------------------------------------
    def _run_epoch(
        self, plan: TrainingPlan, epoch: int, resuming: bool, epochs_trained: int, steps_trained_in_current_epoch: int
    ) -> None:
        args, state, handler = self.args, self.state, self.callback_handler
        ga = args.gradient_accumulation_steps
        steps_in_epoch = plan.steps_in_epoch
        step = -1
        grad_norm: Any = None
        learning_rate: float | None = None
        num_update_steps_trained = 0
        batches_left = plan.batches_per_epoch if plan.batches_per_epoch is not None else math.inf
        if epoch == epochs_trained and resuming and steps_trained_in_current_epoch > 0 and not args.ignore_data_skip:
            step = steps_trained_in_current_epoch - 1
            num_update_steps_trained = steps_trained_in_current_epoch // ga
            batches_left -= steps_trained_in_current_epoch
        remainder = steps_in_epoch % ga or ga
        last_update = plan.num_update_steps_per_epoch - 1
        compute_gradients, model, optimizer, scheduler = (
            self.compute_gradients,
            self.model,
            self.optimizer,
            self.lr_scheduler,
        )
        assert optimizer is not None
        step_scheduler = not is_metric_driven(scheduler)
        nan_filter = args.logging_nan_inf_filter
        max_grad_norm = args.max_grad_norm
        on_step_begin, on_substep_end = handler.on_step_begin, handler.on_substep_end
        on_pre_optimizer_step, on_optimizer_step = handler.on_pre_optimizer_step, handler.on_optimizer_step
        on_step_end = handler.on_step_end
        micro_base = epoch * steps_in_epoch

        for update_step in range(num_update_steps_trained, plan.num_update_steps_per_epoch):
            num_batches = ga if update_step != last_update else remainder
            num_batches = int(min(num_batches, max(batches_left, 0)))
            batches_left -= num_batches
            current_gas = num_batches
            for _i in range(num_batches):
                step += 1
                do_sync_step = (step + 1) % ga == 0 or (step + 1) == steps_in_epoch
                if step % ga == 0:
                    self.control = on_step_begin(args, state, self.control)
                if compute_gradients:
                    loss = self.loss_fn(model, micro_base + step) / current_gas
                    loss.backward()
                    tr_loss_step = float(loss.detach())
                else:
                    tr_loss_step = self.losses(micro_base + step) / current_gas
                if nan_filter and not math.isfinite(tr_loss_step):
                    self._tr_loss += self._tr_loss / (1 + state.global_step - self._globalstep_last_logged)
                else:
                    self._tr_loss += tr_loss_step

                if do_sync_step:
                    if compute_gradients:
                        norm = max_grad_norm if max_grad_norm > 0 else float("inf")
                        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), norm)
                    else:
                        grad_norm = 0.0  # what clip_grad_norm_ returns when no parameter has a gradient
                    self.control = on_pre_optimizer_step(args, state, self.control)
                    if compute_gradients or not optimizer_step_is_a_no_op(optimizer):
                        optimizer.step()
                    else:
                        compat.mark_optimizer_stepped(optimizer)  # what step() would flag
                    self.control = on_optimizer_step(args, state, self.control)
                    learning_rate = current_learning_rate(optimizer, scheduler)
                    if step_scheduler:
                        scheduler.step()
                    if compute_gradients:
                        model.zero_grad()
                    state.global_step += 1
                    state.epoch = epoch + (step + 1) / steps_in_epoch
                    self.control = on_step_end(args, state, self.control)
                    self._maybe_log_save_evaluate(grad_norm, learning_rate)
                else:
                    self.control = on_substep_end(args, state, self.control)
                if self.control.should_epoch_stop or self.control.should_training_stop:
                    break
            if self.control.should_epoch_stop or self.control.should_training_stop:
                break

        if step < 0:
            logger.warning(
                "There seems not to be a single sample in your epoch_iterator, stopping training at step %d",
                state.global_step,
            )
            self.control.should_training_stop = True
        self.control = handler.on_epoch_end(args, state, self.control)
        self._maybe_log_save_evaluate(grad_norm, learning_rate)

    # ---- Trainer._maybe_log_save_evaluate and friends ------------------------------------
    def _maybe_log_save_evaluate(self, grad_norm: Any, learning_rate: float | None) -> None:
        state = self.state
        if self.control.should_log and state.global_step > self._globalstep_last_logged:
            tr_loss_scalar = self._tr_loss
            self._tr_loss = 0.0
            logs: dict[str, float] = {"loss": tr_loss_scalar / (state.global_step - self._globalstep_last_logged)}
            if grad_norm is not None:
                logs["grad_norm"] = grad_norm.item() if isinstance(grad_norm, torch.Tensor) else grad_norm
            if learning_rate is not None:
                logs["learning_rate"] = learning_rate
            else:
                logs["learning_rate"] = current_learning_rate(self.optimizer, self.lr_scheduler)  # type: ignore[arg-type]
            self._total_loss_scalar += tr_loss_scalar
            self._globalstep_last_logged = state.global_step
            self.log(logs, self._start_time)
        if self.control.should_evaluate:
            metrics = self._evaluate()
            is_new_best_metric = self._determine_best_metric(metrics)
            if self.args.save_strategy == SaveStrategy.BEST:
                self.control.should_save = is_new_best_metric
        if self.control.should_save:
            self._save_checkpoint()
            self.control = self.callback_handler.on_save(self.args, self.state, self.control)

    def log(self, logs: dict[str, Any], start_time: float | None = None) -> None:
        """``Trainer.log``."""
        state = self.state
        if state.epoch is not None:
            logs["epoch"] = state.epoch
        if self.args.include_num_input_tokens_seen not in ("no", False, None):
            logs["num_input_tokens_seen"] = state.num_input_tokens_seen
            if start_time is not None:
                tokens = state.num_input_tokens_seen - self._initial_num_input_tokens_seen
                logs.update(speed_metrics("train", start_time, num_tokens=tokens))
        state.log_history.append({**logs, "step": state.global_step})
        self.control = self.callback_handler.on_log(self.args, state, self.control, logs)

    def _evaluate(self, skip_scheduler: bool = False) -> dict[str, Any]:
        metrics = self.evaluate()
        if is_metric_driven(self.lr_scheduler) and not skip_scheduler:
            metric_to_check = self._metric_to_check()
            try:
                self.lr_scheduler.step(metrics[metric_to_check])
            except KeyError as exc:
                raise KeyError(
                    f"The `metric_for_best_model` training argument is set to '{metric_to_check}', which is not "
                    f"found in the evaluation metrics. The available evaluation metrics are: {list(metrics.keys())}."
                ) from exc
        return metrics

    def evaluate(self) -> dict[str, Any]:
        """``Trainer.evaluate``: ``on_prediction_step`` per eval batch, the metrics, ``log``, ``on_evaluate``."""
        args, handler = self.args, self.callback_handler
        start_time = time.time()
        for _ in range(self._eval_batches):
            self.control = handler.on_prediction_step(args, self.state, self.control)
        metrics = as_eval_metrics(self.metrics(self._eval_index, self.state.global_step))
        self._eval_index += 1
        total_batch_size = args.eval_batch_size * args.world_size
        metrics.update(
            speed_metrics(
                "eval",
                start_time,
                num_samples=self._eval_samples,
                num_steps=math.ceil(self._eval_samples / total_batch_size),
            )
        )
        self.log(metrics)
        self.control = handler.on_evaluate(args, self.state, self.control, metrics)
        return metrics

    def _metric_to_check(self) -> str:
        name = self.args.metric_for_best_model
        return name if name.startswith("eval_") else f"eval_{name}"

    def _determine_best_metric(self, metrics: dict[str, Any]) -> bool:
        """``Trainer._determine_best_metric``."""
        import numpy as np

        args, state = self.args, self.state
        if args.metric_for_best_model is None:
            return False
        metric_to_check = self._metric_to_check()
        try:
            metric_value = metrics[metric_to_check]
        except KeyError as exc:
            raise KeyError(
                f"The `metric_for_best_model` training argument is set to '{metric_to_check}', which is not found "
                f"in the evaluation metrics. The available evaluation metrics are: {list(metrics.keys())}. "
                "Consider changing the `metric_for_best_model` via the TrainingArguments."
            ) from exc
        operator = np.greater if args.greater_is_better else np.less
        if state.best_metric is None:
            state.best_metric = float("-inf") if args.greater_is_better else float("inf")
        if operator(metric_value, state.best_metric):
            state.best_metric = metric_value
            if args.save_strategy in [SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST]:
                state.best_global_step = state.global_step
            return True
        return False

    def _save_checkpoint(self) -> None:
        """``Trainer._save_checkpoint``."""
        args, state = self.args, self.state
        run_dir = args.output_dir
        output_dir = os.path.join(run_dir, f"{PREFIX}-{state.global_step}")
        if args.save_strategy in [SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST] and state.best_global_step:
            best_checkpoint_dir = os.path.join(run_dir, f"{PREFIX}-{state.best_global_step}")
            if best_checkpoint_dir == output_dir or self._store.exists(best_checkpoint_dir):
                state.best_model_checkpoint = best_checkpoint_dir
        state_text = None
        if args.should_save:
            saved_states = _saved_callback_states(state)
            for cb in [
                cb for cb in [*self.callback_handler.callbacks, self.control] if isinstance(cb, ExportableState)
            ]:
                cb_name = cb.__class__.__name__
                cb_state = cb.state()
                if isinstance(saved_states[cb_name], list):
                    saved_states[cb_name].append(cb_state)
                else:
                    saved_states[cb_name] = cb_state
            state_text = trainer_state_json(state)
        self._store.save(
            output_dir,
            state.global_step,
            state_text,
            should_save=args.should_save,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.lr_scheduler,
            save_only_model=args.save_only_model,
        )
        if args.should_save:
            self._store.rotate(args.save_total_limit, state.best_model_checkpoint, should_save=True)

    def _finalize_training(self, plan: TrainingPlan, start_time: float) -> TrainOutput:
        """``Trainer._finalize_training``."""
        args, state = self.args, self.state
        self._total_loss_scalar += self._tr_loss
        num_steps_trained = state.global_step - self._initial_global_step
        train_loss = self._total_loss_scalar / max(num_steps_trained, 0.001)
        metrics = speed_metrics(
            "train",
            start_time,
            num_samples=plan.num_train_samples * num_steps_trained / max(state.max_steps, 1),
            num_steps=num_steps_trained,
        )
        metrics["total_flos"] = state.total_flos
        metrics["train_loss"] = train_loss
        self.log(metrics)
        best = state.best_model_checkpoint
        if args.load_best_model_at_end and best is not None:
            self._load_best_model(best)
        if args.should_save and best is not None and args.save_total_limit == 1:
            self._store.keep_only(best, should_save=True)
        self.control = self.callback_handler.on_train_end(args, state, self.control)
        for saved in self._store.folders.values():
            saved.folders = self._store.snapshot()
        return TrainOutput(state.global_step, train_loss, metrics)

    def _load_best_model(self, best: str) -> None:
        saved = self._store.folders.get(best)
        if saved is None or saved.model_state is None:
            if not os.path.isdir(best):
                logger.warning("Could not locate the best model at %s", best)
                return
            from trainer_callbacks.testing.checkpoints import read_checkpoint

            saved = read_checkpoint(best)
        if saved.model_state is not None:
            self.model.load_state_dict(saved.model_state)


def simulate(
    args: Any,
    callbacks: Iterable[TrainerCallback | type[TrainerCallback]] = (),
    metrics: MetricsSource = None,
    *,
    resume_from_checkpoint: str | bool | SavedCheckpoint | None = None,
    **options: Any,
) -> Simulation:
    """Simulate ``Trainer(args=args, callbacks=callbacks).train(resume_from_checkpoint)``, return the simulation.

    Args:
        args (TrainingArguments): the arguments, exactly as you would give them to the Trainer.
        callbacks (list): callback instances or classes (the Trainer's own come first).
        metrics: the evaluation metrics: ``None`` (an improving ``eval_loss``), a function
            ``(eval_index, global_step) -> dict`` or a sequence of dicts, one per evaluation
            (see :mod:`.metric_source`); keys get the ``eval_`` prefix unless they have it.
        resume_from_checkpoint: a checkpoint folder (one the simulator or a real Trainer
            wrote), a :class:`SavedCheckpoint` of an earlier simulation, or ``True`` (the latest
            checkpoint in ``args.output_dir``).
        **options: keyword options of :class:`Simulation`:
            ``train_dataset_len`` / ``batches_per_epoch`` / ``steps_per_epoch`` (size of an
            epoch; none of them = a dataloader without length, which needs ``max_steps``),
            ``eval_dataset_len`` (default one eval batch), ``model`` (default :class:`TinyModel`),
            ``compute_gradients`` (real forward/backward per micro-batch, default off),
            ``loss_fn(model, micro_step) -> loss`` (with ``compute_gradients``),
            ``losses(micro_step) -> float`` (without), ``process_index`` / ``local_process_index`` /
            ``world_size`` (simulate another rank: ``args.should_save`` and
            ``state.is_world_process_zero`` follow), ``save_checkpoints`` (write real
            ``checkpoint-N`` folders under ``args.output_dir``; default ``False``: checkpoints
            are kept in memory and nothing is written), ``integrations`` (add the
            ``report_to`` callbacks, default ``True``), ``record_events`` (default ``True``).
    """
    simulation = Simulation(args, callbacks, metrics, **options)
    simulation.train(resume_from_checkpoint=resume_from_checkpoint)
    return simulation
