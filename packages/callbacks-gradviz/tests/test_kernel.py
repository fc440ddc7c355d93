"""The fused group-norm kernel against per-tensor ``torch.linalg.vector_norm`` in float64."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer_callbacks.gradviz.kernel import GroupNormKernel, group_norms


def reference(tensors, group_of, num_groups, p):
    out = [0.0] * num_groups
    for t, g in zip(tensors, group_of):
        if t is None:
            continue
        n = float(torch.linalg.vector_norm(t.double(), ord=p))
        out[g] = max(out[g], n) if math.isinf(p) else out[g] + (n if p == 0 else n**p)
    if math.isinf(p) or p in (0.0, 1.0):
        return out
    return [v ** (1 / p) for v in out]


@settings(deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=3), min_size=1, max_size=12),
    dtypes=st.lists(
        st.sampled_from([torch.float32, torch.bfloat16, torch.float64, torch.float16]), min_size=1, max_size=12
    ),
    p=st.sampled_from([0.0, 1.0, 2.0, 3.0, math.inf]),
    num_groups=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    drop=st.integers(0, 3),
)
def test_kernel_matches_per_tensor_reference(shapes, dtypes, p, num_groups, seed, drop) -> None:
    g = torch.Generator().manual_seed(seed)
    built = [torch.randn(*s, generator=g).to(dtypes[i % len(dtypes)]) for i, s in enumerate(shapes)]
    group_of = [i % num_groups for i in range(len(built))]
    kernel = GroupNormKernel.for_tensors(built, group_of, num_groups, p)
    tensors: list[torch.Tensor | None] = list(built)
    if drop and len(tensors) > 1:  # a tensor without a gradient this step
        tensors[drop % len(tensors)] = None
    got = kernel.norms(tensors).tolist()
    # the reference sees the same low-precision values, upcast exactly to float64
    assert got == pytest.approx(reference(tensors, group_of, num_groups, p), rel=1e-5, abs=1e-6)


def test_index_structures_are_built_once_and_reused() -> None:
    tensors = [torch.randn(3), torch.randn(2, 2).bfloat16(), torch.randn(4)]
    kernel = GroupNormKernel.for_tensors(tensors, [0, 1, 0], 2)
    assert len(kernel.buckets) == 2  # (cpu, float32) and (cpu, bfloat16)
    index_ids = [id(b.index) for b in kernel.buckets]
    kernel.norms(tensors)
    kernel.norms([t * 2 for t in tensors])
    assert [id(b.index) for b in kernel.buckets] == index_ids


def test_nan_and_inf_stay_in_their_group() -> None:
    tensors = [torch.ones(3), torch.tensor([1.0, math.nan]), torch.tensor([math.inf]), torch.ones(2)]
    norms = group_norms(tensors, [0, 1, 2, 3], 4)
    assert norms[0] == pytest.approx(math.sqrt(3)) and math.isnan(norms[1]) and math.isinf(norms[2])
    assert norms[3] == pytest.approx(math.sqrt(2))


def test_bf16_tensors_are_reduced_in_float32() -> None:
    # 4096 elements of 1/64 in bf16 (exact): the norm is exactly 1.0; a bf16 accumulation would not carry it
    t = torch.full((4096,), 1 / 64, dtype=torch.bfloat16)
    assert group_norms([t], [0], 1) == [1.0]
