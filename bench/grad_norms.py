"""Benchmark 2: the cost of per-layer gradient norms on one logged step.

On BERT-style models with 73, 137 and 201 parameter tensors (4, 8, 12 layers of
``bert-mini``'s width) and real gradients from one backward pass, each method turns the
gradients into numbers on the host, interleaved round by round:

* ``floor``: one ``torch._foreach_norm`` over the same gradients and ONE transfer
  (``torch.stack(...).tolist()``): the least any per-tensor-norm logger can do;
* ``gradviz``: what ``GradNormLogger`` runs on a logged step (``_on_backward_end`` then
  ``on_pre_optimizer_step``: the fused per-group kernel, one transfer, the scalars dict and
  core's ``report`` into ``log_history``), per layer (``group_by="layer"``);
* ``gradviz kernel``: ``GroupNormKernel.norms(...).tolist()`` alone (no callback code);
* ``item loop``: ``{name: p.grad.norm().item()}``, the classic print-gradients loop;
* ``lightning``: Lightning's ``grad_norm`` (``lightning/pytorch/utilities/grads.py``): one
  ``vector_norm`` per tensor, the total from ``torch.tensor(list(norms))``, then one
  ``float()`` per value as its logger does;
* ``wandb histograms``: ``wandb.watch(log="gradients")``'s per-parameter work
  (``wandb/integration/torch/wandb_torch.py``, ``log_tensor_stats``): ``detach().clone()``,
  an all-non-finite check and a finiteness check (host syncs), ``min().item()``,
  ``max().item()``, ``histc(64 bins)``, ``linspace`` edges and ``.tolist()`` of both, per
  parameter (the wandb.Histogram object and the upload are left out: a lower bound).

Also measured: gradviz's cost on a step that is NOT logged with
``on_nonfinite="raise"`` (its every-step finiteness check: the fused pass and one host sync;
the default ``"warn"`` checks only logged steps and costs nothing there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from bench.common import BenchResult, Goal, Table, compare, fmt_time, interleave, per_call
from bench.models import bert, tensor_count

FULL_LAYERS = (4, 8, 12)
TOY_LAYERS = (1,)


def _model_with_grads(layers: int, hidden: int, vocab: int) -> Any:
    import torch

    model = bert(layers, hidden, vocab)
    model.train()
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab, (8, 32), generator=generator)
    labels = torch.randint(0, 2, (8,), generator=generator)
    model(input_ids=input_ids, labels=labels).loss.backward()
    return model


# ---- the methods ------------------------------------------------------------------------------------------


def floor_method(params: list[Any]) -> Callable[[], list[float]]:
    import torch

    def run() -> list[float]:
        grads = [p.grad for p in params]
        return torch.stack(torch._foreach_norm(grads, 2.0)).tolist()

    return run


def item_loop_method(named: list[tuple[str, Any]]) -> Callable[[], dict[str, float]]:
    def run() -> dict[str, float]:
        return {name: p.grad.norm().item() for name, p in named if p.grad is not None}

    return run


def lightning_method(named: list[tuple[str, Any]], norm_type: float = 2.0) -> Callable[[], dict[str, float]]:
    import torch

    def run() -> dict[str, float]:
        norms = {
            f"grad_{norm_type}_norm/{name}": torch.linalg.vector_norm(p.grad, norm_type)
            for name, p in named
            if p.grad is not None
        }
        if norms:
            norms[f"grad_{norm_type}_norm_total"] = torch.tensor(list(norms.values())).norm(norm_type)
        return {k: float(v) for k, v in norms.items()}  # what the logger does with each value

    return run


def _wandb_tensor_stats(tensor: Any, num_bins: int = 64) -> tuple[list[float], list[float]] | None:
    """The CPU path of wandb's ``TorchHistory.log_tensor_stats`` for a dense float tensor."""
    import torch

    tensor = tensor.detach().clone()
    flat = tensor.reshape(-1)
    if not isinstance(flat, (torch.FloatTensor, torch.DoubleTensor)):
        flat = flat.type(torch.FloatTensor)
    if flat.shape == torch.Size([0]) or (~torch.isfinite(flat)).all().item():
        return None
    if not torch.isfinite(flat).all():
        flat = flat[torch.isfinite(flat)]
    tmin = flat.min().item()
    tmax = flat.max().item()
    if tmin > tmax:
        tmin, tmax = tmax, tmin
    if tmin == tmax:
        counts = torch.Tensor([flat.numel()]).cpu().clone().detach()
        bins = torch.Tensor([tmin, tmax])
    else:
        counts = flat.histc(bins=num_bins, min=tmin, max=tmax).cpu().detach().clone()
        bins = torch.linspace(tmin, tmax, steps=num_bins + 1)
    return counts.tolist(), bins.tolist()


def wandb_method(named: list[tuple[str, Any]]) -> Callable[[], dict[str, Any]]:
    def run() -> dict[str, Any]:
        return {f"gradients/{name}": _wandb_tensor_stats(p.grad.data) for name, p in named if p.grad is not None}

    return run


