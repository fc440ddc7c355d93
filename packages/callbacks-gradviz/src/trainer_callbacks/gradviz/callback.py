"""``GradNormLogger``: per-group gradient norms of the Trainer's logged steps, before clipping."""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from trainer_callbacks.core import (
    ConfigurationError,
    PluginCallback,
    StateReader,
    callable_option,
    compat,
    report_histogram,
)
from trainer_callbacks.gradviz.capture import BackwardEndCapture
from trainer_callbacks.gradviz.errors import NonFiniteGradientError, NonFiniteGradientWarning, describe
from trainer_callbacks.gradviz.grouping import GROUP_BY_CHOICES, Grouping, build_grouping, parameter_tree
from trainer_callbacks.gradviz.kernel import GroupNormKernel
from trainer_callbacks.gradviz.options import GradNormOptions
from trainer_callbacks.gradviz.sharding import all_reduce_partials, local_tensor, shard_groups
from trainer_callbacks.gradviz.timing import logging_strategy, steps_per_epoch, will_log
from trainer_callbacks.gradviz.update_ratio import StagedWeights, before_store
from trainer_callbacks.gradviz.zero import ZeroGroupNorms, zero_optimizer

logger = logging.getLogger(__name__)


def _resolve_group_by(group_by: Any) -> tuple[str | Callable[[str], str], str]:
    """(the grouping used, its JSON-able form): a choice, or a callable saved as ``"module:qualname"``.

    A callable that cannot be imported back by that name (a lambda, a closure) is refused: the
    saved options could not rebuild the callback (``core.callable_option``).
    """
    if isinstance(group_by, str) and group_by in GROUP_BY_CHOICES:
        return group_by, group_by
    if callable(group_by) or (isinstance(group_by, str) and ":" in group_by):
        return callable_option(group_by, f"GradNormLogger(group_by={group_by!r})")
    raise ConfigurationError(
        f"GradNormLogger(group_by={group_by!r}): expected one of {GROUP_BY_CHOICES}, a module-level function "
        "name -> group, or 'package.module:function' naming one"
    )


def _uses_deepspeed(args: Any) -> bool:
    if getattr(args, "deepspeed", None) or getattr(args, "deepspeed_plugin", None):
        return True
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "").strip().lower() in ("1", "true", "yes")


def _dense(grad: torch.Tensor | None) -> torch.Tensor | None:
    """The gradient as a strided tensor with the same norm: the values of a sparse one (``nn.Embedding(sparse=True)``).

    ``coalesce()`` sums repeated indices first, so the norm is that of the dense gradient.
    """
    if grad is None or grad.layout == torch.strided:
        return grad
    if grad.layout == torch.sparse_coo:
        return grad.coalesce().values()
    return grad.to_dense()


