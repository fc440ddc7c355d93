"""The one module that touches private or fragile internals of transformers, torch, accelerate, mlflow, tensorboard.

A callback is handed ``args``, ``state``, ``control`` and a few objects; some things the
plugins need are not among them (the sibling callbacks, the trial folder of a
hyperparameter search, the end of the backward pass...) and can only be reached through
internals. Every such reach is a named function here, listed in :data:`ASSUMPTIONS` with
what it relies on, the public route where one exists (used where there is one) and what a
run loses when the assumption breaks. Each was checked against :data:`CHECKED_AGAINST`.

When an assumption fails at run time, the function warns ONCE (a :class:`CompatWarning`
and a log record) naming the assumption and the installed versions, then degrades as its
entry says; nothing degrades silently. ``tests/test_compat.py`` asserts every assumption
directly against the installed libraries, one test per name, so an upgrade that breaks one
fails there by name.

Importing this module imports neither torch nor transformers: every function imports what
it needs, or looks the class up in ``sys.modules`` (an object of a class that was never
imported cannot exist).
"""

from __future__ import annotations

import logging
import sys
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

logger = logging.getLogger(__name__)

CHECKED_AGAINST: Mapping[str, str] = {
    "transformers": "5.24",
    "torch": "2.13",
    "accelerate": "1.15",
    "mlflow-skinny": "3.17",
    "tensorboard": "2.21",
    "deepspeed": "0.19.8",
}
"""The versions every assumption below was read from and tested with."""


class CompatWarning(RuntimeWarning):
    """An assumption about another library's internals no longer holds (see :data:`ASSUMPTIONS`)."""


@dataclass(frozen=True)
class Assumption:
    """One reach into another library: what it relies on, the public route, what breaks without it."""

    name: str
    relies_on: str
    public_route: str
    when_broken: str


