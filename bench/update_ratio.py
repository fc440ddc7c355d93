"""Benchmark: extra accelerator memory of ``log_update_ratio=True`` per measured step.

The weights before the optimizer step are needed after it. Two ways, on the same weights:

* ``full copy (before)``: what gradviz did before issue 18: ``torch._foreach_mul(weights, 1.0)``
  on the device, subtracted after the step, one kernel call; the extra device memory is the
  size of the copy;
* ``staged (gradviz)``: ``gradviz.update_ratio.BeforeStore``: a host copy before the step,
  brought back in 64 MiB chunks after it; the extra device memory is what the stager holds at
  once, tracked tensor by tensor (``StagedWeights.peak_device_bytes``).

This machine has no accelerator, so the stager runs its accelerator path on the CPU
(``offload_host=True``: host buffers are separate tensors, and the uploaded chunks are what is
counted as device memory); the byte counts do not depend on the device. Each extra is reported
as a fraction of the trainable weights' bytes; both arms' per-group partials are compared (the
largest relative difference).
"""

from __future__ import annotations

import time

import torch

from bench.common import BenchResult, Goal, Table, fmt_time

MiB = 1 << 20

# (label, dtype, tensor shapes): stacks of transformer blocks, shaped like the models they name
FULL = [
    ("BERT-mini (4 x h256), fp32", torch.float32, 4, 256, 1024, 30522),
    ("GPT-2 small (12 x h768), fp32", torch.float32, 12, 768, 3072, 50257),
    ("TinyLlama-1.1B (22 x h2048), bf16", torch.bfloat16, 22, 2048, 5632, 32000),
]
QUICK = [("toy (2 x h64), fp32", torch.float32, 2, 64, 128, 1000)]


def _weights(
    dtype: torch.dtype, layers: int, hidden: int, ffn: int, vocab: int
) -> tuple[list[torch.Tensor], list[int]]:
    shapes: list[tuple[tuple[int, ...], int]] = [((vocab, hidden), 0)]
    for layer in range(layers):
        g = layer + 1
        shapes += [((hidden, hidden), g)] * 4 + [((ffn, hidden), g), ((hidden, ffn), g), ((hidden,), g), ((hidden,), g)]
    gen = torch.Generator().manual_seed(0)
    tensors = [(torch.randn(s, generator=gen) * 0.02).to(dtype) for s, _ in shapes]
    return tensors, [g for _, g in shapes]


def _step(ws: list[torch.Tensor]) -> None:
    for w in ws:
        w.mul_(0.999).add_(1e-4)


def run(quick: bool = False) -> BenchResult:
    from trainer_callbacks.core import compat
    from trainer_callbacks.gradviz.kernel import GroupNormKernel
    from trainer_callbacks.gradviz.update_ratio import DEFAULT_CHUNK_BYTES, BeforeStore

    started = time.perf_counter()
    models = QUICK if quick else FULL
    result = BenchResult(
        name="update_ratio",
        title="update_ratio: extra accelerator memory per measured step",
        setup={
            "weights": ", ".join(m[0] for m in models) + " (random, one group per layer + embeddings)",
            "chunk": f"{DEFAULT_CHUNK_BYTES // MiB} MiB (gradviz's default)",
            "device": "none on this machine: the staged path runs on the CPU with its uploads counted as device "
            "memory (offload_host=True)",
        },
    )
    rows: list[list[str]] = []
    worst = 0.0
    peaks: list[int] = []
    for label, dtype, layers, hidden, ffn, vocab in models:
        ws, groups = _weights(dtype, layers, hidden, ffn, vocab)
        total = sum(w.numel() * w.element_size() for w in ws)
        kernel = GroupNormKernel.for_tensors(ws, groups, max(groups) + 1, 2.0)
        # full copy
        t0 = time.perf_counter()
        copy = compat.foreach_copy(ws)
        full_extra = sum(c.numel() * c.element_size() for c in copy)
        _step(ws)
        compat.foreach_sub_(copy, ws)
        expected = kernel.partial(copy)
        full_time = time.perf_counter() - t0
        del copy
        # staged
        store = BeforeStore(offload_host=True)
        t0 = time.perf_counter()
        staged = store.stage(ws)
        _step(ws)
        got = staged.update_partial(kernel, ws)
        staged_time = time.perf_counter() - t0
        # the two arms measured different steps (the weights moved on): compare on one more step
        staged = store.stage(ws)
        copy = compat.foreach_copy(ws)
        _step(ws)
        compat.foreach_sub_(copy, ws)
        expected = kernel.partial(copy)
        got = staged.update_partial(kernel, ws)
        del copy
        rel = float(((got - expected).abs() / expected.abs().clamp_min(1e-30)).max())
        fraction = staged.peak_device_bytes / total
        worst = max(worst, fraction)
        peaks.append(staged.peak_device_bytes)
        key = label.split(" (")[0]
        result.medians[f"{key}/full copy/extra fraction"] = full_extra / total
        result.medians[f"{key}/staged/extra fraction"] = max(fraction, 1e-12)
        rows.append(
            [
                label,
                f"{sum(w.numel() for w in ws) / 1e6:.1f}M ({total / MiB:.0f} MiB)",
                f"{full_extra / MiB:.0f} MiB ({full_extra / total:.2f})",
                f"{staged.peak_device_bytes / MiB:.1f} MiB ({fraction:.4f})",
                f"{staged.chunks}",
                f"{rel:.1e}",
                f"{fmt_time(full_time)} / {fmt_time(staged_time)}",
            ]
        )
    result.tables.append(
        Table(
            "Extra device memory per measured step (fraction of the trainable weights' bytes)",
            [
                "weights",
                "trainable",
                "full copy (before)",
                "staged (gradviz)",
                "chunks",
                "max rel. difference of the partials",
                "CPU time full / staged (no accelerator: not the GPU cost)",
            ],
            rows,
        )
    )
    result.goals.append(
        Goal(
            text="log_update_ratio's extra device memory per measured step is at most one 64 MiB chunk, not a copy of "
            "the weights",
            measured=f"at most {max(peaks) / MiB:.1f} MiB per measured step; "
            + ", ".join(f"{r[0].split(' (')[0]}: {r[3].split('(')[1].rstrip(')')}" for r in rows)
            + " of the trainable weights (full copy: 1.0 each)",
            met=all(peak <= DEFAULT_CHUNK_BYTES for peak in peaks),
            why="",
        )
    )
    result.notes.append(
        "On a GPU the staged arm adds a device-to-host copy before the step and a host-to-device pass after it on "
        "measured steps (about 2 x the weights' bytes over PCIe); not measured here (no accelerator)."
    )
    result.wall_seconds = time.perf_counter() - started
    return result
