"""The simulator against the real ``transformers.Trainer``: identical event streams.

Each example draws a ``TrainingArguments`` configuration (``strategies.training_setups``)
and a script of control flags that a callback sets at given events, then runs the real
``Trainer`` on ``TinyModel`` and ``simulate`` with the same callbacks. The real run's
evaluation losses are fed to the simulator (metric values are data, not flow), so
``save_strategy="best"`` and ``load_best_model_at_end`` decide on the same numbers.

Compared: every event (name, ``global_step``, ``epoch``, sorted ``logs``/``metrics``
keys), the checkpoint folders left on disk, every surviving ``trainer_state.json``
(everything but logged values: ``stateful_callbacks`` exactly, ``log_history`` keys and
steps), and the final ``TrainerState``. Not compared: logged VALUES (losses, gradient
norms and the learning rate come from different computations: the simulator logs the
learning rate of its own scheduler, which equals the Trainer's, but its loss is
synthetic and its ``grad_norm`` 0.0 without ``compute_gradients``), and the wall-clock
values ``*_runtime``/``*_per_second`` (their keys are compared).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers.trainer_callback import TrainerCallback

from trainer_callbacks.core.testing import CountingCallback, RecordingCallback, simulate, strategies, trace
from trainer_callbacks.core.testing.real_trainer import run_trainer

FLAGS = ("should_training_stop", "should_epoch_stop", "should_evaluate", "should_save", "should_log")
SCRIPT_EVENTS = (
    "on_step_begin",
    "on_substep_end",
    "on_step_end",
    "on_epoch_end",
    "on_evaluate",
    "on_log",
    "on_epoch_begin",
)


class ScriptedControl(TrainerCallback):
    """Sets control flags at scripted ``(event, global_step)`` points, like any callback may."""

    def __init__(self, script: list[tuple[str, int, str]]) -> None:
        self.script = script
        for event in SCRIPT_EVENTS:
            setattr(self, event, self._make(event))

    def _make(self, event: str) -> Any:
        def handler(args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            for name, step, flag in self.script:
                if name == event and step == state.global_step:
                    setattr(control, flag, True)
            return control

        return handler


scripts = st.lists(st.tuples(st.sampled_from(SCRIPT_EVENTS), st.integers(0, 12), st.sampled_from(FLAGS)), max_size=3)


def _checkpoints(output_dir: str) -> list[str]:
    if not os.path.isdir(output_dir):
        return []
    return sorted(p for p in os.listdir(output_dir) if p.startswith("checkpoint-"))


def _comparable_state(path: Path) -> dict[str, Any]:
    """A ``trainer_state.json`` without logged values (keys, steps and epochs of ``log_history`` stay)."""
    data = json.loads(path.read_text())
    data["log_history"] = [(sorted(e), e.get("step"), e.get("epoch")) for e in data["log_history"]]
    if data.get("best_model_checkpoint"):
        data["best_model_checkpoint"] = os.path.basename(data["best_model_checkpoint"])
    return data


def _final_state(state: Any) -> dict[str, Any]:
    fields = (
        "global_step",
        "epoch",
        "max_steps",
        "num_train_epochs",
        "logging_steps",
        "eval_steps",
        "save_steps",
        "best_metric",
        "best_global_step",
        "train_batch_size",
        "is_world_process_zero",
    )
    out = {f: getattr(state, f) for f in fields}
    out["best_model_checkpoint"] = os.path.basename(state.best_model_checkpoint or "") or None
    out["log_keys"] = [(sorted(e), e.get("step")) for e in state.log_history]
    return out


def _run_both(setup: strategies.TrainingSetup, script: list[tuple[str, int, str]], root: str) -> tuple[Any, Any]:
    real_dir, sim_dir = os.path.join(root, "real"), os.path.join(root, "sim")
    real_rec, sim_rec = RecordingCallback(), RecordingCallback()
    real_error = sim_error = None
    trainer = sim = None
    try:
        trainer = run_trainer(
            strategies.build_args(setup.kwargs, real_dir),
            [ScriptedControl(script), CountingCallback(), real_rec],
            train_dataset_len=setup.train_dataset_len,
        )
    except Exception as exc:  # the simulator must then fail the same way
        real_error = exc
    losses = [{"eval_loss": e.payload["eval_loss"]} for e in real_rec.events if e.name == "on_evaluate"]
    try:
        sim = simulate(
            strategies.build_args(setup.kwargs, sim_dir),
            [ScriptedControl(script), CountingCallback(), sim_rec],
            losses or None,
            train_dataset_len=setup.train_dataset_len,
            save_checkpoints=True,
        )
    except Exception as exc:
        sim_error = exc
    assert type(sim_error) is type(real_error), (real_error, sim_error)
    assert trace(sim_rec.events) == trace(real_rec.events)
    if real_error is not None:
        return None, None
    assert trainer is not None and sim is not None
    assert _checkpoints(sim_dir) == _checkpoints(real_dir)
    for name in _checkpoints(real_dir):
        assert _comparable_state(Path(sim_dir, name, "trainer_state.json")) == _comparable_state(
            Path(real_dir, name, "trainer_state.json")
        ), name
    assert _final_state(sim.state) == _final_state(trainer.state)
    assert sim.control == trainer.control
    return trainer, sim


def _examples() -> int:
    # At least 200 configurations, more under a deeper profile (HYPOTHESIS_PROFILE=deep).
    return max(200, settings.default.max_examples)


@pytest.mark.slow
@settings(
    max_examples=_examples(),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(setup=strategies.training_setups(output_dir="unused"), script=scripts)
def test_simulator_matches_real_trainer(
    fast_real_trainer: None, tmp_path: Path, setup: strategies.TrainingSetup, script: list[tuple[str, int, str]]
) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as root:
        _run_both(setup, script, root)


def test_a_known_configuration_matches(fast_real_trainer: None, tmp_path: Path) -> None:
    """One hand-picked configuration with every feature at once (a quick smoke test of the harness)."""
    setup = strategies.TrainingSetup(
        dict(
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            max_steps=-1,
            num_train_epochs=2.5,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=2,
            logging_steps=2,
            logging_first_step=True,
            eval_strategy="steps",
            eval_steps=2,
            eval_delay=1,
            save_strategy="steps",
            save_steps=4,
            load_best_model_at_end=True,
            save_total_limit=1,
            eval_on_start=True,
        ),
        train_dataset_len=9,
        output_dir="unused",
    )
    _trainer, sim = _run_both(setup, [("on_step_end", 3, "should_save")], str(tmp_path))
    # 9 examples / batch 2 = 5 batches, 2 per step: 3 steps per epoch, ceil(2.5 * 3) = 8 steps;
    # saves: step 3 (scripted), 4 and 8 (save_steps=4; 8 is also the last step).
    assert [e.global_step for e in sim.events_named("on_save")] == [3, 4, 8]
    assert sim.state.best_model_checkpoint is not None