ASSUMPTIONS: Mapping[str, Assumption] = {
    a.name: a
    for a in (
        Assumption(
            "handler-on-stack",
            "transformers' CallbackHandler.call_event dispatches every event, so the handler is `self` of a "
            "calling frame; a Trainer on the stack holds it as `trainer.callback_handler`",
            "none: callbacks are not handed their siblings",
            "cross-plugin validation sees only the calling callback, and plugin scalars reach log_history only "
            "(not TensorBoard/MLflow)",
        ),
        Assumption(
            "trainer-on-stack",
            "a transformers Trainer method (_inner_training_loop, _maybe_log_save_evaluate) is on the call stack "
            "of every training event, with its locals `trial` and `resume_from_checkpoint`",
            "none: callbacks are not handed the Trainer",
            "the trial folder falls back to state.trial_name / args.output_dir; the resume point is unknown",
        ),
        Assumption(
            "trial-output-dir",
            "Trainer._get_output_dir(trial) is the folder of this run's checkpoints (the trial folder under "
            "hyperparameter_search); Trainer._trial holds the current trial",
            "state.trial_name, only when hyperparameter_search(hp_name=...) is given",
            "the trial folder falls back to state.trial_name / args.output_dir",
        ),
        Assumption(
            "stateful-callbacks-key",
            "the Trainer saves each ExportableState callback's state() in state.stateful_callbacks under its class "
            "name (a list when several instances share it) and restores by that name",
            "none: TrainerState keeps it as a plain dict keyed by the class name",
            "a resumed run finds no saved progress and starts the callback afresh (with its own warning)",
        ),
        Assumption(
            "tracker-callbacks",
            "args.report_to names the integrations, and the Trainer adds one transformers.integrations."
            "TensorBoardCallback / MLflowCallback instance per name to its handler",
            "used: isinstance against the public classes, checked against args.report_to",
            "plugin scalars do not reach that tracker",
        ),
        Assumption(
            "tensorboard-writer",
            "TensorBoardCallback.tb_writer is the open SummaryWriter during training (None after its "
            "on_train_end closed it) and TensorBoardCallback.logging_dir its run directory (transformers 5.x); "
            "transformers 4.x has no logging_dir: the run directory is the open writer's log_dir, else "
            "args.logging_dir (what its on_train_begin opens outside a hyperparameter search)",
            "tb_writer is the class's documented constructor argument; logging_dir has none",
            "plugin scalars reported after the Trainer closed its writer do not reach TensorBoard",
        ),
        Assumption(
            "mlflow-active-run",
            "MLflowCallback starts (or joins) the run that mlflow.active_run() returns while training",
            "used: mlflow.active_run() (MLflowCallback._initialized is no longer read)",
            "plugin scalars do not reach MLflow",
        ),
        Assumption(
            "scheduler-children",
            "torch SequentialLR / ChainedScheduler keep their child schedulers in the list `_schedulers`",
            "none (state_dict()['_schedulers'] holds the children's states, not the objects)",
            "ReduceLROnPlateau refuses the composite scheduler (it could not rewrite the children's peaks)",
        ),
        Assumption(
            "scheduler-last-lr",
            "LRScheduler._last_lr is what get_last_lr() returns (the Trainer logs it as learning_rate)",
            "get_last_lr() reads it; there is no public setter",
            "after a plateau cut the logged learning_rate shows the old value until the next scheduler step",
        ),
        Assumption(
            "scheduler-initial-lr",
            "a torch LRScheduler built with last_epoch=-1 takes an existing param-group 'initial_lr' "
            "(setdefault) as its base_lrs",
            "documented behaviour of LRScheduler(last_epoch=-1) (no access: lr/scaling.py relies on it)",
            "a reduced peak would not carry over to a scheduler rebuilt on resume",
        ),
        Assumption(
            "transformers-scheduler-classes",
            "transformers.optimization defines GreedyLR (from transformers 5.4 on), AdafactorSchedule and "
            "LayerWiseDummyScheduler (also in transformers.trainer_pt_utils)",
            "used: isinstance against the classes (they were matched by class-name strings)",
            "ReduceLROnPlateau no longer refuses that scheduler",
        ),
        Assumption(
            "dtensor-local",
            "DTensor.to_local() under no_grad returns the local shard without a copy",
            "used: DTensor.to_local() (DTensor._local_tensor is no longer read)",
            "(public API: no fallback needed)",
        ),
        Assumption(
            "autograd-final-callback",
            "torch.autograd.Variable._execution_engine.queue_callback(fn) runs fn when the current backward pass "
            "ends, and a callback queued from inside such a callback runs in the same pass",
            "none in torch 2.13 (FSDP2 and DDP use the same engine callback)",
            "gradviz measures nothing (its own warning names the missing capture)",
        ),
        Assumption(
            "accelerate-sync-gradients",
            "accelerate.state.GradientState().sync_gradients is True exactly on the last micro-batch of an "
            "optimizer step (the Trainer sets it before each micro-batch's forward)",
            "Accelerator.sync_gradients (the accelerator is not handed to callbacks)",
            "every micro-batch counts as the last one (the last one still wins: norms stay right, one hook per "
            "micro-batch is wasted)",
        ),
        Assumption(
            "accelerate-grad-scaler",
            "accelerate's AcceleratedOptimizer keeps the fp16 GradScaler in its attribute `scaler`",
            "Accelerator.scaler (the accelerator is not handed to callbacks)",
            "under fp16 gradviz reports the loss-scaled norms and treats overflow steps as non-finite",
        ),
        Assumption(
            "grad-scaler-scale",
            "GradScaler.get_scale() is the factor the gradients are still multiplied by before unscale_",
            "used: GradScaler.get_scale() (a host sync; GradScaler._scale is no longer read)",
            "(public API: no fallback needed)",
        ),
        Assumption(
            "foreach-ops",
            "torch._foreach_norm(tensors, ord, dtype=...), torch._foreach_mul and torch._foreach_sub_ "
            "(documented beta 'foreach' ops; clip_grad_norm_ uses _foreach_norm)",
            "torch.linalg.vector_norm / clone / sub_ per tensor (one kernel launch per tensor)",
            "per-tensor fallback: same values, slower",
        ),
        Assumption(
            "optimizer-step-hooks",
            "torch.optim.Optimizer keeps step hooks in _optimizer_step_pre_hooks / _optimizer_step_post_hooks "
            "(and module-level _global_optimizer_*_hooks), and LRScheduler.step() reads optimizer._opt_called "
            "(test kit only)",
            "register_optimizer_step_*_hook registers hooks; nothing public lists them",
            "the simulator calls optimizer.step() on every step (slower, same result)",
        ),
        Assumption(
            "trainer-validate-args",
            "Trainer._validate_args(self) holds the constructor's checks of the arguments against the Trainer's "
            "datasets, model and functions (transformers >= 5.x; 4.x checks inline in __init__) and reads only "
            "attributes of self (test kit only)",
            "none: the checks run inside Trainer.__init__, which needs a model and builds an Accelerator",
            "the simulator accepts a configuration the real Trainer refuses (its differential tests show it)",
        ),
        Assumption(
            "callback-state-restore",
            "with restore_callback_states_from_checkpoint=True, Trainer._load_callback_state rebuilds each "
            "ExportableState callback as type(cb)(**args) and sets its saved attributes (PluginCallback's "
            "`progress`) from that Trainer method, so the Trainer's callback_handler is on the stack of the "
            "setter; then it swaps the rebuilt object into the handler",
            "none: the Trainer offers no hook around its callback restore",
            "the user's callback object is not put back in the handler: the Trainer's rebuilt copy runs and "
            "the user's own reference does not see the run",
        ),
        Assumption(
            "deepspeed-zero-optimizer",
            "accelerate's DeepSpeedOptimizerWrapper keeps DeepSpeed's ZeRO optimizer in `optimizer`; it is a "
            "DeepSpeedZeroOptimizer (stages 1 and 2; `partition_gradients` tells 2 from 1) or a "
            "DeepSpeedZeroOptimizer_Stage3, with `dp_process_group`, `loss_scale` and the offload flags "
            "`cpu_offload` (1/2) / `offload_optimizer` (3) (deepspeed 0.19)",
            "DeepSpeedEngine.optimizer and zero_optimization_stage() (the engine is not handed to callbacks)",
            "gradviz says at train begin that it cannot measure this run under DeepSpeed, and logs no group norms",
        ),
        Assumption(
            "deepspeed-grad-partitions",
            "when ZeRO's optimizer.step() starts, `averaged_gradients[i]` holds this rank's reduced, unclipped, "
            "loss-scaled gradient slices of param group i: for stages 1/2 one tensor per parameter of "
            "`params_in_partition[i]` in order, padding tensors marked `_zero_padding` or trailing; for stage 3 "
            "one tensor per parameter of `fp16_groups[i]` (its ds_tensor partition); every rank's slices together hold "
            "each gradient exactly once (deepspeed 0.19: what get_grad_norm_direct sums)",
            "deepspeed.utils.safe_get_local_grad(param) (ZeRO-3 only, one call and copy per parameter) and "
            "safe_get_full_grad(param) (gathers the full gradient: one collective per parameter)",
            "gradviz warns once and logs no group norms for the step",
        ),
        Assumption(
            "deepspeed-step-hook",
            "DeepSpeedEngine.step() calls `self.optimizer.step()` by attribute lookup, so a wrapper set on the "
            "ZeRO optimizer instance runs first, after the gradients are reduced and before the clip and update",
            "none: DeepSpeed's optimizers are not torch.optim.Optimizer and have no step hooks",
            "gradviz measures nothing (it warns that the step was not observed)",
        ),
        Assumption(
            "deepspeed-lr-schedules",
            "DeepSpeed's config schedulers compute each group's LR from absolute per-group lists: WarmupLR and "
            "WarmupDecayLR from `min_lrs`, `max_lrs`, `delta_lrs` (max - min), WarmupCosineLR from `org_lrs` "
            "(times a ratio); their state_dict() holds only last_batch_iteration (deepspeed 0.19)",
            "none: the schedulers take the LRs as constructor arguments only",
            "ReduceLROnPlateau refuses a DeepSpeed-config scheduler (ConfigurationError at train begin)",
        ),
    )
}
"""Every assumption this module makes, by name (``tests/test_compat.py`` has ``test_<name>`` for each)."""

