"""update_ratio with the weights staged off the accelerator: equals the full-copy computation, bounded memory."""

from __future__ import annotations

import math

import pytest
import torch

from trainer_callbacks.gradviz.kernel import GroupNormKernel
from trainer_callbacks.gradviz.update_ratio import BeforeStore, before_store

KiB = 1 << 10


def weights(dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = [(300, 17), (5,), (64, 64), (1,), (1000,), (7, 3, 2), (2048,)]
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in shapes]


def step(ws: list[torch.Tensor]) -> None:
    """An optimizer step: every weight changes in place, by different amounts."""
    g = torch.Generator().manual_seed(1)
    for i, w in enumerate(ws):
        w.add_(torch.randn(w.shape, generator=g, dtype=torch.float64).to(w.dtype) * 10.0 ** (-i))


def full_copy_partial(kernel: GroupNormKernel, before: list[torch.Tensor], after: list[torch.Tensor]) -> torch.Tensor:
    """What gradviz computed before: one copy of everything, subtracted, one kernel call."""
    return kernel.partial([b - a for b, a in zip(before, after)])


GROUPS = [0, 0, 1, 2, 1, 2, 0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, 0.0])
@pytest.mark.parametrize("chunk_bytes", [1 * KiB, 8 * KiB, 1 << 30])
def test_update_partial_equals_the_full_copy_computation(
    dtype: torch.dtype, norm_type: float, chunk_bytes: int
) -> None:
    ws = weights(dtype)
    kernel = GroupNormKernel.for_tensors(ws, GROUPS, 3, norm_type)
    store = BeforeStore(chunk_bytes=chunk_bytes, offload_host=True)  # the accelerator path, on the CPU
    staged = store.stage(ws)
    before = [w.clone() for w in ws]
    step(ws)
    expected = full_copy_partial(kernel, before, ws)
    got = staged.update_partial(kernel, ws)
    if math.isinf(norm_type) or norm_type == 0.0:
        assert torch.equal(got, expected)  # max and counts do not depend on the order
    else:
        # only the order of adding positive per-tensor (per-slice) partials differs
        rel = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(got, expected, rtol=rel, atol=0.0)
    # the bound: never more than one chunk of differences held at once (tracked allocations)
    assert 0 < staged.peak_device_bytes <= chunk_bytes
    if chunk_bytes == 1 * KiB:
        assert staged.chunks > len(ws)  # the larger tensors went in slices


def test_host_tensors_keep_the_plain_copy() -> None:
    ws = weights(torch.float32)
    kernel = GroupNormKernel.for_tensors(ws, GROUPS, 3, 2.0)
    staged = BeforeStore(chunk_bytes=1 * KiB).stage(ws)
    before = [w.clone() for w in ws]
    step(ws)
    torch.testing.assert_close(staged.update_partial(kernel, ws), full_copy_partial(kernel, before, ws))
    assert staged.peak_device_bytes == 0 and staged.chunks == 0


def test_buffers_are_reused_between_measured_steps() -> None:
    ws = weights(torch.float32)
    store = BeforeStore(offload_host=True)
    first = store.stage(ws).saved
    second = store.stage(ws).saved
    assert all(a.data_ptr() == b.data_ptr() for a, b in zip(first, second))


def test_one_store_per_callback() -> None:
    class Owner:
        pass

    a, b = Owner(), Owner()
    assert before_store(a) is before_store(a) and before_store(a) is not before_store(b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_extra_memory_is_one_chunk() -> None:  # pragma: no cover - run where a GPU is present
    ws = [torch.randn(1 << 20, device="cuda") for _ in range(16)]  # 64 MiB of weights
    kernel = GroupNormKernel.for_tensors(ws, list(range(16)), 16, 2.0)
    store = BeforeStore(chunk_bytes=4 << 20)
    staged = store.stage(ws)
    before = [w.clone() for w in ws]
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for w in ws:
        w.mul_(1.001)
    got = staged.update_partial(kernel, ws)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    torch.testing.assert_close(got, full_copy_partial(kernel, before, ws), rtol=1e-5, atol=0.0)
    assert extra <= (4 << 20) + (1 << 20)  # one chunk, plus the kernel's few numbers per tensor
