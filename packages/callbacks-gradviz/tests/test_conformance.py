"""The core conformance kit, and the timing rule pinned with the core simulator (real gradients)."""

from __future__ import annotations

import functools

from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import TrainingArguments

from trainer_callbacks.gradviz import GradNormLogger
from trainer_callbacks.testing import parametrize_with_checks, simulate


@parametrize_with_checks([GradNormLogger, functools.partial(GradNormLogger, log_update_ratio=True, every_n_steps=2)])
def test_conformance(callback, check) -> None:
    check()


@settings(deadline=None, max_examples=15)
@given(
    max_steps=st.integers(1, 9),
    logging_steps=st.sampled_from([1, 2, 3, 0.25, 0.5]),
    first=st.booleans(),
    ga=st.integers(1, 3),
)
def test_measured_steps_equal_simulated_trainer_log_steps(tmp_path_factory, max_steps, logging_steps, first, ga):
    args = TrainingArguments(
        str(tmp_path_factory.mktemp("sim")),
        max_steps=max_steps,
        logging_steps=logging_steps,
        logging_first_step=first,
        gradient_accumulation_steps=ga,
        use_cpu=True,
        report_to="none",
        max_grad_norm=1e-3,
    )
    sim = simulate(args, [GradNormLogger(on_nonfinite="ignore")], compute_gradients=True)
    history = sim.state.log_history
    trainer_steps = sorted(e["step"] for e in history if "grad_norm" in e)
    ours = {e["step"]: e for e in history if any(k.startswith("grad_norm/") for k in e)}
    assert sorted(ours) == trainer_steps
    for step in trainer_steps:  # pre-clip: the groups add up to the simulated Trainer's pre-clip total
        total = sum(v * v for k, v in ours[step].items() if k.startswith("grad_norm/")) ** 0.5
        logged = next(e["grad_norm"] for e in history if e.get("step") == step and "grad_norm" in e)
        assert abs(total - logged) <= 1e-5 * logged