_WARNED: set[str] = set()


def installed_versions() -> dict[str, str]:
    """The installed version of each library in :data:`CHECKED_AGAINST` (``"not installed"`` when absent)."""
    out = {}
    for name in CHECKED_AGAINST:
        candidates = ("mlflow-skinny", "mlflow") if name == "mlflow-skinny" else (name,)
        version = "not installed"
        for dist in candidates:
            try:
                version = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        out[name] = version
    return out


def broken(name: str, detail: str) -> None:
    """Warn once per process that assumption ``name`` failed: what happened, what the run loses, the versions."""
    if name in _WARNED:
        return
    _WARNED.add(name)
    a = ASSUMPTIONS[name]
    installed = ", ".join(f"{k} {v}" for k, v in installed_versions().items())
    checked = ", ".join(f"{k} {v}" for k, v in CHECKED_AGAINST.items())
    message = (
        f"trainer-callbacks: the assumption {name!r} no longer holds ({detail}). It relies on: {a.relies_on}. "
        f"Consequence: {a.when_broken}. Installed: {installed}; checked against: {checked}. "
        "Please report this with the versions above."
    )
    logger.warning(message)
    warnings.warn(message, CompatWarning, stacklevel=3)


def _loaded(module: str, attr: str) -> Any:
    """``module.attr`` if the module is already imported, else ``None`` (no import: nothing of it can exist)."""
    mod = sys.modules.get(module)
    return getattr(mod, attr, None) if mod is not None else None


# ---- the Trainer on the call stack (transformers 5.24) -----------------------------------------
# handler-on-stack / trainer-on-stack: callbacks are handed neither their handler nor the Trainer.


