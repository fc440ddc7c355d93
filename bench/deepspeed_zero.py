"""Benchmark: per-group gradient norms under DeepSpeed ZeRO, gradviz's route against ``safe_get_full_grad``.

Both arms run inside one ZeRO optimizer step (hooked where gradviz reads, before DeepSpeed's clip
and update), on the same reduced gradients, interleaved:

* ``gradviz (partitions)``: ``gradviz.zero.ZeroGroupNorms.partial()``: one ``_foreach_norm`` over
  this rank's gradient slices, one ``all_reduce`` of ``num_groups + 1`` numbers, one host sync;
* ``safe_get_full_grad``: DeepSpeed's public helper per parameter (it all-reduces (ZeRO-1/2) or
  all-gathers (ZeRO-3) each full gradient), then the same per-group sums of squares.

One process (world size 1, gloo, ``DS_ACCELERATOR=cpu``): every collective is a local copy, so
the figures show the per-parameter overhead of the helper only; with more ranks each of its
per-parameter collectives also moves the full gradient over the network, and gradviz's one
all-reduce does not grow with the model. Both arms' per-group norms are compared.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import torch

from bench.common import BenchResult, Goal, Table, compare, fmt_time, interleave

FULL = [("12 x h256 MLP", 12, 256), ("24 x h512 MLP", 24, 512)]
QUICK = [("toy (2 x h32)", 2, 32)]


def _model(layers: int, hidden: int) -> torch.nn.Module:
    torch.manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.Tanh()) for _ in range(layers)]
    return torch.nn.Sequential(*blocks, torch.nn.Linear(hidden, 2))


_DIST_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "DS_ACCELERATOR")


@contextlib.contextmanager
def _one_process_group() -> Iterator[Any]:
    """DeepSpeed on a one-process gloo group, torn down after: the bench also runs inside pytest, where a
    process group, its bound port or these environment variables left behind would reach later tests
    (a Trainer in a child process seeing RANK/WORLD_SIZE/MASTER_PORT tries to join that group)."""
    import deepspeed
    import torch.distributed as dist

    saved = {key: os.environ.get(key) for key in _DIST_ENV}
    owned = not dist.is_initialized()
    try:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None  # gloo only, no JIT op
        if owned:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}
            os.environ.update({**env, "LOCAL_RANK": "0"})
            deepspeed.init_distributed(dist_backend="gloo")
        yield deepspeed
    finally:
        if owned and dist.is_initialized():
            deepspeed.comm.destroy_process_group()  # DeepSpeed's own: it also drops its cached groups
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _measure(deepspeed: Any, stage: int, layers: int, hidden: int, rounds: int) -> dict[str, Any]:
    from deepspeed.utils import safe_get_full_grad

    from trainer_callbacks.core import compat
    from trainer_callbacks.gradviz.zero import ZeroGroupNorms

    model = _model(layers, hidden)
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())
    group_of = [int(n.split(".")[0]) for n in names]
    num_groups = max(group_of) + 1
    config = {
        "train_batch_size": 8,
        "zero_optimization": {"stage": stage},
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": 1.0,
    }
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.SGD(params, lr=0.01), config=config)
    zero, found_stage = compat.deepspeed_zero_optimizer(engine.optimizer)
    assert found_stage == stage
    norms = ZeroGroupNorms(zero, stage, params, group_of, num_groups, 2.0, lambda _: None)

    def ours() -> None:
        norms.partial().tolist()  # type: ignore[union-attr]

    def helper() -> None:
        sums = [0.0] * num_groups
        for p, g in zip(params, group_of):
            full = safe_get_full_grad(p)
            sums[g] += float(full.float().square().sum())

    out: dict[str, Any] = {}

    def inside_step() -> None:
        a = norms.partial()
        assert a is not None
        b = [0.0] * num_groups
        for p, g in zip(params, group_of):
            b[g] += float(safe_get_full_grad(p).float().square().sum())
        out["max_rel"] = max(abs(x - y) / max(y, 1e-30) for x, y in zip(a.tolist(), b))
        out["samples"] = interleave({"safe_get_full_grad": helper, "gradviz (partitions)": ours}, rounds)

    remove = compat.hook_deepspeed_step(zero, inside_step)
    x = torch.randn(8, hidden)
    engine.backward(engine(x).square().mean())
    engine.step()
    remove()
    out["params"] = len(params)
    out["numel"] = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in params)
    engine.destroy()
    return out


def run(quick: bool = False) -> BenchResult:
    started = time.perf_counter()
    models = QUICK if quick else FULL
    rounds = 3 if quick else 15
    result = BenchResult(
        name="deepspeed_zero",
        title="deepspeed_zero: per-group gradient norms under ZeRO 1/2/3, partitions vs safe_get_full_grad",
        setup={
            "models": ", ".join(m[0] for m in models) + " (one group per block)",
            "DeepSpeed": "one process, gloo, DS_ACCELERATOR=cpu, fp32, ZeRO stages 1, 2, 3",
            "rounds": str(rounds),
        },
    )
    rows: list[list[str]] = []
    worst_rel = 0.0
    ratios = []
    measured = []
    with _one_process_group() as deepspeed:
        for label, layers, hidden in models:
            for stage in (1, 2, 3):
                measured.append((label, stage, _measure(deepspeed, stage, layers, hidden, rounds)))
    for label, stage, got in measured:
        cmp = compare(got["samples"], "gradviz (partitions)", "safe_get_full_grad")
        result.comparisons.append(cmp)
        key = f"{label.split(' (')[0]}/zero{stage}"
        result.medians[f"{key}/gradviz"] = cmp.median_baseline
        result.medians[f"{key}/safe_get_full_grad"] = cmp.median_arm
        worst_rel = max(worst_rel, got["max_rel"])
        ratios.append(cmp.ratio)
        rows.append(
            [
                label,
                str(stage),
                f"{got['params']} tensors, {got['numel'] / 1e6:.2f}M",
                fmt_time(cmp.median_baseline),
                fmt_time(cmp.median_arm),
                f"{cmp.ratio:.1f}x ({cmp.ratio_min:.1f}-{cmp.ratio_max:.1f})",
                f"{got['max_rel']:.1e}",
            ]
        )
    result.tables.append(
        Table(
            "One measured step: per-group norms from ZeRO's gradient partitions vs safe_get_full_grad per parameter",
            ["model", "ZeRO", "parameters", "gradviz", "safe_get_full_grad", "helper / gradviz", "max rel. diff"],
            rows,
        )
    )
    result.goals.append(
        Goal(
            text="gradviz's per-group norms under ZeRO equal those from DeepSpeed's full gradients, and cost less than "
            "safe_get_full_grad per parameter",
            measured=f"max relative difference {worst_rel:.1e}; safe_get_full_grad / gradviz "
            f"{min(ratios):.1f}x-{max(ratios):.1f}x (world size 1: no network in either)",
            met=worst_rel <= 1e-4 and all(r > 1.0 for r in ratios) and all(math.isfinite(r) for r in ratios),
            why="",
        )
    )
    result.notes.append(
        "World size 1: safe_get_full_grad's per-parameter all-reduce/all-gather is a local copy here; on N ranks "
        "it moves every full gradient, while gradviz sends num_groups + 1 floats once."
    )
    result.wall_seconds = time.perf_counter() - started
    return result
