"""The norm kernel: per-group p-norms of many tensors in a few fused launches and one transfer.

Tensors are bucketed ONCE by ``(device, dtype)``; each bucket keeps a device index tensor
mapping its tensors to their group. Per call and per bucket: one ``torch._foreach_norm`` (through core's ``compat``)
(low-precision tensors are reduced in float32 via its ``dtype`` argument, so bf16/fp16
gradients give float32-accurate norms), one power, and one ``index_add_`` (``amax``
scatter for the inf-norm) into a per-group vector on the device. Nothing is copied, nothing
leaves the device: the caller transfers the final vector (together with anything else it
logs) with one ``.tolist()``.

The reduction is split in two so it works on shards: :meth:`GroupNormKernel.partial` gives
the per-group partial (``sum |x|^p`` for finite ``p``, ``max |x|`` for ``inf``), which
shards of one tensor combine by SUM (MAX for ``inf``, see :attr:`GroupNormKernel.reduce_op`),
and :meth:`GroupNormKernel.finish` turns the combined partial into norms.

Standalone use (benchmarks, custom loops)::

    kernel = GroupNormKernel.for_tensors(grads, group_of, num_groups, norm_type=2.0)
    norms = kernel.norms(grads).tolist()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from trainer_callbacks.core import compat

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _result_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass
class _Bucket:
    device: torch.device
    dtype: torch.dtype
    positions: list[int]
    group_of: list[int]
    index: torch.Tensor
    _subsets: dict[tuple[int, ...], tuple[list[int], torch.Tensor]] = field(default_factory=dict)

    def subset(self, present: tuple[int, ...]) -> tuple[list[int], torch.Tensor]:
        """Positions and index for the tensors present this call (cached by which are present)."""
        cached = self._subsets.get(present)
        if cached is None:
            idx = [self.group_of[i] for i in present]
            cached = ([self.positions[i] for i in present], torch.tensor(idx, dtype=torch.long, device=self.device))
            if len(self._subsets) < 16:
                self._subsets[present] = cached
        return cached


class GroupNormKernel:
    """Per-group ``norm_type``-norms of a fixed list of tensors (see the module docstring).

    Args:
        devices_dtypes: ``(device, dtype)`` of each tensor the kernel will be called with, in order.
        group_of: the group index (``0 <= g < num_groups``) of each tensor.
        num_groups: number of groups.
        norm_type: ``p`` of the p-norm: any ``p >= 0`` or ``float("inf")``.
    """

    def __init__(
        self,
        devices_dtypes: Sequence[tuple[torch.device, torch.dtype]],
        group_of: Sequence[int],
        num_groups: int,
        norm_type: float = 2.0,
    ) -> None:
        if len(devices_dtypes) != len(group_of):
            raise ValueError("one group index per tensor is needed")
        norm_type = float(norm_type)
        if not (norm_type >= 0):
            raise ValueError(f"norm_type must be >= 0 or inf, got {norm_type}")
        self.norm_type = norm_type
        self.num_groups = int(num_groups)
        self.size = len(group_of)
        by_key: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for pos, (device, dtype) in enumerate(devices_dtypes):
            by_key.setdefault((torch.device(device), dtype), []).append(pos)
        self.buckets = [
            _Bucket(
                device=device,
                dtype=dtype,
                positions=positions,
                group_of=[int(group_of[p]) for p in positions],
                index=torch.tensor([int(group_of[p]) for p in positions], dtype=torch.long, device=device),
            )
            for (device, dtype), positions in by_key.items()
        ]
        self.out_device = self.buckets[0].device if self.buckets else torch.device("cpu")
        self.out_dtype = torch.float64 if any(b.dtype == torch.float64 for b in self.buckets) else torch.float32

    @classmethod
    def for_tensors(
        cls, tensors: Sequence[torch.Tensor], group_of: Sequence[int], num_groups: int, norm_type: float = 2.0
    ) -> GroupNormKernel:
        return cls([(t.device, t.dtype) for t in tensors], group_of, num_groups, norm_type)

    @property
    def reduce_op(self) -> str:
        """How partials of shards combine: ``"sum"`` or ``"max"`` (inf-norm)."""
        return "max" if math.isinf(self.norm_type) else "sum"

    def _bucket_partial(self, bucket: _Bucket, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
        present = tuple(i for i, pos in enumerate(bucket.positions) if tensors[pos] is not None)
        if not present:
            return None
        if len(present) == len(bucket.positions):
            chosen, index = bucket.positions, bucket.index
        else:
            chosen, index = bucket.subset(present)
        items = [tensors[p] for p in chosen]
        kwargs = {"dtype": torch.float32} if bucket.dtype in _LOW_PRECISION else {}
        per_tensor = torch.stack(compat.foreach_norm(items, self.norm_type, **kwargs))
        per_tensor = per_tensor.to(_result_dtype(bucket.dtype))
        out = torch.zeros(self.num_groups, dtype=per_tensor.dtype, device=bucket.device)
        p = self.norm_type
        if math.isinf(p):
            return out.scatter_reduce_(0, index, per_tensor, reduce="amax", include_self=True)
        if p == 0.0:  # "0-norm": number of non-zeros, which adds up as is
            return out.index_add_(0, index, per_tensor)
        powered = per_tensor.square() if p == 2.0 else per_tensor.abs().pow(p)
        return out.index_add_(0, index, powered)

    def partial(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Per-group partial (``sum |x|^p``; ``max |x|`` for inf) on :attr:`out_device`; None tensors are skipped."""
        if len(tensors) != self.size:
            raise ValueError(f"the kernel was built for {self.size} tensors, got {len(tensors)}")
        total: torch.Tensor | None = None
        for bucket in self.buckets:
            part = self._bucket_partial(bucket, tensors)
            if part is None:
                continue
            part = part.to(device=self.out_device, dtype=self.out_dtype, non_blocking=True)
            if total is None:
                total = part
            elif math.isinf(self.norm_type):
                total = torch.maximum(total, part)
            else:
                total = total + part
        if total is None:
            total = torch.zeros(self.num_groups, dtype=self.out_dtype, device=self.out_device)
        return total

    def finish(self, partial: torch.Tensor) -> torch.Tensor:
        """Norms from (combined) partials."""
        p = self.norm_type
        if math.isinf(p) or p == 0.0 or p == 1.0:
            return partial
        if p == 2.0:
            return partial.sqrt()
        return partial.pow(1.0 / p)

    def norms(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Per-group norms (a device tensor of ``num_groups`` values)."""
        return self.finish(self.partial(tensors))

    def total(self, partial: torch.Tensor) -> torch.Tensor:
        """The norm over all groups from their partials (a 0-d device tensor)."""
        if math.isinf(self.norm_type):
            return partial.max() if partial.numel() else partial.new_zeros(())
        return self.finish(partial.sum())


def group_norms(
    tensors: Sequence[torch.Tensor], group_of: Sequence[int], num_groups: int, norm_type: float = 2.0
) -> list[float]:
    """One-shot convenience: per-group norms as Python floats (builds a kernel; reuse one in loops)."""
    return GroupNormKernel.for_tensors(tensors, group_of, num_groups, norm_type).norms(tensors).tolist()


def all_finite(tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """A 0-d device bool: every element of every tensor is finite (one ``_foreach_norm`` per device/dtype).

    The inf-norm of each tensor is finite exactly when the tensor is (NaN propagates through it).
    """
    by_key: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        if t is not None:
            by_key.setdefault((t.device, t.dtype), []).append(t)
    flags = []
    for items in by_key.values():
        flags.append(torch.stack(compat.foreach_norm(items, float("inf"))).isfinite().all())
    if not flags:
        return torch.tensor(True)
    device = flags[0].device
    return torch.stack([f.to(device) for f in flags]).all()