def _stack_owner(kinds: tuple[type, ...]) -> tuple[Any, Any]:
    """The innermost calling frame whose ``self`` is one of ``kinds``, and that object."""
    frame = sys._getframe(2)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if owner is not None and isinstance(owner, kinds):
            return frame, owner
        frame = frame.f_back  # type: ignore[assignment]
    return None, None


def callback_handler() -> Any | None:
    """The ``CallbackHandler`` dispatching the current event; ``None`` outside a Trainer/handler.

    Checked against transformers 5.24 (``CallbackHandler.call_event``). Public route: none.
    When a Trainer is on the stack but no handler frame is above it, warns once
    (``handler-on-stack``) and answers with the Trainer's public ``callback_handler``.
    """
    handler_cls = _loaded("transformers.trainer_callback", "CallbackHandler")
    if handler_cls is None:
        return None
    trainer_cls = _loaded("transformers.trainer", "Trainer")
    kinds = (handler_cls,) if trainer_cls is None else (handler_cls, trainer_cls)
    _, owner = _stack_owner(kinds)
    if owner is None or isinstance(owner, handler_cls):
        return owner
    handler = getattr(owner, "callback_handler", None)
    broken(
        "handler-on-stack",
        f"{type(owner).__name__} is on the call stack but no CallbackHandler frame is above it"
        + ("; using trainer.callback_handler" if isinstance(handler, handler_cls) else ""),
    )
    return handler if isinstance(handler, handler_cls) else None


def _trainer_frame() -> tuple[Any, Mapping[str, Any]]:
    trainer_cls = _loaded("transformers.trainer", "Trainer")
    if trainer_cls is None:
        return None, {}
    frame, owner = _stack_owner((trainer_cls,))
    return owner, (frame.f_locals if frame is not None else {})


def dispatching_trainer() -> Any | None:
    """The ``transformers.Trainer`` whose method dispatched the current event; ``None`` outside one.

    Checked against transformers 5.24. Public route: none (callbacks are not handed the Trainer).
    """
    return _trainer_frame()[0]


def restoring_callback_handler() -> Any | None:
    """The ``CallbackHandler`` of the Trainer (or simulator) setting a callback's saved attributes now.

    For a property setter of an ``ExportableState`` callback: the nearest calling frame whose
    ``self`` holds a ``callback_handler`` (transformers 5.24: ``Trainer._load_callback_state``);
    ``None`` when the attribute is set anywhere else. Public route: none (``callback-state-restore``).
    """
    handler_cls = _loaded("transformers.trainer_callback", "CallbackHandler")
    if handler_cls is None:
        return None
    frame = sys._getframe(2)
    while frame is not None:
        handler = getattr(frame.f_locals.get("self"), "callback_handler", None)
        if isinstance(handler, handler_cls):
            return handler
        frame = frame.f_back  # type: ignore[assignment]
    return None


_MISSING = object()


def trial_output_dir() -> str | None:
    """The folder the dispatching Trainer writes this run's checkpoints to; ``None`` without a Trainer.

    ``Trainer._get_output_dir(trial)`` with the ``trial`` local of the dispatching method
    (``_inner_training_loop`` / ``_maybe_log_save_evaluate``), else ``Trainer._trial``.
    Checked against transformers 5.24. Public route: ``state.trial_name`` (only with ``hp_name``).
    """
    trainer, local_vars = _trainer_frame()
    if trainer is None:
        return None
    get_output_dir = getattr(trainer, "_get_output_dir", None)
    if get_output_dir is None:
        broken("trial-output-dir", f"{type(trainer).__name__} has no _get_output_dir")
        return None
    trial = local_vars.get("trial", _MISSING)
    if trial is _MISSING:
        trial = getattr(trainer, "_trial", _MISSING)  # set by every train() (_hp_search_setup)
    if trial is _MISSING:
        broken("trial-output-dir", f"no `trial` local in the dispatching method and no {type(trainer).__name__}._trial")
        trial = None
    try:
        return str(get_output_dir(trial=trial))
    except Exception as exc:  # a search backend that cannot answer outside its own loop
        broken("trial-output-dir", f"_get_output_dir(trial) raised {type(exc).__name__}: {exc}")
        return None


def resume_checkpoint_on_stack() -> str | None:
    """The ``resume_from_checkpoint`` path the Trainer's training loop was called with, if any.

    The local of ``Trainer._inner_training_loop`` (``train()`` resolves ``True`` to a path
    before calling it). Checked against transformers 5.24. Public route: none.
    """
    trainer, local_vars = _trainer_frame()
    if trainer is None:
        return None
    value = local_vars.get("resume_from_checkpoint")
    return value if isinstance(value, str) else None


def stateful_callback_key(callback: Any) -> str:
    """The key of ``callback``'s saved state in ``state.stateful_callbacks``: its class name (transformers 5.24)."""
    return type(callback).__name__


