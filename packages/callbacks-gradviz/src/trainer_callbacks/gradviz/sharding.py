"""Local shards and the one collective that turns local partial norms into global ones.

* Plain tensors and DDP: gradients are already complete (DDP all-reduces them during
  backward), so no collective is needed.
* FSDP2 / DTensor: each rank holds a shard (``Shard`` placements) of every parameter and
  gradient. Each rank computes the per-group partials of its LOCAL shards and ONE
  ``all_reduce`` (SUM, or MAX for the inf-norm) over the sharding process group combines
  ALL groups at once. Every rank must take part (a collective on rank 0 alone deadlocks);
  the callback does so on every rank because every rank takes the same logging decision.
  Mesh dimensions with ``Replicate`` placement are not reduced over (their values already
  agree), so HSDP's replicas are not double-counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import torch

from trainer_callbacks.core import compat


@overload
def local_tensor(tensor: torch.Tensor) -> torch.Tensor: ...
@overload
def local_tensor(tensor: None) -> None: ...
@overload
def local_tensor(tensor: torch.Tensor | None) -> torch.Tensor | None: ...
def local_tensor(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """The local shard of a DTensor (without a copy), or the tensor itself."""
    return compat.local_tensor(tensor)  # type: ignore[no-any-return]


def shard_groups(tensors: Sequence[torch.Tensor]) -> list[Any]:
    """The process groups the partials must be summed over (empty when nothing is sharded).

    All DTensors are expected to share one mesh and placement pattern (FSDP2 does); other
    patterns raise, naming the tensors.
    """
    try:
        from torch.distributed.tensor import DTensor, Shard
    except ImportError:  # pragma: no cover
        return []
    pattern: tuple[Any, tuple[int, ...]] | None = None
    for t in tensors:
        if not isinstance(t, DTensor):
            continue
        dims = tuple(i for i, p in enumerate(t.placements) if isinstance(p, Shard) or p.is_partial())
        key = (t.device_mesh, dims)
        if pattern is None:
            pattern = key
        elif key != pattern:
            raise NotImplementedError(
                "gradviz: parameters are sharded over different device meshes or placements; "
                "per-group norms support one sharding pattern (FSDP2 fully_shard over one mesh)"
            )
    if pattern is None:
        return []
    mesh, dims = pattern
    return [mesh.get_group(d) for d in dims]


def all_reduce_partials(partial: torch.Tensor, groups: list[Any], reduce_op: str) -> torch.Tensor:
    """Combine per-group partials across shards: one ``all_reduce`` per sharded mesh dim (one for FSDP2)."""
    if not groups:
        return partial
    import torch.distributed as dist

    op = dist.ReduceOp.MAX if reduce_op == "max" else dist.ReduceOp.SUM
    for group in groups:
        dist.all_reduce(partial, op=op, group=group)
    return partial
