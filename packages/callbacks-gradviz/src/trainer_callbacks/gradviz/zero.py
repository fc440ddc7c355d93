"""Per-group gradient norms under DeepSpeed ZeRO 1, 2 and 3, from each rank's own gradient partition.

Where the gradients are (deepspeed 0.19.8): the Trainer's ``p.grad`` is ``None`` under ZeRO. When
the ZeRO optimizer's ``step()`` starts (inside ``DeepSpeedEngine.step()``, which accelerate calls
from ``Trainer.training_step`` at each accumulation boundary, BEFORE the Trainer's
``on_pre_optimizer_step``), ``averaged_gradients`` holds this rank's reduced (averaged over the
data-parallel group), unclipped, still loss-scaled gradient slices:

* ZeRO-1/2: one flat partition per param group, viewed as one slice per parameter of
  ``params_in_partition`` (a parameter on a partition boundary has a slice on each rank);
* ZeRO-3: one slice per parameter (the part matching its ``ds_tensor`` partition).

Each gradient element is held by exactly one rank, so per-group sums of squares over the
local slices, summed over the data-parallel group with ONE ``all_reduce`` of a vector of
``num_groups`` numbers, are the exact per-group squared norms; their sum is what DeepSpeed's
own ``get_grad_norm_direct`` sums (its global norm, before its clip). Nothing is gathered.

The hook: a wrapper on the ZeRO optimizer instance's ``step`` (``compat.hook_deepspeed_step``:
DeepSpeed has no step hooks), armed only for measured steps. Every fragile read is a named
assumption in ``trainer_callbacks.core.compat`` (``deepspeed-*``).

Not supported exactly (said at train begin, once): optimizer offload (the gradients live in
the CPU fp32 copy), mixture-of-experts layers and tensor parallelism (other reduction groups).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from trainer_callbacks.core import compat
from trainer_callbacks.gradviz.kernel import GroupNormKernel


def zero_optimizer(optimizer: Any) -> tuple[Any, int] | None:
    """DeepSpeed's ZeRO optimizer behind the Trainer's optimizer and its stage, or ``None``."""
    return compat.deepspeed_zero_optimizer(optimizer)


class ZeroGroupNorms:
    """Per-group partials of the selected parameters' gradients, read from ZeRO's partitions.

    Args:
        zero: DeepSpeed's ZeRO optimizer; ``stage``: 1, 2 or 3.
        params: the selected parameters (the model's own parameter objects).
        group_of: the group index of each selected parameter; ``num_groups``: how many groups.
        norm_type: the p of the p-norm.
        on_partial: called with the all-reduced, unscaled per-group partial of a measured step.
    """

    def __init__(
        self,
        zero: Any,
        stage: int,
        params: Sequence[torch.nn.Parameter],
        group_of: Sequence[int],
        num_groups: int,
        norm_type: float,
        on_partial: Callable[[torch.Tensor], None],
    ) -> None:
        self.zero, self.stage = zero, stage
        self._group = {id(p): g for p, g in zip(params, group_of)}
        self.num_groups = num_groups
        self.norm_type = float(norm_type)
        self._on_partial = on_partial
        self._kernels: dict[tuple[Any, ...], GroupNormKernel] = {}
        self._remove: Callable[[], None] | None = None
        self.armed = False
        self.failed = False

    @property
    def unsupported(self) -> str | None:
        """Why this ZeRO set-up cannot be measured exactly (``None``: it can)."""
        return compat.deepspeed_unsupported(self.zero, self.stage)

    @property
    def loss_scaled(self) -> bool:
        """fp16 with loss scaling: overflow steps are skipped by DeepSpeed (and marked by gradviz)."""
        return bool(getattr(self.zero, "dynamic_loss_scale", False)) or compat.deepspeed_loss_scale(self.zero) != 1.0

    def install(self) -> None:
        if self._remove is None:
            self._remove = compat.hook_deepspeed_step(self.zero, self._before_step)

    def remove(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None

    def _before_step(self) -> None:
        if not self.armed:
            return
        self.armed = False
        partial = self.partial()
        if partial is not None:
            self._on_partial(partial)

    def partial(self) -> torch.Tensor | None:
        """This step's per-group partial (``sum |g|^p``, ``max |g|`` for inf), unscaled, over all ranks.

        Every rank of the data-parallel group must call it: it always runs its one ``all_reduce``
        (of ``num_groups + 1`` numbers, the last one counting ranks that could not read their
        partition), so a rank that fails cannot leave the others waiting in the collective.
        ``None`` on every rank when any rank failed.
        """
        pairs = compat.deepspeed_grad_partitions(self.zero, self.stage)
        grads: list[torch.Tensor] = []
        groups: list[int] = []
        for param, grad in pairs or ():
            g = self._group.get(id(param))
            if g is not None and grad is not None and grad.numel():
                grads.append(grad.detach())
                groups.append(g)
        key = (tuple(groups), tuple((t.device, t.dtype) for t in grads))
        kernel = self._kernels.get(key)
        if kernel is None:
            kernel = GroupNormKernel.for_tensors(grads, groups, self.num_groups, self.norm_type)
            if len(self._kernels) < 8:  # the layout is fixed within a run: one entry in practice
                self._kernels[key] = kernel
        partial = kernel.partial(grads)
        if not grads and pairs:  # nothing selected on this rank: zeros where the collective runs
            partial = partial.to(pairs[0][1].device)
        scale = compat.deepspeed_loss_scale(self.zero)
        if scale != 1.0:
            p = self.norm_type
            if math.isinf(p) or p == 1.0:
                partial = partial / scale
            elif p != 0.0:
                partial = partial / scale**p
        failed = partial.new_full((1,), 1.0 if pairs is None else 0.0)
        if pairs is None:
            partial = partial.zero_()
        vector = torch.cat([partial, failed])
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            op = dist.ReduceOp.MAX if kernel.reduce_op == "max" else dist.ReduceOp.SUM
            dist.all_reduce(vector, op=op, group=compat.deepspeed_dp_group(self.zero))
        if float(vector[-1]) > 0:  # one host sync, on measured steps only
            self.failed = True
            return None
        return vector[:-1]