# ---- the report_to integrations (transformers 5.24, tensorboard 2.21, mlflow-skinny 3.17) -------


def _tracker_names(report_to: Sequence[str] | str | None) -> set[str]:
    if isinstance(report_to, str):
        return {report_to}
    return {str(name) for name in report_to or ()}


def tracker_callbacks(callbacks: Sequence[Any], report_to: Sequence[str] | str | None = None) -> tuple[Any, Any]:
    """``(TensorBoardCallback, MLflowCallback)`` among ``callbacks`` (``None`` where absent).

    Public route used: ``isinstance`` against ``transformers.integrations``' classes. When
    ``report_to`` (``args.report_to``) names a tracker whose callback is not there, warns
    once (``tracker-callbacks``).
    """
    try:
        from transformers.integrations import MLflowCallback, TensorBoardCallback
    except ImportError as exc:  # pragma: no cover - exercised only by a transformers that moved them
        broken("tracker-callbacks", f"cannot import TensorBoardCallback/MLflowCallback ({exc})")
        return None, None
    tensorboard = next((cb for cb in callbacks if isinstance(cb, TensorBoardCallback)), None)
    mlflow = next((cb for cb in callbacks if isinstance(cb, MLflowCallback)), None)
    wanted = _tracker_names(report_to)
    for name, found in (("tensorboard", tensorboard), ("mlflow", mlflow)):
        if name in wanted and found is None:
            broken(
                "tracker-callbacks",
                f"args.report_to names {name!r} but the handler holds no callback for it (if it was removed on "
                "purpose, ignore this)",
            )
    return tensorboard, mlflow


def trackers_unreachable(report_to: Sequence[str] | str | None) -> None:
    """Warn once that ``report_to``'s TensorBoard/MLflow get no plugin scalars: no handler was found."""
    named = sorted(_tracker_names(report_to) & {"tensorboard", "mlflow"})
    if named:
        broken("handler-on-stack", f"no CallbackHandler found, so {', '.join(named)} (args.report_to) gets nothing")


def transformers_major() -> int:
    """The major version of the installed transformers (4 or 5 for the supported lines)."""
    from packaging.version import Version

    return Version(metadata.version("transformers")).major


# transformers 4.x's TensorBoardCallback forgets its run directory when it closes its writer:
# the directory each callback's writer was last seen open in (weak: dropped with the callback).
_TB_DIRS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def tensorboard_writer(callback: Any) -> Any | None:
    """The Trainer's open ``SummaryWriter`` (``TensorBoardCallback.tb_writer``); ``None`` once it is closed."""
    if not hasattr(callback, "tb_writer"):
        broken("tensorboard-writer", f"{type(callback).__name__} has no attribute tb_writer")
        return None
    writer = callback.tb_writer
    log_dir = getattr(writer, "log_dir", None) or getattr(writer, "logdir", None)  # torch / tensorboardX
    if isinstance(log_dir, str) and hasattr(type(callback), "__weakref__"):
        _TB_DIRS[callback] = log_dir
    return writer


def tensorboard_logging_dir(callback: Any, args: Any = None) -> str | None:
    """The run directory of ``TensorBoardCallback``, also after its ``on_train_end`` closed the writer.

    transformers 5.x: the callback's ``logging_dir`` (set at its ``on_train_begin``). transformers 4.x
    has no such attribute: the directory its writer was last seen open in (by :func:`tensorboard_writer`),
    else ``args.logging_dir``, the directory 4.x's ``on_train_begin`` opens outside a hyperparameter search.
    """
    if hasattr(callback, "logging_dir"):
        return callback.logging_dir  # type: ignore[no-any-return]
    if transformers_major() >= 5:
        broken("tensorboard-writer", f"{type(callback).__name__} has no attribute logging_dir")
        return None
    remembered = _TB_DIRS.get(callback)
    if remembered is not None:
        return remembered
    fallback = getattr(args, "logging_dir", None)
    return fallback if isinstance(fallback, str) else None


def mlflow_active_run_id() -> str | None:
    """The run ``MLflowCallback`` logs to: ``mlflow.active_run()`` (public route), ``None`` when none is active."""
    import mlflow

    active = mlflow.active_run()
    return active.info.run_id if active is not None else None


# ---- learning-rate schedulers (torch 2.13, transformers 5.24) ------------------------------------


