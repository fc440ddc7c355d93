"""Simulator-based property tests (core's Trainer-faithful ``simulate``) over its generated
``TrainingArguments`` and metric streams: the stop and every logged counter equal the
reference model's (``conftest.py``), and a run resumed from any of its checkpoints with a new
callback (no ``restore_callback_states_from_checkpoint``) stops exactly where the whole run did.

One decision per global step: when the Trainer evaluates twice at the same step (an empty
epoch under ``dataloader_drop_last``), the second evaluation of that step is not counted, so
the reference is fed the first evaluation of each step.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.earlystop import EarlyStopping
from trainer_callbacks.testing import simulate
from trainer_callbacks.testing import strategies as tcst

OUT = os.path.join(tempfile.gettempdir(), "earlystop-simulated")
NAMES = ("eval_loss", "eval_accuracy")
MODES = {"eval_loss": "min", "eval_accuracy": "max"}


@st.composite
def stoppers(draw: Any) -> dict[str, Any]:
    combine = draw(st.sampled_from(["all", "any", "pareto"]))
    options: dict[str, Any] = {
        "monitor": dict(MODES),
        "combine": combine,
        "patience": draw(st.integers(0, 3)),
        "threshold": draw(st.sampled_from([0.0, 1e-3, 0.05])),
        "threshold_mode": draw(st.sampled_from(["abs", "rel"])),
        "check_finite": draw(st.booleans()),
        "min_steps": draw(st.sampled_from([0, 0, 2, 5])),
    }
    if draw(st.booleans()):
        options["stopping_threshold"] = {"eval_accuracy": draw(st.sampled_from([1.0, 5.0, 20.0]))}
    if draw(st.booleans()):
        options["divergence_threshold"] = {"eval_loss": draw(st.sampled_from([5.0, 50.0, 1e6]))}
    return options


def _reference_metrics(reference: Any, options: dict[str, Any]) -> list[Any]:
    out = []
    for name, mode in MODES.items():
        out.append(
            reference.Metric(
                name,
                mode,
                options["patience"],
                options["threshold"],
                options["threshold_mode"],
                None,
                options.get("stopping_threshold", {}).get(name),
                options.get("divergence_threshold", {}).get(name),
            )
        )
    return out


def _evaluations(state: Any) -> list[tuple[int, dict[str, float]]]:
    firsts: dict[int, dict[str, float]] = {}
    for entry in state.log_history:
        if "eval_runtime" in entry:
            firsts.setdefault(entry["step"], {n: entry[n] for n in NAMES})
    return sorted(firsts.items())


# eval_on_start is off: a stop requested by the evaluation before the first step cannot take
# effect before one optimizer step (the Trainer checks should_training_stop only after a step),
# so the run's last evaluation is not the stopping one. That is the Trainer's loop, not the rule.
@given(
    setup=tcst.training_setups(output_dir=OUT, require_eval=True, extra={"eval_on_start": False}),
    stream=tcst.metric_streams(names=NAMES, max_size=16),
    options=stoppers(),
)
def test_simulated_runs_match_the_reference(reference: Any, setup: Any, stream: Any, options: dict) -> None:
    cb = EarlyStopping(**options)
    if 0 < setup.kwargs["max_steps"] < options["min_steps"]:
        with pytest.raises(ConfigurationError, match="min_steps"):
            simulate(setup.args, [cb], stream, train_dataset_len=setup.train_dataset_len)
        return
    sim = simulate(setup.args, [cb], stream, train_dataset_len=setup.train_dataset_len)
    evaluations = _evaluations(sim.state)
    kw = {k: options[k] for k in ("combine", "patience", "check_finite", "min_steps")}
    expected = reference.trajectory(_reference_metrics(reference, options), evaluations, **kw)
    stop = reference.stop(_reference_metrics(reference, options), evaluations, **kw)
    if stop is None:
        assert cb.stop_reason is None
        assert "early_stopping/stopped" not in {k for e in sim.state.log_history for k in e}
    else:
        index, kind, names = stop
        assert index == len(evaluations) - 1, "the run went on after the stop"
        assert cb.stop_reason is not None
        assert sim.state.global_step == evaluations[index][0] == cb.stop_reason.step
        assert (cb.stop_reason.kind, set(cb.stop_reason.metrics)) == (kind, set(names))
    for name in NAMES:
        logged = [
            (e["step"], e[f"early_stopping/wait/{name}"])
            for e in sim.state.log_history
            if f"early_stopping/wait/{name}" in e
        ]
        assert logged == [(step, exp["waits"][name]) for (step, _), exp in zip(evaluations, expected) if exp]


@given(
    setup=tcst.training_setups(
        output_dir=OUT,
        require_eval=True,
        allow_epochs=False,
        allow_best_model=False,
        extra={"save_strategy": "steps", "save_steps": 1, "save_total_limit": None, "eval_on_start": False},
    ),
    stream=tcst.metric_streams(names=NAMES, kind=["plateauing", "noisy"], min_size=4, max_size=16),
    options=stoppers(),
    pick=st.integers(0, 100),
)
def test_resume_from_any_checkpoint_stops_at_the_same_step(setup: Any, stream: Any, options: dict, pick: int) -> None:
    options["min_steps"] = min(options["min_steps"], setup.kwargs["max_steps"])
    whole = EarlyStopping(**options)
    sim = simulate(setup.args, [whole], stream, train_dataset_len=setup.train_dataset_len)
    evaluations = _evaluations(sim.state)
    # (eval_on_start is off: a resumed Trainer evaluates again on start, an evaluation the whole run never had.)
    # Mid-run checkpoints that hold every evaluation up to their step. (With eval_strategy="epoch" a
    # step checkpoint is written BEFORE that step's epoch-end evaluation, and a run resumed from it never
    # repeats that evaluation: the Trainer's behaviour, not the callback's.)
    usable = [
        c
        for c in sim.checkpoints
        if c.global_step < sim.state.global_step
        and len(_evaluations(c.load_state())) == sum(1 for step, _ in evaluations if step <= c.global_step)
    ]
    event(f"usable mid-run checkpoints: {min(len(usable), 3)}{'+' if len(usable) > 3 else ''}")
    event(f"stopped early: {whole.stop_reason is not None}")
    if not usable:
        return
    checkpoint = usable[pick % len(usable)]
    resumed = EarlyStopping(**options)
    again = simulate(
        setup.args, [resumed], stream, train_dataset_len=setup.train_dataset_len, resume_from_checkpoint=checkpoint
    )
    assert again.state.global_step == sim.state.global_step
    assert resumed.stop_reason == whole.stop_reason
    assert resumed.best == whole.best and resumed.waits == whole.waits