def _patterns(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigurationError(f"GradNormLogger({field}=...): expected a glob string or a list of them, got {value!r}")


class GradNormLogger(PluginCallback):
    """Per-layer (per-group) gradient norms, before clipping, on the Trainer's logging steps.

    Reports ``grad_norm/<group>`` (and optionally ``param_norm/<group>``, ``update_ratio/<group>``,
    ``grad_nonfinite/<group>``) to ``trainer_state.json``, TensorBoard and MLflow. The norms are
    those of the unclipped gradients, like the Trainer's own ``grad_norm``: for ``norm_type=2``
    ``sqrt(sum(grad_norm/<g>**2))`` equals the logged ``grad_norm`` when every trainable
    parameter is selected. Cost on a measured step: one fused ``_foreach_norm`` per
    (device, dtype), a per-group reduction on the device and one device-to-host transfer;
    nothing on other steps unless ``on_nonfinite="raise"`` asks for an every-step check.

    Options: :class:`~trainer_callbacks.gradviz.options.GradNormOptions` (``trainer-callbacks show gradviz``).
    """

    declared_options = GradNormOptions
    # The options as attributes (set by GradNormOptions.assign, checked and converted).
    every_n_steps: int | None
    group_by: str | Callable[[str], str]
    norm_type: float
    include: list[str] | None
    exclude: list[str] | None
    log_param_norm: bool
    log_update_ratio: bool
    histogram: bool
    on_nonfinite: str

    def __init__(
        self,
        every_n_steps: int | None = None,
        group_by: str | Callable[[str], str] = "layer",
        norm_type: float = 2.0,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        log_param_norm: bool = False,
        log_update_ratio: bool = False,
        histogram: bool = False,
        on_nonfinite: str = "warn",
    ) -> None:
        options = GradNormOptions.parse(self, locals())
        options.assign(self)
        super().__init__(**options.saved())

    # ---- per-run state -----------------------------------------------------------------
    def reset(self) -> None:
        self._model: torch.nn.Module | None = None
        self._params: list[torch.nn.Parameter] = []
        self._trainable: list[torch.nn.Parameter] = []
        self.grouping: Grouping | None = None
        self._grad_kernel: GroupNormKernel | None = None
        self._param_kernel: GroupNormKernel | None = None
        self._shard_groups: list[Any] = []
        self._capture = getattr(self, "_capture", None) or BackwardEndCapture(self._on_backward_end)
        self._capture.disarm()
        earlier: ZeroGroupNorms | None = getattr(self, "_zero", None)
        if earlier is not None:  # a hook left by an earlier run that did not reach train end
            earlier.remove()
        self._zero: ZeroGroupNorms | None = None  # DeepSpeed ZeRO: norms from its gradient partitions
        self._deepspeed = False
        self._updates_per_epoch: int | None = None
        self._scaler: Any = None
        self._disabled = False
        self._measure = False  # this step's norms are computed (and reported: now, or when the Trainer logs)
        self._hold = False  # ... reported only if the Trainer logs this step (it cannot be known in advance)
        self._held: tuple[int, list[torch.Tensor]] | None = None
        self._grad_partial: torch.Tensor | None = None
        self._param_partial: torch.Tensor | None = None
        self._before: StagedWeights | None = None
        self._pending_nonfinite: dict[str, float] = {}
        self._warned: set[str] = set()
        self.last_measured_step: int | None = None
        self._predicted_step: int | None = None

    fresh_start_is_safe = True
    """The saved progress is bookkeeping only: a damaged one warns and starts fresh (no norm depends on it)."""

    def state_dict(self) -> dict[str, Any]:
        return {"last_measured_step": self.last_measured_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = StateReader(state)
        self.last_measured_step = saved.integer("last_measured_step", None, none=True, minimum=0)

    def check_training_args(self, args: Any) -> list[str]:
        return []

    def setup_run(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._deepspeed = _uses_deepspeed(args)
        model: torch.nn.Module | None = kwargs.get("model")
        if model is not None:  # the Trainer has prepared (wrapped, sharded) the model by on_train_begin
            self._bind(model)
            self._updates_per_epoch = steps_per_epoch(kwargs.get("train_dataloader"), args.gradient_accumulation_steps)
            if self._deepspeed:
                self._bind_zero(kwargs.get("optimizer"))

    def _bind_zero(self, optimizer: Any) -> None:
        """Under DeepSpeed: read ZeRO's own gradient partitions (gradviz/zero.py), or say once why not."""
        if self._zero is not None:
            self._zero.remove()
            self._zero = None
        found = zero_optimizer(optimizer)
        reason = None
        if found is None:
            reason = (
                f"the optimizer ({type(getattr(optimizer, 'optimizer', optimizer)).__name__}) is not DeepSpeed's "
                "ZeRO optimizer (stage 0, or a DeepSpeed version whose internals gradviz does not know), and p.grad "
                "is None for callbacks under DeepSpeed"
            )
        else:
            zero, stage = found
            grouping = self.grouping
            assert grouping is not None  # _bind ran first
            self._zero = ZeroGroupNorms(
                zero, stage, self._params, grouping.group_of, len(grouping.groups), self.norm_type, self._zero_partial
            )
            reason = self._zero.unsupported
            if reason is not None:
                reason = f"ZeRO stage {stage}: {reason}"
                self._zero = None
        if reason is not None:
            self._disabled = True
            self._warn_once(
                "deepspeed",
                f"GradNormLogger: per-group gradient norms cannot be measured exactly in this DeepSpeed run: {reason}; "
                "gradviz logs no grad_norm/<group> in this run (the Trainer's total grad_norm is still logged).",
            )
            return
        assert self._zero is not None  # found and supported
        self._zero.install()
        if self.log_param_norm or self.log_update_ratio:
            self._warn_once(
                "deepspeed_params",
                "GradNormLogger: under DeepSpeed the engine updates the parameters inside training_step, before "
                "any callback event of the step, so param_norm/<group> and update_ratio/<group> are not logged "
                "(log_param_norm / log_update_ratio are ignored); grad_norm/<group> is.",
            )

    def _zero_partial(self, partial: torch.Tensor) -> None:
        self._grad_partial = partial

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._zero is not None:  # leave DeepSpeed's optimizer as it was
            self._zero.remove()
            self._zero = None
        super().on_train_end(args, state, control, **kwargs)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    # ---- set-up at train begin (and again if the Trainer hands over another model) ---------------
    def _bind(self, model: torch.nn.Module) -> None:
        tree = parameter_tree(model)
        if not any(tree.trainable):
            raise ConfigurationError(
                f"GradNormLogger: the model ({type(model).__name__}) has no trainable parameter: all "
                f"{len(tree.names)} parameters have requires_grad=False, so there is no gradient to measure. "
                "Unfreeze the parameters to train (or attach an adapter), or remove GradNormLogger."
            )
        grouping = build_grouping(tree, self.group_by, self.include, self.exclude)
        if not grouping.names:
            sample = ", ".join([c for c, t in zip(tree.clean, tree.trainable) if t][:5])
            raise ConfigurationError(
                f"GradNormLogger(include={self.include!r}, exclude={self.exclude!r}) selects none of the "
                f"{sum(tree.trainable)} trainable parameters; their names look like: {sample}"
            )
        by_name = dict(model.named_parameters())
        self._model = model
        self._params = [by_name[n] for n in grouping.names]
        self._trainable = [p for p in by_name.values() if p.requires_grad]
        self.grouping = grouping
        self._shard_groups = shard_groups(self._params)
        self._grad_kernel = None
        locals_ = [local_tensor(p) for p in self._params]
        self._param_kernel = GroupNormKernel.for_tensors(
            locals_,
            grouping.group_of,
            len(grouping.groups),
            self.norm_type,  # type: ignore[arg-type]
        )

    def _reduce(self, partial: torch.Tensor, kernel: GroupNormKernel) -> torch.Tensor:
        return all_reduce_partials(partial, self._shard_groups, kernel.reduce_op)

    # ---- events ----------------------------------------------------------------------------
    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model: torch.nn.Module | None = kwargs.get("model")
        if model is None or self._disabled:
            return
        optimizer = kwargs.get("optimizer")
        if self._model is not model:
            self._bind(model)
            self._updates_per_epoch = steps_per_epoch(kwargs.get("train_dataloader"), args.gradient_accumulation_steps)
            if self._deepspeed:
                self._bind_zero(optimizer)
                if self._disabled:
                    return
        if self._zero is not None:  # ZeRO: measured when its step starts (inside training_step)
            self._scaler = self._zero if self._zero.loss_scaled else None
            self._zero.armed = False
        else:
            self._scaler = compat.grad_scaler(optimizer)
        decision = will_log(
            state.global_step + 1,
            args=args,
            state=state,
            every_n_steps=self.every_n_steps,
            updates_per_epoch=self._updates_per_epoch,
        )
        self._measure = decision is not False
        self._hold = decision is None
        self._grad_partial = None
        if decision:
            self._predicted_step = state.global_step + 1
        if (self._measure or self.on_nonfinite == "raise") and self._zero is not None:
            self._zero.armed = True
        elif self._measure or self.on_nonfinite == "raise":
            self._capture.arm(model)

    def _on_backward_end(self) -> None:
        """Inside the autograd engine, after the last micro-batch's backward: unclipped, reduced grads."""
        grads = [_dense(local_tensor(p.grad)) for p in self._params]
        if all(g is None for g in grads) and all(p.grad is None for p in self._trainable):
            return  # no gradient anywhere: on_pre_optimizer_step says so
        if self._grad_kernel is None:
            grouping = self.grouping
            assert grouping is not None  # set by _bind, which runs before the capture is first armed
            self._grad_kernel = GroupNormKernel.for_tensors(
                [g if g is not None else local_tensor(p) for g, p in zip(grads, self._params)],
                grouping.group_of,
                len(grouping.groups),
                self.norm_type,
            )
        # a selected parameter without .grad took no part in this step's loss: its gradient is zero
        partial = self._grad_kernel.partial(grads)
        if self._scaler is not None:  # fp16 loss scaling: grads are still multiplied by the scale
            scale = compat.loss_scale(self._scaler)
            p = self.norm_type
            if math.isinf(p) or p == 1.0:
                partial = partial / scale
            elif p != 0.0:
                partial = partial / scale**p
        self._grad_partial = self._reduce(partial, self._grad_kernel)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._capture.disarm()
        if self._disabled:
            return
        if not (self._measure or self.on_nonfinite == "raise"):
            return  # nothing was armed for this step
        step = state.global_step + 1
        partial = self._grad_partial
        if partial is None:
            if self._zero is not None:
                self._warn_once(
                    "no_zero_step",
                    f"GradNormLogger: DeepSpeed's ZeRO step of step {step} was not observed"
                    + (" (its gradient partitions could not be read)" if self._zero.failed else "")
                    + "; no gradient norms are logged for such steps.",
                )
            elif self._capture.fired:
                self._warn_once(
                    "no_grads",
                    f"GradNormLogger: no trainable parameter has a .grad after the backward pass of step {step} "
                    "(the training engine keeps gradients outside p.grad, or the loss did not depend on any "
                    "parameter); no gradient norms are logged for such steps.",
                )
            else:
                self._warn_once(
                    "no_capture",
                    "GradNormLogger: the backward pass of this step was not observed (the model's forward "
                    "returned no tensor requiring grad, or training_step bypasses the model's forward); "
                    "no gradient norms are logged for such steps.",
                )
            return
        if not self._measure:  # only "raise" captures unmeasured steps: the every-step check, one host sync
            if not bool(torch.isfinite(partial).all()):
                self._handle_nonfinite(args, state, step, partial.tolist())
            self._grad_partial = None
            return
        # reported after the optimizer step (or later): "raise" must stop the run before the step
        later = self._hold or self.log_update_ratio
        if self.on_nonfinite == "raise" and later and not bool(torch.isfinite(partial).all()):
            self._handle_nonfinite(args, state, step, partial.tolist())
        tensors = [partial]
        if (self.log_param_norm or self.log_update_ratio) and self._zero is None:
            pkernel = self._param_kernel
            assert pkernel is not None  # set by _bind; a captured partial implies a bound model
            locals_ = [local_tensor(p.detach()) for p in self._params]
            self._param_partial = self._reduce(pkernel.partial(locals_), pkernel)
            tensors.append(self._param_partial)
            if self.log_update_ratio:
                self._before = before_store(self).stage(locals_)  # host copy; update_ratio.py bounds the device cost
                return  # transfer and report after the optimizer step
        self._done(args, state, step, tensors)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._before is None:
            return
        before, self._before = self._before, None
        after = [local_tensor(p.detach()) for p in self._params]
        pkernel = self._param_kernel
        # on_pre_optimizer_step set all three (kernel, grad and param partials) when it kept ``before``
        assert pkernel is not None and self._grad_partial is not None and self._param_partial is not None
        update = self._reduce(before.update_partial(pkernel, after), pkernel)
        del before
        self._done(args, state, state.global_step + 1, [self._grad_partial, self._param_partial, update])

    def _done(self, args: Any, state: Any, step: int, tensors: list[torch.Tensor]) -> None:
        """The step's partials are complete: report them now, or hold them until the Trainer logs the step."""
        self._grad_partial = self._param_partial = None
        if self._hold:
            self._held = (step, tensors)  # a few numbers per group, on the device; the newest replaces the last
            return
        self._finish(args, state, step, torch.cat(tensors).tolist())

    def on_log(
        self, args: Any, state: Any, control: Any, logs: Mapping[str, float] | None = None, **kwargs: Any
    ) -> None:
        if not logs or not ("loss" in logs or "grad_norm" in logs) or self._disabled or self._model is None:
            return  # not the Trainer's training log (evaluation, train end) or nothing to measure
        step = state.global_step
        held, self._held = self._held, None
        if held is not None and held[0] == step:
            self._finish(args, state, step, torch.cat(held[1]).tolist())
            return
        if self.every_n_steps is None and self._predicted_step != step:
            self._warn_once(
                "timing",
                f"GradNormLogger: the Trainer logged step {step}, which gradviz could not know in advance, so no "
                f"gradient norms are logged for it: {self._unpredicted_cause(args, state, control)}. "
                "Pass every_n_steps to measure on a fixed schedule.",
            )

    def _unpredicted_cause(self, args: Any, state: Any, control: Any) -> str:
        step, strategy = state.global_step, logging_strategy(args)
        if strategy == "epoch" and (
            getattr(control, "should_training_stop", False) or getattr(control, "should_epoch_stop", False)
        ):
            return (
                f"the run stopped at step {step}, before the end of its epoch (control.should_training_stop or "
                "should_epoch_stop, set by a callback such as early stopping), and logging_strategy='epoch' logs "
                "the step where it stops, which is decided only after that step's gradients are gone"
            )
        if strategy == "epoch":
            return (
                f"logging_strategy='epoch' and the epoch ended at step {step}, not after a multiple of "
                f"{self._updates_per_epoch} optimizer steps as the train dataloader's length said (a dataset whose "
                "__len__ differs from what it yields), or another callback set control.should_log"
            )
        return (
            f"it is not on the logging schedule (logging_strategy={strategy!r}, logging_steps="
            f"{getattr(state, 'logging_steps', None)}), so another callback set control.should_log"
        )

    # ---- turning the one transfer into scalars ------------------------------------------
    def _finish(self, args: Any, state: Any, step: int, values: list[float]) -> None:
        grouping = self.grouping
        assert grouping is not None
        n = len(grouping.groups)
        grad_partial = values[:n]
        self.last_measured_step = step
        if not all(math.isfinite(v) for v in grad_partial):
            if self._scaler is not None:
                self.report(args, state, {"grad_norm/skipped": 1.0}, step=step)
                return
            self._handle_nonfinite(args, state, step, grad_partial, report_now=False)
        scalars: dict[str, float] = {}
        norms = [self._finish_one(v) for v in grad_partial]
        for group, value in zip(grouping.groups, norms):
            if math.isfinite(value):
                scalars[f"grad_norm/{group}"] = value
        if (self.log_param_norm or self.log_update_ratio) and self._zero is None:
            params = [self._finish_one(v) for v in values[n : 2 * n]]
            if self.log_param_norm:
                scalars.update({f"param_norm/{g}": v for g, v in zip(grouping.groups, params)})
            if self.log_update_ratio:
                updates = [self._finish_one(v) for v in values[2 * n : 3 * n]]
                for g, upd, par in zip(grouping.groups, updates, params):
                    if par > 0 and math.isfinite(upd):
                        scalars[f"update_ratio/{g}"] = upd / par
        if self._pending_nonfinite:
            scalars.update(self._pending_nonfinite)
            self._pending_nonfinite = {}
        self.report(args, state, scalars, step=step)
        if self.histogram:
            finite = [v for v in norms if math.isfinite(v)]
            if finite:
                report_histogram(args, state, "grad_norm_groups", finite, step=step, handler=self.handler)

    def _finish_one(self, partial_value: float) -> float:
        p = self.norm_type
        if math.isinf(p) or p in (0.0, 1.0) or not math.isfinite(partial_value):
            return partial_value
        return math.sqrt(partial_value) if p == 2.0 else partial_value ** (1.0 / p)

    def _handle_nonfinite(
        self, args: Any, state: Any, step: int, partial: list[float], *, report_now: bool = True
    ) -> None:
        """Non-finite group partials (seen before clipping): raise, or warn and log ``grad_nonfinite/<group>``.

        ``report_now=False``: the flags go out with the step's norms, in the same batch.
        """
        if self._scaler is not None or self.on_nonfinite == "ignore":
            return
        groups = self.grouping.groups  # type: ignore[union-attr]
        bad = [(g, v) for g, v in zip(groups, partial) if not math.isfinite(v)]
        message = describe(step, bad, len(groups))
        if self.on_nonfinite == "raise":
            raise NonFiniteGradientError(step, [g for g, _ in bad], message)
        warnings.warn(f"GradNormLogger: {message}", NonFiniteGradientWarning, stacklevel=2)
        logger.warning("GradNormLogger: %s", message)
        flags = {f"grad_nonfinite/{g}": 1.0 for g, _ in bad}
        if report_now:
            self.report(args, state, flags, step=step)
        else:
            self._pending_nonfinite = flags