def scheduler_children(scheduler: Any) -> list[Any] | None:
    """The direct children of a ``SequentialLR`` / ``ChainedScheduler`` (``_schedulers``); ``[]`` for others.

    ``None`` (after a one-time ``scheduler-children`` warning) when a composite has no
    readable children. Checked against torch 2.13. Public route: none.
    """
    from torch.optim import lr_scheduler

    if not isinstance(scheduler, (lr_scheduler.SequentialLR, lr_scheduler.ChainedScheduler)):
        return []
    found = getattr(scheduler, "_schedulers", None)
    if not isinstance(found, (list, tuple)) or not all(hasattr(s, "base_lrs") for s in found):
        broken("scheduler-children", f"{type(scheduler).__name__}._schedulers is {type(found).__name__}")
        return None
    return list(found)


def set_last_lr(scheduler: Any, values: list[Any]) -> None:
    """Make ``scheduler.get_last_lr()`` return ``values`` (``LRScheduler._last_lr``; torch 2.13; no public setter)."""
    if not hasattr(scheduler, "_last_lr"):
        broken("scheduler-last-lr", f"{type(scheduler).__name__} has no _last_lr")
        return
    scheduler._last_lr = list(values)


def transformers_scheduler_classes() -> dict[str, type]:
    """``GreedyLR``, ``AdafactorSchedule``, ``LayerWiseDummyScheduler`` from ``transformers.optimization``.

    Checked against transformers 5.24 and 4.57 (no ``GreedyLR`` before 5.4: left out without a
    warning there); a name that is gone is left out after a one-time warning.
    """
    import transformers.optimization as optimization
    import transformers.trainer_pt_utils as trainer_pt_utils
    from packaging.version import Version

    installed = Version(metadata.version("transformers"))
    out = {}
    for name in ("GreedyLR", "AdafactorSchedule", "LayerWiseDummyScheduler"):
        cls = getattr(optimization, name, None) or getattr(trainer_pt_utils, name, None)
        if isinstance(cls, type):
            out[name] = cls
        elif name in _SCHEDULERS_SINCE and installed < Version(_SCHEDULERS_SINCE[name]):
            continue  # not there yet in this release: nothing to refuse
        else:
            broken("transformers-scheduler-classes", f"transformers.optimization.{name} is missing")
    return out


_SCHEDULERS_SINCE = {"GreedyLR": "5.4"}
"""The first transformers release that defines each scheduler (read from the published wheels)."""


# ---- tensors, autograd, mixed precision (torch 2.13, accelerate 1.15) ---------------------------


def local_tensor(tensor: Any) -> Any:
    """The local shard of a ``DTensor`` (public ``to_local()``, no copy under ``no_grad``), else the tensor itself."""
    if tensor is None:
        return None
    dtensor = _loaded("torch.distributed.tensor", "DTensor")
    if dtensor is None or not isinstance(tensor, dtensor):
        return tensor
    import torch

    with torch.no_grad():
        return tensor.to_local()


def queue_after_backward(fn: Callable[[], None]) -> bool:
    """Run ``fn`` when the current backward pass ends, after the callbacks queued meanwhile (DDP, FSDP2).

    ``torch.autograd.Variable._execution_engine.queue_callback``, queued twice so it runs
    last. Call it from inside a backward hook. Checked against torch 2.13. Public route:
    none. ``False`` (after a one-time warning) when the engine cannot queue.
    """
    import torch

    engine = getattr(torch.autograd.Variable, "_execution_engine", None)
    if engine is None or not hasattr(engine, "queue_callback"):
        broken("autograd-final-callback", "torch.autograd.Variable._execution_engine.queue_callback is missing")
        return False
    engine.queue_callback(lambda: engine.queue_callback(fn))
    return True


def is_final_micro_batch() -> bool:
    """Whether the current forward belongs to the last micro-batch of an optimizer step.

    accelerate's ``GradientState().sync_gradients`` (accelerate 1.15); public route
    ``Accelerator.sync_gradients`` needs the accelerator, which callbacks do not get.
    ``True`` without accelerate.
    """
    try:
        from accelerate.state import GradientState
    except ImportError:  # pragma: no cover - accelerate is a dependency of the Trainer
        return True
    value = getattr(GradientState(), "sync_gradients", None)
    if not isinstance(value, bool):
        broken("accelerate-sync-gradients", f"GradientState().sync_gradients is {value!r}")
        return True
    return value


def grad_scaler(optimizer: Any) -> Any | None:
    """The enabled fp16 ``GradScaler`` of the Trainer's optimizer (``AcceleratedOptimizer.scaler``), else ``None``.

    Checked against accelerate 1.15. Public route: ``Accelerator.scaler`` (not handed to callbacks).
    """
    accelerated = _loaded("accelerate.optimizer", "AcceleratedOptimizer")
    if accelerated is None or not isinstance(optimizer, accelerated):
        return None
    if not hasattr(optimizer, "scaler"):
        broken("accelerate-grad-scaler", "AcceleratedOptimizer has no attribute scaler")
        return None
    scaler = optimizer.scaler
    return scaler if scaler is not None and scaler.is_enabled() else None