def gradviz_methods(model: Any) -> dict[str, Callable[[], Any]]:
    """gradviz's logged-step path (callback), its kernel alone, and its not-logged-step check."""
    import torch

    from trainer_callbacks.gradviz import GradNormLogger
    from trainer_callbacks.gradviz.grouping import build_grouping, parameters_of
    from trainer_callbacks.gradviz.kernel import GroupNormKernel

    grouping = build_grouping(model, "layer")
    params = parameters_of(model, grouping)
    kernel = GroupNormKernel.for_tensors([p.grad for p in params], grouping.group_of, len(grouping.groups))

    def kernel_only() -> list[float]:
        return kernel.norms([p.grad for p in params]).tolist()

    callback = GradNormLogger(on_nonfinite="raise")  # "raise": the not-logged-step check runs on every step
    callback._bind(model)  # what on_train_begin does
    args = SimpleNamespace(gradient_accumulation_steps=1)
    state = SimpleNamespace(global_step=0, log_history=[], is_world_process_zero=True)
    control = SimpleNamespace()

    def logged_step() -> None:
        callback._measure = True
        callback._on_backward_end()
        callback.on_pre_optimizer_step(args, state, control)
        state.log_history.clear()

    def unlogged_step() -> None:
        callback._measure = False
        callback._on_backward_end()
        callback.on_pre_optimizer_step(args, state, control)

    callback._measure = True
    callback._on_backward_end()  # builds the gradient kernel, as the first measured step does
    callback.on_pre_optimizer_step(args, state, control)
    if callback.last_measured_step != 1 or not any(k.startswith("grad_norm/") for k in state.log_history[-1]):
        raise RuntimeError("GradNormLogger reported no grad_norm/<group> on a logged step")
    state.log_history.clear()
    expected = torch.stack(torch._foreach_norm([p.grad for p in params])).square()
    sums = torch.zeros(len(grouping.groups)).index_add_(0, torch.tensor(grouping.group_of), expected).sqrt()
    got = kernel_only()
    if not all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(got, sums.tolist())):
        raise RuntimeError("gradviz kernel disagrees with the reference per-group norms")
    return {"gradviz": logged_step, "gradviz kernel": kernel_only, "gradviz unlogged step": unlogged_step}


def _calls_for(seconds_per_call: float, budget: float) -> int:
    return max(1, min(200, int(budget / max(seconds_per_call, 1e-7))))


def run(quick: bool = False) -> BenchResult:
    import time

    import torch

    started = time.perf_counter()
    layer_counts = TOY_LAYERS if quick else FULL_LAYERS
    hidden, vocab = (32, 100) if quick else (256, 30522)
    rounds = 3 if quick else 11
    budget = 0.002 if quick else 0.06  # seconds per arm per round (calls per round derived from it)

    result = BenchResult(
        name="grad_norms",
        title="Gradient norms per logged step",
        setup={
            "models": ", ".join(f"BERT {n} layers ({tensor_count(n)} tensors)" for n in layer_counts),
            "width": f"hidden {hidden}, vocab {vocab}, fp32, CPU, {torch.get_num_threads()} threads",
            "gradients": "real, from one backward pass on a batch of 8 x 32 tokens",
            "rounds": f"{rounds} interleaved rounds; each arm runs a fixed number of calls per round",
        },
    )
    rows = []
    for layers in layer_counts:
        model = _model_with_grads(layers, hidden, vocab)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        n_tensors = len(named)
        n_elements = sum(p.numel() for p in params)
        methods: dict[str, Callable[[], Any]] = {"floor": floor_method(params)}
        try:
            methods.update(gradviz_methods(model))
        except ImportError as exc:
            result.notes.append(f"gradviz not measured: {exc}")
        methods["item loop"] = item_loop_method(named)
        methods["lightning"] = lightning_method(named)
        methods["wandb histograms"] = wandb_method(named)
        # calibrate: calls per round so that every arm takes about `budget` seconds
        arms = {}
        for name, fn in methods.items():
            fn()
            t0 = time.perf_counter()
            fn()
            arms[name] = per_call(fn, _calls_for(time.perf_counter() - t0, budget))
        samples = interleave(arms, rounds)
        for name in methods:
            cmp = compare(samples, "floor", name)
            result.comparisons.append(cmp)
            result.medians[f"{layers}L/{name}"] = cmp.median_arm
            rows.append(
                [
                    f"{n_tensors} ({layers} layers, {n_elements / 1e6:.1f}M)",
                    name,
                    fmt_time(cmp.median_arm),
                    f"{cmp.ratio:.2f}x",
                    cmp.spread,
                ]
            )
        if "gradviz" in methods:
            gv = compare(samples, "floor", "gradviz")
            hist = compare(samples, "gradviz", "wandb histograms")
            result.goals.append(
                Goal(
                    text=f"{n_tensors} tensors: gradviz <= 1.15x the floor",
                    measured=f"{gv.ratio:.2f}x ({gv.spread})",
                    met=gv.ratio <= 1.15,
                    why="" if gv.ratio <= 1.15 else _why_slow(samples, "floor"),
                )
            )
            result.goals.append(
                Goal(
                    text=f"{n_tensors} tensors: >= 20x cheaper than per-parameter histograms",
                    measured=f"{hist.ratio:.1f}x ({hist.spread})",
                    met=hist.ratio >= 20,
                )
            )
    result.tables.append(
        Table(
            "Per logged step (median per call; ratio = median of per-round ratios to the floor)",
            ["tensors", "method", "median", "x floor", "spread of x floor"],
            rows,
        )
    )
    result.notes.append(
        "'gradviz unlogged step' is the every-step finiteness check of on_nonfinite='raise' on steps "
        "that are not logged (the default 'warn' and 'ignore' cost nothing there)."
    )
    result.wall_seconds = time.perf_counter() - started
    return result


def _why_slow(samples: dict[str, list[float]], floor: str) -> str:
    import statistics

    gv = statistics.median(samples["gradviz"])
    kern = statistics.median(samples.get("gradviz kernel", samples["gradviz"]))
    fl = statistics.median(samples[floor])
    return (
        f"floor {fmt_time(fl)}; GroupNormKernel.norms+tolist {fmt_time(kern)} ({kern / fl:.2f}x); whole logged step "
        f"(_on_backward_end + on_pre_optimizer_step + _finish/report) {fmt_time(gv)} ({gv / fl:.2f}x)"
    )
