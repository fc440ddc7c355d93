"""Cost per logged step of gradviz's kernel against the floor and the usual alternatives.

    python packages/callbacks-gradviz/bench/bench_kernel.py [--layers 4 12] [--hidden 256] [--repeat 30]

On the gradients of a BertForSequenceClassification (random init, one backward), times:

* floor: bare ``torch._foreach_norm`` per (device, dtype) + one transfer of the per-tensor norms;
* gradviz: ``GroupNormKernel.norms`` (layer groups) + one ``.tolist()``;
* gradviz every-step check: the same partial + one ``isfinite().all()`` host sync (on_nonfinite="warn");
* per-parameter ``.item()`` loop (the hand-written loop of the issue);
* Lightning-style: ``torch.linalg.vector_norm`` per tensor, then one stack + transfer;
* wandb-style: per-parameter ``torch.histc`` with 64 bins + min/max (three host syncs per tensor).

Prints median microseconds and the ratios to the floor. Not a test; no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from trainer_callbacks.gradviz.grouping import build_grouping
from trainer_callbacks.gradviz.kernel import GroupNormKernel


def bert_grads(layers: int, hidden: int) -> tuple[list[str], list[torch.Tensor]]:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            num_hidden_layers=layers,
            hidden_size=hidden,
            num_attention_heads=max(hidden // 64, 1),
            intermediate_size=4 * hidden,
            vocab_size=30522,
        )
    )
    ids = torch.randint(0, 30522, (4, 64))
    model(input_ids=ids, labels=torch.zeros(4, dtype=torch.long)).loss.backward()
    named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    return [n for n, _ in named], [g for _, g in named]


def timeit(fn: Callable[[], object], repeat: int) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def floor(grads: list[torch.Tensor]) -> list[float]:
    return torch.stack(torch._foreach_norm(grads, 2.0)).tolist()


def per_param_item(grads: list[torch.Tensor]) -> list[float]:
    return [g.norm().item() for g in grads]


def lightning_style(grads: list[torch.Tensor]) -> list[float]:
    return torch.stack([torch.linalg.vector_norm(g, 2.0) for g in grads]).tolist()


def wandb_style(grads: list[torch.Tensor]) -> list[list[float]]:
    out = []
    for g in grads:
        flat = g.detach().float().reshape(-1)
        lo, hi = flat.min().item(), flat.max().item()
        out.append(torch.histc(flat, bins=64, min=lo, max=hi).tolist())
    return out


def bench_one(layers: int, hidden: int, repeat: int) -> dict[str, float]:
    """Median microseconds of each method on one BERT's gradients (printed with ratios to the floor)."""
    names, grads = bert_grads(layers, hidden)
    _, grouping = build_grouping(names, "layer")
    kernel = GroupNormKernel.for_tensors(grads, grouping.group_of, len(grouping.groups))
    results = {
        "floor (_foreach_norm + 1 transfer)": timeit(lambda: floor(grads), repeat),
        "gradviz kernel (groups + 1 transfer)": timeit(lambda: kernel.norms(grads).tolist(), repeat),
        "gradviz every-step finite check": timeit(lambda: bool(torch.isfinite(kernel.partial(grads)).all()), repeat),
        "per-parameter .item() loop": timeit(lambda: per_param_item(grads), repeat),
        "Lightning-style per-tensor vector_norm": timeit(lambda: lightning_style(grads), repeat),
        "wandb-style per-parameter histograms": timeit(lambda: wandb_style(grads), max(repeat // 3, 3)),
    }
    base = results["floor (_foreach_norm + 1 transfer)"]
    size = sum(g.numel() for g in grads)
    print(
        f"\nBERT {layers} layers, hidden {hidden}: {len(grads)} tensors, {size / 1e6:.1f}M grads, "
        f"{len(grouping.groups)} groups, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for name, us in results.items():
        print(f"  {name:42s} {us:10.0f} us  {us / base:6.2f}x floor")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 12])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=30)
    opts = parser.parse_args()
    for layers in opts.layers:
        bench_one(layers, opts.hidden, opts.repeat)


if __name__ == "__main__":
    main()