def loss_scale(scaler: Any) -> float:
    """The loss scale the gradients still carry: public ``GradScaler.get_scale()`` (one host sync)."""
    return float(scaler.get_scale())


def foreach_norm(tensors: Sequence[Any], ord: float, dtype: Any = None) -> list[Any]:
    """Per-tensor ``ord``-norms in one fused launch (``torch._foreach_norm``; torch 2.13)."""
    import torch

    kwargs = {"dtype": dtype} if dtype is not None else {}
    fused = getattr(torch, "_foreach_norm", None)
    if fused is not None:
        return list(fused(tensors, ord, **kwargs))
    broken("foreach-ops", "torch._foreach_norm is missing")
    return [torch.linalg.vector_norm(t, ord, **kwargs) for t in tensors]


def foreach_copy(tensors: Sequence[Any]) -> list[Any]:
    """Copies of ``tensors`` in one fused launch (``torch._foreach_mul(tensors, 1.0)``; torch 2.13)."""
    import torch

    fused = getattr(torch, "_foreach_mul", None)
    if fused is not None:
        return list(fused(tensors, 1.0))
    broken("foreach-ops", "torch._foreach_mul is missing")
    return [t.clone() for t in tensors]


def foreach_sub_(tensors: Sequence[Any], others: Sequence[Any]) -> None:
    """``tensors[i] -= others[i]`` in place, fused (``torch._foreach_sub_``; torch 2.13)."""
    import torch

    fused = getattr(torch, "_foreach_sub_", None)
    if fused is not None:
        fused(list(tensors), list(others))
        return
    broken("foreach-ops", "torch._foreach_sub_ is missing")
    for t, o in zip(tensors, others):
        t.sub_(o)


# ---- the simulator's shortcut (torch 2.13; test kit only) ----------------------------------------


def optimizer_has_step_hooks(optimizer: Any) -> bool:
    """Whether ``optimizer.step()`` would run a registered step hook (its own or a global one).

    Checked against torch 2.13. Public route: none (hooks can be registered, not listed).
    ``True`` (the safe answer: step for real) when the hook tables are gone.
    """
    from torch.optim import optimizer as optimizer_module

    try:
        return bool(
            optimizer._optimizer_step_pre_hooks
            or optimizer._optimizer_step_post_hooks
            or optimizer_module._global_optimizer_pre_hooks
            or optimizer_module._global_optimizer_post_hooks
        )
    except AttributeError as exc:
        broken("optimizer-step-hooks", str(exc))
        return True


def mark_optimizer_stepped(optimizer: Any) -> None:
    """What ``optimizer.step()`` flags for ``LRScheduler.step()`` (``_opt_called``), without stepping."""
    optimizer._opt_called = True


def validate_trainer_args(trainer_view: Any) -> None:
    """Run the ``Trainer`` constructor's own checks (``Trainer._validate_args``) on ``trainer_view``, an object
    with the attributes they read (``args``, ``train_dataset``, ``eval_dataset``...), raising what they raise.

    Checked against transformers 5.24. Public route: none (the checks run inside ``Trainer.__init__``). When
    the method is gone nothing is checked, with the one-time warning.
    """
    from transformers import Trainer

    validate = getattr(Trainer, "_validate_args", None)
    if validate is None:
        broken("trainer-validate-args", "transformers.Trainer has no _validate_args")
        return
    validate(trainer_view)


# ---- DeepSpeed ZeRO (deepspeed 0.19.8; imported only when the run uses it) ------------------------


def deepspeed_zero_optimizer(optimizer: Any) -> tuple[Any, int] | None:
    """DeepSpeed's ZeRO optimizer behind the Trainer's optimizer and its stage (1, 2, 3), else ``None``.

    Checked against deepspeed 0.19.8 / accelerate 1.15 (``DeepSpeedOptimizerWrapper.optimizer``).
    Public route: ``DeepSpeedEngine.optimizer`` / ``zero_optimization_stage()`` (the engine is not
    handed to callbacks).
    """
    stage12 = _loaded("deepspeed.runtime.zero.stage_1_and_2", "DeepSpeedZeroOptimizer")
    stage3 = _loaded("deepspeed.runtime.zero.stage3", "DeepSpeedZeroOptimizer_Stage3")
    for inner in (optimizer, getattr(optimizer, "optimizer", None)):  # the ZeRO optimizer, or its wrapper
        if stage3 is not None and isinstance(inner, stage3):
            return inner, 3
        if stage12 is not None and isinstance(inner, stage12):
            if not hasattr(inner, "partition_gradients"):
                broken("deepspeed-zero-optimizer", "DeepSpeedZeroOptimizer has no attribute partition_gradients")
                return None
            return inner, 2 if inner.partition_gradients else 1
    return None


