"""Per-group norms equal an independent recomputation from the UNCLIPPED gradients of the same step.

Two independent references (see conftest): (1) the Trainer's own logged ``grad_norm`` (its
pre-clip total, computed by ``clip_grad_norm_``): sqrt(sum of squared group norms) must
equal it; (2) float64 norms of every parameter's ``.grad`` snapshotted right after each
micro-batch's backward, grouped by a hand-written BERT rule.
"""

from __future__ import annotations

import math

import pytest
import torch
from gradviz_helpers import logged, reference_group, tiny_bert, trainer_grad_norms

from trainer_callbacks.gradviz import GradNormLogger


def reference_groups(per_param: dict[str, float], p: float = 2.0) -> dict[str, float]:
    acc: dict[str, float] = {}
    for name, norm in per_param.items():
        g = reference_group(name)
        acc[g] = max(acc.get(g, 0.0), norm) if math.isinf(p) else acc.get(g, 0.0) + norm**p
    return acc if math.isinf(p) else {g: v ** (1 / p) for g, v in acc.items()}


CASES = [
    pytest.param(dict(max_grad_norm=1e-3), None, 1e-5, id="fp32-clipped"),
    pytest.param(dict(max_grad_norm=0.0), None, 1e-5, id="fp32-no-clip"),
    pytest.param(dict(max_grad_norm=1e-3, gradient_accumulation_steps=3), None, 1e-5, id="fp32-clipped-accum3"),
    pytest.param(
        dict(max_grad_norm=1e-3, bf16=True, gradient_accumulation_steps=2),
        None,
        1e-5,
        id="bf16-autocast-clipped-accum2",
    ),
    # bf16 WEIGHTS: the Trainer's own total is computed in bf16 (8 bits of mantissa), gradviz in float32.
    pytest.param(dict(max_grad_norm=1e-3), torch.bfloat16, 1e-2, id="bf16-weights-clipped"),
]


@pytest.mark.parametrize(("overrides", "dtype", "total_rtol"), CASES)
def test_group_norms_match_unclipped_reference(run_trainer, overrides, dtype, total_rtol) -> None:
    trainer = run_trainer([GradNormLogger()], model=tiny_bert(dtype=dtype), n=40, **overrides)
    history = trainer.state.log_history
    groups = logged(history, "grad_norm/")
    totals = trainer_grad_norms(history)
    assert sorted(groups) == sorted(totals) == [1, 2, 3, 4]
    for step, by_group in groups.items():
        expected = reference_groups(trainer.unclipped[step])
        assert list(by_group) == list(expected)  # same groups, model order
        for g, value in by_group.items():
            assert value == pytest.approx(expected[g], rel=1e-5), (step, g)
        total = math.sqrt(sum(v * v for v in by_group.values()))
        assert total == pytest.approx(totals[step], rel=total_rtol), step
    if overrides.get("max_grad_norm"):  # clipping did happen, so post-clip norms would have failed
        assert all(t > 10 * overrides["max_grad_norm"] for t in totals.values())


@pytest.mark.parametrize("p", [1.0, 3.0, math.inf])
def test_other_norm_types_match_reference(run_trainer, p) -> None:
    trainer = run_trainer([GradNormLogger(norm_type=p)], max_steps=2, max_grad_norm=1e-3)
    steps = logged(trainer.state.log_history, "grad_norm/")
    assert sorted(steps) == [1, 2]
    for step, by_group in steps.items():
        per_param = {n: float(torch.linalg.vector_norm(g, ord=p)) for n, g in trainer.unclipped_grads[step].items()}
        assert by_group == pytest.approx(reference_groups(per_param, p), rel=1e-5)


def test_param_norm_and_update_ratio_match_weights_before_and_after(run_trainer) -> None:
    snapshots: dict[str, dict[str, torch.Tensor]] = {}

    from transformers import TrainerCallback

    class Snap(TrainerCallback):  # independent: full copies, float64
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            snapshots["before"] = {n: p.detach().double().clone() for n, p in model.named_parameters()}

        def on_optimizer_step(self, args, state, control, model=None, **kw):
            snapshots[f"update{state.global_step + 1}"] = {
                n: (p.detach().double() - snapshots["before"][n]) for n, p in model.named_parameters()
            }
            snapshots[f"before{state.global_step + 1}"] = snapshots["before"]

    trainer = run_trainer(
        [GradNormLogger(log_param_norm=True, log_update_ratio=True), Snap()],
        max_steps=3,
        max_grad_norm=1.0,
        learning_rate=1e-2,
    )
    history = trainer.state.log_history
    params, ratios = logged(history, "param_norm/"), logged(history, "update_ratio/")
    assert sorted(params) == sorted(ratios) == [1, 2, 3]
    for step in (1, 2, 3):
        before, update = snapshots[f"before{step}"], snapshots[f"update{step}"]
        w2: dict[str, float] = {}
        d2: dict[str, float] = {}
        for n in before:
            g = reference_group(n)
            w2[g] = w2.get(g, 0.0) + float(before[n].square().sum())
            d2[g] = d2.get(g, 0.0) + float(update[n].square().sum())
        for g in w2:
            assert params[step][g] == pytest.approx(math.sqrt(w2[g]), rel=1e-5)
            assert ratios[step][g] == pytest.approx(math.sqrt(d2[g]) / math.sqrt(w2[g]), rel=1e-4)
            assert ratios[step][g] > 0


def test_include_exclude_select_parameters(run_trainer) -> None:
    cb = GradNormLogger(include=["bert.encoder.*"], exclude=["*.bias"])
    trainer = run_trainer([cb], max_steps=1)
    by_group = logged(trainer.state.log_history, "grad_norm/")[1]
    assert list(by_group) == ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    expected: dict[str, float] = {}
    for n, v in trainer.unclipped[1].items():
        if n.startswith("bert.encoder.") and not n.endswith(".bias"):
            expected[reference_group(n)] = expected.get(reference_group(n), 0.0) + v * v
    assert by_group == pytest.approx({g: math.sqrt(v) for g, v in expected.items()}, rel=1e-5)
