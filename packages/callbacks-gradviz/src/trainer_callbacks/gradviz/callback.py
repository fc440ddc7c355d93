"""``GradNormLogger``: per-group gradient norms of the Trainer's logged steps, before clipping."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from trainer_callbacks.core import StateReader, compat
from trainer_callbacks.core.callback import PluginCallback
from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.core.references import import_reference
from trainer_callbacks.core.reporting import report_histogram
from trainer_callbacks.gradviz.capture import BackwardEndCapture
from trainer_callbacks.gradviz.errors import NonFiniteGradientError, NonFiniteGradientWarning, describe
from trainer_callbacks.gradviz.grouping import GROUP_BY_CHOICES, Grouping, build_grouping
from trainer_callbacks.gradviz.kernel import GroupNormKernel
from trainer_callbacks.gradviz.options import GradNormOptions
from trainer_callbacks.gradviz.sharding import all_reduce_partials, local_tensor, shard_groups
from trainer_callbacks.gradviz.timing import steps_per_epoch, will_log

logger = logging.getLogger(__name__)


def _resolve_group_by(group_by: Any) -> tuple[str | Callable[[str], str], str]:
    """(the grouping used, its JSON-able form); a callable is saved as ``module:qualname``."""
    if callable(group_by):
        module, qualname = getattr(group_by, "__module__", None), getattr(group_by, "__qualname__", "")
        return group_by, f"{module}:{qualname}"
    if not isinstance(group_by, str):
        raise ConfigurationError(
            f"GradNormLogger(group_by=...): expected one of {GROUP_BY_CHOICES}, "
            f"a callable name -> group or 'module:function', got {group_by!r}"
        )
    if group_by in GROUP_BY_CHOICES:
        return group_by, group_by
    if ":" in group_by:
        try:
            target = import_reference(group_by)
        except (ValueError, ImportError, AttributeError) as exc:
            raise ConfigurationError(f"GradNormLogger(group_by={group_by!r}): cannot import it ({exc})") from None
        if callable(target):
            return target, group_by
    raise ConfigurationError(
        f"GradNormLogger(group_by={group_by!r}): expected one of {GROUP_BY_CHOICES}, a callable name -> group, "
        "or 'package.module:function' naming one"
    )


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
        self.grouping: Grouping | None = None
        self._grad_kernel: GroupNormKernel | None = None
        self._param_kernel: GroupNormKernel | None = None
        self._shard_groups: list[Any] = []
        self._capture = getattr(self, "_capture", None) or BackwardEndCapture(self._on_backward_end)
        self._capture.disarm()
        self._updates_per_epoch: int | None = None
        self._scaler: Any = None
        self._measure = False
        self._grad_partial: torch.Tensor | None = None
        self._param_partial: torch.Tensor | None = None
        self._before: list[torch.Tensor] | None = None
        self._no_grads = False
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
        if getattr(args, "deepspeed", None) or getattr(args, "deepspeed_plugin", None):
            self._warn_once(
                "deepspeed",
                "GradNormLogger: DeepSpeed ZeRO keeps gradients in its own partitioned buffers and p.grad is None "
                "for callbacks, so no per-group gradient norms can be measured; gradviz logs nothing in this run "
                "(the Trainer's total grad_norm is still logged).",
            )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    # ---- set-up at the first step (the model is prepared/sharded by then) ------------------
    def _bind(self, model: torch.nn.Module) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        positions, grouping = build_grouping([n for n, _ in named], self.group_by, self.include, self.exclude)
        if not positions:
            sample = ", ".join(n for n, _ in named[:5])
            raise ConfigurationError(
                f"GradNormLogger(include={self.include!r}, exclude={self.exclude!r}) selects no trainable parameter; "
                f"parameter names look like: {sample}"
            )
        self._model = model
        self._params = [named[i][1] for i in positions]
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
        if model is None or self._no_grads:
            return
        if self._model is not model:
            self._bind(model)
            self._updates_per_epoch = steps_per_epoch(kwargs.get("train_dataloader"), args.gradient_accumulation_steps)
        optimizer = kwargs.get("optimizer")
        self._scaler = compat.grad_scaler(optimizer)
        self._measure = will_log(
            state.global_step + 1,
            args=args,
            state=state,
            every_n_steps=self.every_n_steps,
            updates_per_epoch=self._updates_per_epoch,
        )
        self._grad_partial = None
        if self._measure:
            self._predicted_step = state.global_step + 1
        if self._measure or self.on_nonfinite == "raise":
            self._capture.arm(model)

    def _on_backward_end(self) -> None:
        """Inside the autograd engine, after the last micro-batch's backward: unclipped, reduced grads."""
        grads = [local_tensor(p.grad) for p in self._params]
        if all(g is None for g in grads):
            self._no_grads = True
            return
        if self._grad_kernel is None:
            grouping = self.grouping
            assert grouping is not None  # set by _bind, which runs before the capture is first armed
            self._grad_kernel = GroupNormKernel.for_tensors(
                [g if g is not None else local_tensor(p) for g, p in zip(grads, self._params)],
                grouping.group_of,
                len(grouping.groups),
                self.norm_type,
            )
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
        if self._no_grads:
            self._warn_once(
                "no_grads",
                "GradNormLogger: no parameter has a .grad after backward (DeepSpeed ZeRO keeps gradients in its "
                "own partitioned buffers); gradviz logs nothing in this run rather than zeros.",
            )
            return
        partial = self._grad_partial
        if partial is None:
            if self._measure or self.on_nonfinite == "raise":
                self._warn_once(
                    "no_capture",
                    "GradNormLogger: the backward pass of this step was not observed (the model's forward "
                    "returned no tensor requiring grad, or training_step bypasses the model's forward); "
                    "no gradient norms are logged for such steps.",
                )
            return
        step = state.global_step + 1
        if not self._measure:  # only "raise" captures unmeasured steps: the every-step check, one host sync
            if not bool(torch.isfinite(partial).all()):
                self._handle_nonfinite(args, state, step, partial.tolist())
            self._grad_partial = None
            return
        tensors = [partial]
        if self.log_param_norm or self.log_update_ratio:
            pkernel = self._param_kernel
            assert pkernel is not None  # set by _bind; a captured partial implies a bound model
            locals_ = [local_tensor(p.detach()) for p in self._params]
            self._param_partial = self._reduce(pkernel.partial(locals_), pkernel)
            tensors.append(self._param_partial)
            if self.log_update_ratio:
                if self.on_nonfinite == "raise" and not bool(torch.isfinite(partial).all()):
                    self._handle_nonfinite(args, state, step, partial.tolist())
                self._before = compat.foreach_copy(locals_)  # one temporary copy, freed after the step
                return  # transfer and report after the optimizer step
        self._finish(args, state, step, torch.cat(tensors).tolist())

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._before is None:
            return
        before, self._before = self._before, None
        after = [local_tensor(p.detach()) for p in self._params]
        compat.foreach_sub_(before, after)
        pkernel = self._param_kernel
        # on_pre_optimizer_step set all three (kernel, grad and param partials) when it kept ``before``
        assert pkernel is not None and self._grad_partial is not None and self._param_partial is not None
        update = self._reduce(pkernel.partial(before), pkernel)
        del before
        tensors = [self._grad_partial, self._param_partial, update]
        self._finish(args, state, state.global_step + 1, torch.cat(tensors).tolist())

    def on_log(
        self, args: Any, state: Any, control: Any, logs: Mapping[str, float] | None = None, **kwargs: Any
    ) -> None:
        if (
            logs
            and "grad_norm" in logs
            and self.every_n_steps is None
            and not self._no_grads
            and self._model is not None
            and self._predicted_step != state.global_step
        ):
            self._warn_once(
                "timing",
                f"GradNormLogger: the Trainer logged step {state.global_step} but gradviz did not predict it "
                "(another callback set control.should_log?); pass every_n_steps to measure on a fixed schedule.",
            )

    # ---- turning the one transfer into scalars ------------------------------------------
    def _finish(self, args: Any, state: Any, step: int, values: list[float]) -> None:
        grouping, kernel = self.grouping, self._grad_kernel
        assert grouping is not None and kernel is not None
        n = len(grouping.groups)
        grad_partial = values[:n]
        self.last_measured_step = step
        self._grad_partial = self._param_partial = None
        if not all(math.isfinite(v) for v in grad_partial):
            if self._scaler is not None:
                self.report(args, state, {"grad_norm/skipped": 1.0}, step=step)
                return
            self._handle_nonfinite(args, state, step, grad_partial)
        scalars: dict[str, float] = {}
        norms = [self._finish_one(v) for v in grad_partial]
        for group, value in zip(grouping.groups, norms):
            if math.isfinite(value):
                scalars[f"grad_norm/{group}"] = value
        if self.log_param_norm or self.log_update_ratio:
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

    def _handle_nonfinite(self, args: Any, state: Any, step: int, partial: list[float]) -> None:
        """Non-finite group partials (seen before clipping): raise, or warn and log ``grad_nonfinite/<group>``."""
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
        if self._measure:
            self._pending_nonfinite = flags  # reported with this step's norms, in the same batch
        else:
            self.report(args, state, flags, step=step)