def deepspeed_unsupported(zero: Any, stage: int) -> str | None:
    """Why this ZeRO set-up keeps its gradients where ``deepspeed_grad_partitions`` cannot read them, or ``None``."""
    if getattr(zero, "cpu_offload" if stage < 3 else "offload_optimizer", False):
        return (
            "offload_optimizer is on: the reduced gradients live in the CPU copy of the fp32 partition, "
            "not in the partitions gradviz reads"
        )
    if getattr(zero, "has_moe_layers", False):
        return "the model has mixture-of-experts layers, whose gradients DeepSpeed reduces over other groups"
    mp_group = getattr(zero, "model_parallel_group", None)
    if mp_group is not None:
        import torch.distributed as dist

        if dist.get_world_size(mp_group) > 1:
            return "model (tensor) parallelism is on: a group's slices would be summed over more than the DP group"
    return None


def deepspeed_grad_partitions(zero: Any, stage: int) -> list[tuple[Any, Any]] | None:
    """``(parameter, its local reduced gradient slice)`` pairs of this rank, read as ZeRO's step starts.

    Checked against deepspeed 0.19.8: ``averaged_gradients`` (see the ``deepspeed-grad-partitions``
    assumption). The slices are loss-scaled (divide by ``zero.loss_scale``) and unclipped.
    ``None`` (after a warning) when the layout is not the one described.
    """
    pairs: list[tuple[Any, Any]] = []
    try:
        averaged = zero.averaged_gradients
        groups = zero.fp16_groups if stage == 3 else zero.params_in_partition
        for i, params in enumerate(groups):
            grads = averaged.get(i) if isinstance(averaged, dict) else averaged[i]
            if grads is None:
                continue
            if stage < 3:  # padding: marked, or (unpadded layout) one trailing zeros tensor, as zip drops it
                grads = [g for g in grads if not getattr(g, "_zero_padding", False)][: len(params)]
            if len(grads) != len(params):
                broken(
                    "deepspeed-grad-partitions",
                    f"param group {i} has {len(params)} parameters in this partition but {len(grads)} gradient slices",
                )
                return None
            pairs.extend(zip(params, grads))
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        broken("deepspeed-grad-partitions", f"{type(exc).__name__}: {exc}")
        return None
    return pairs


def deepspeed_dp_group(zero: Any) -> Any:
    """The data-parallel process group ZeRO partitions over (``dp_process_group``; deepspeed 0.19.8)."""
    return zero.dp_process_group


def deepspeed_loss_scale(zero: Any) -> float:
    """The factor the gradient slices still carry (``loss_scale``: 1.0 without fp16 loss scaling)."""
    return float(zero.loss_scale)


def hook_deepspeed_step(zero: Any, before: Callable[[], None]) -> Callable[[], None]:
    """Run ``before()`` each time ZeRO's ``step()`` starts; returns the function that removes the hook.

    Checked against deepspeed 0.19.8: ``DeepSpeedEngine._take_model_step`` calls
    ``self.optimizer.step()``, so a wrapper on the instance runs first (no public hook exists).
    """
    original = zero.step

    def step(*args: Any, **kwargs: Any) -> Any:
        before()
        return original(*args, **kwargs)

    zero.step = step

    def remove() -> None:
        if zero.__dict__.get("step") is step:
            del zero.step

    return remove


def deepspeed_schedule_lists(scheduler: Any) -> tuple[str, ...] | None:
    """The attributes of a DeepSpeed-config scheduler that hold absolute per-group LRs, else ``None``.

    Checked against deepspeed 0.19.8 (``deepspeed.runtime.lr_schedules``): WarmupLR / WarmupDecayLR
    compute ``min_lr + delta_lr * gamma``, WarmupCosineLR ``org_lr * ratio``. Scaling every list by
    ``r`` scales the whole schedule by ``r``. OneCycle and LRRangeTest are not listed (absolute bounds).
    """
    module = sys.modules.get("deepspeed.runtime.lr_schedules")
    if module is None:
        return None
    kinds = (("WarmupLR", ("min_lrs", "max_lrs", "delta_lrs")), ("WarmupCosineLR", ("org_lrs",)))
    for name, lists in kinds:
        cls = getattr(module, name, None)
        if cls is not None and isinstance(scheduler, cls):  # WarmupDecayLR is a WarmupLR
            if not all(isinstance(getattr(scheduler, a, None), list) for a in lists):
                broken("deepspeed-lr-schedules", f"{type(scheduler).__name__} has no list {lists}")
                return None
            return lists
    return None
