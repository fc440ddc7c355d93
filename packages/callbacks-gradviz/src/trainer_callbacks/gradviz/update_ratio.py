"""The weights before the optimizer step, kept off the accelerator, for ``update_ratio/<group>``.

``update_ratio/<group> = ||w_after - w_before|| / ||w_before||`` needs ``w_before`` after the
optimizer has overwritten the weights in place. A full copy on the accelerator costs the size
of the trainable weights (14 GB for a 7B model in bf16) at the optimizer step, where memory
peaks. Instead:

* :meth:`BeforeStore.stage` (before the step) copies each accelerator tensor into a host
  buffer (pinned memory where CUDA is available, allocated once and reused at every measured
  step), asynchronously on the current stream: the optimizer's kernels are queued after the
  copies on that stream, so the copies read the weights before the step without a host sync.
  No accelerator memory is used.
* :meth:`StagedWeights.update_partial` (after the step) uploads the saved weights back in
  chunks of at most ``chunk_bytes`` (default 64 MiB; a tensor larger than that goes in slices
  of its flat view), subtracts the new weights in place, and feeds each chunk to the norm
  kernel, combining the per-group partials (``sum |x|^p``, ``max`` for the inf-norm) of the
  chunks. At most one chunk is on the accelerator at a time: the extra accelerator memory is
  ``chunk_bytes`` plus a few numbers per tensor, whatever the model size.

Exactness: each element's difference is the same subtraction of the same two values as with a
full copy (the host copy is bit-exact), and each tensor's norm is computed by the same kernel.
What differs is only the order in which per-tensor (or per-slice) partials are added within a
group, i.e. the rounding of a sum of positive terms (a relative difference of order
``n * eps`` for ``n`` terms; none for the inf-norm, where max is exact).
``tests/test_update_ratio.py`` compares with the full-copy computation.

Tensors already in host memory (CPU training) are copied as before: host memory is their
device, and the copy is the one extra (the size of the trainable weights, freed after the step).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

MiB = 1 << 20
DEFAULT_CHUNK_BYTES = 64 * MiB


def _on_host(t: torch.Tensor) -> bool:
    return t.device.type == "cpu"


@dataclass
class StagedWeights:
    """The weights of one measured step before its optimizer step (see the module docstring)."""

    saved: list[torch.Tensor]
    """Per tensor: the host copy (a reused buffer for accelerator tensors, a fresh copy for host ones)."""
    chunk_bytes: int
    peak_device_bytes: int = 0
    """Most accelerator bytes this object held at once while computing the update (tracked, not sampled)."""
    offload_host: bool = False
    chunks: int = field(default=0)

    def _pieces(self, after: Sequence[torch.Tensor]) -> Iterator[list[tuple[int, slice | None]]]:
        """Groups of ``(tensor index, flat slice or None for the whole tensor)`` of at most ``chunk_bytes``."""
        batch: list[tuple[int, slice | None]] = []
        size = 0
        for i, t in enumerate(after):
            if _on_host(t) and not self.offload_host:
                continue  # computed in place on its host copy, see update_partial
            nbytes = t.numel() * t.element_size()
            if nbytes > self.chunk_bytes:
                if batch:
                    yield batch
                    batch, size = [], 0
                step = max(1, self.chunk_bytes // t.element_size())
                for start in range(0, t.numel(), step):
                    yield [(i, slice(start, min(start + step, t.numel())))]
                continue
            if size + nbytes > self.chunk_bytes and batch:
                yield batch
                batch, size = [], 0
            batch.append((i, None))
            size += nbytes
        if batch:
            yield batch

    def update_partial(self, kernel: Any, after: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-group partial of ``w_after - w_before`` (what ``kernel.partial`` of the full differences gives)."""
        combine_max = math.isinf(kernel.norm_type)
        total: torch.Tensor | None = None

        def add(part: torch.Tensor) -> None:
            nonlocal total
            total = part if total is None else (torch.maximum(total, part) if combine_max else total + part)

        host = [
            i for i, t in enumerate(after) if _on_host(t) and not self.offload_host
        ]  # the copy already is in host memory: subtract there
        if host:
            diffs: list[torch.Tensor | None] = [None] * len(after)
            for i in host:
                diffs[i] = self.saved[i].sub_(after[i])
            add(kernel.partial(diffs))
        for piece in self._pieces(after):
            diffs = [None] * len(after)
            held = 0
            for i, part in piece:
                target = after[i] if part is None else after[i].reshape(-1)[part]
                source = self.saved[i] if part is None else self.saved[i].reshape(-1)[part]
                diff = source.to(target.device, non_blocking=True)
                if diff.data_ptr() == source.data_ptr():  # same device: .to made no copy
                    diff = source.clone()
                diff.sub_(target)
                diffs[i] = diff
                held += diff.numel() * diff.element_size()
            self.peak_device_bytes = max(self.peak_device_bytes, held)
            self.chunks += 1
            add(kernel.partial(diffs))
            del diffs
        if total is None:
            return kernel.partial([None] * len(after))
        return total


class BeforeStore:
    """Host buffers for the accelerator weights, allocated at the first measured step and reused."""

    def __init__(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES, offload_host: bool = False) -> None:
        self.chunk_bytes = int(chunk_bytes)
        self.offload_host = offload_host
        """Treat host tensors like accelerator ones (tests: the chunked path on a machine without one)."""
        self._buffers: list[torch.Tensor] | None = None

    def _buffer_fits(self, tensors: Sequence[torch.Tensor]) -> bool:
        b = self._buffers
        return (
            b is not None
            and len(b) == len(tensors)
            and all(x.shape == t.shape and x.dtype == t.dtype for x, t in zip(b, tensors))
        )

    def stage(self, tensors: Sequence[torch.Tensor]) -> StagedWeights:
        """Copy ``tensors`` (before the optimizer step) to host memory; see the module docstring."""
        if not self._buffer_fits(tensors):
            pin = torch.cuda.is_available()
            self._buffers = [
                torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=pin and not _on_host(t)) for t in tensors
            ]
        assert self._buffers is not None
        saved: list[torch.Tensor] = []
        for buffer, t in zip(self._buffers, tensors):
            if _on_host(t) and not self.offload_host:
                saved.append(t.clone())  # host memory is this tensor's device: a temporary copy, as before
            else:
                buffer.copy_(t, non_blocking=not _on_host(t))
                saved.append(buffer)
        return StagedWeights(saved=saved, chunk_bytes=self.chunk_bytes, offload_host=self.offload_host)


_stores: weakref.WeakKeyDictionary[Any, BeforeStore] = weakref.WeakKeyDictionary()


def before_store(owner: Any) -> BeforeStore:
    """The :class:`BeforeStore` of ``owner`` (a callback), made on first use; it does not travel with copies."""
    store = _stores.get(owner)
    if store is None:
        store = _stores[owner] = BeforeStore()
    return store
