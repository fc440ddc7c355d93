"""Real Trainer runs (tiny random-init BERT, CPU, generated data).

* warmup + cosine, ``logging_steps=1``: the logged ``learning_rate`` at every step equals
  the cosine-with-warmup formula (written out here) times the scale that torch's
  ``ReduceLROnPlateau`` gives for the same metric stream (the oracle);
* a resume mid-run (without ``restore_callback_states_from_checkpoint``) reproduces the
  uninterrupted run's LR sequence, and the reduction is not applied twice;
* the logged names, the summary line and the plot events.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from lr_testing import LRRecorder, ScriptedMetric, tiny_trainer, torch_oracle_lrs
from transformers import TrainerCallback

from trainer_callbacks.lr import ReduceLROnPlateau, plugin
from trainer_callbacks.lr.history import reductions
from trainer_callbacks.lr.scaling import unwrap_optimizer
from trainer_callbacks.testing import local_mlflow_env

PEAK, WARMUP, STEPS, EVAL_EVERY = 1e-3, 3, 16, 2


def plateau_metric(index: int) -> float:
    # improves at the first two evaluations, then flat: with patience=1 cuts after evaluations 4, 6, 8
    return [1.0, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8][min(index, 7)]


def cosine_warmup(step: int) -> float:
    # transformers.get_cosine_schedule_with_warmup, written out
    if step < WARMUP:
        return step / WARMUP
    progress = (step - WARMUP) / (STEPS - WARMUP)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def make_trainer(tmp_path, callbacks, **overrides):  # type: ignore[no-untyped-def]
    options = dict(
        output_dir=tmp_path,
        max_steps=STEPS,
        learning_rate=PEAK,
        lr_scheduler_type="cosine",
        warmup_steps=WARMUP,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        eval_strategy="steps",
        eval_steps=EVAL_EVERY,
        seed=0,
        data_seed=0,
    )
    options.update(overrides)
    return tiny_trainer(callbacks, train_size=64, **options)


def logged_lrs(log_history) -> dict[int, float]:  # type: ignore[no-untyped-def]
    return {e["step"]: e["learning_rate"] for e in log_history if "learning_rate" in e}


@pytest.mark.slow
def test_warmup_cosine_logged_lr_is_schedule_times_scale(tmp_path) -> None:
    recorder = LRRecorder()
    callback = ReduceLROnPlateau(patience=1, factor=0.5)
    trainer = make_trainer(tmp_path, [ScriptedMetric("eval_loss", plateau_metric), callback, recorder])
    trainer.train()
    history = trainer.state.log_history

    n_evals = STEPS // EVAL_EVERY
    metrics = [plateau_metric(i) for i in range(n_evals)]
    scale_after = [lrs[0] for lrs in torch_oracle_lrs([1.0], metrics, mode="min", factor=0.5, patience=1)]
    assert scale_after[-1] < 1.0  # the stream forces reductions
    lrs = logged_lrs(history)
    assert sorted(lrs) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        evals_before = (step - 1) // EVAL_EVERY  # evaluations at steps < step
        scale = scale_after[evals_before - 1] if evals_before else 1.0
        expected = PEAK * cosine_warmup(step - 1) * scale  # step s runs with schedule(s - 1)
        assert lrs[step] == pytest.approx(expected, rel=1e-9, abs=1e-15), step
        assert recorder.used[step][0] == pytest.approx(expected, rel=1e-9, abs=1e-15), step  # what the optimizer used

    # logged names: scale and count at each evaluation; old/new LR at each reduction
    scales = [e for e in history if "lr_plateau/scale" in e]
    assert [e["step"] for e in scales] == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
    assert [e["lr_plateau/scale"] for e in scales] == pytest.approx(scale_after)
    found = reductions(history)
    assert [r.step for r in found] == [8, 12, 16]  # evaluations 4, 6, 8 (2 steps apart)
    assert found[0].old_lrs[0] == pytest.approx(PEAK) and found[0].new_lrs[0] == pytest.approx(PEAK / 2)
    assert all(len(r.old_lrs) == len(trainer.optimizer.param_groups) for r in found)
    lines = plugin.summarize_run(history, tmp_path)
    assert len(trainer.optimizer.param_groups) == 2  # decay and no-decay groups share the peak LR
    assert lines[0] == (
        "LR reduced x0.5 at step 8 (eval_loss plateaued 2 evaluations): 0.001 -> 0.0005 (all 2 param groups)"
    )
    assert [e.step for e in plugin.plot_events(history)] == [8, 12, 16]


@pytest.mark.slow
def test_resume_mid_run_reproduces_the_lr_sequence(tmp_path) -> None:
    """Checkpoint at step 10: one reduction done (step 8) and one bad evaluation counted (step 10). The
    resumed run must cut again at step 12 like the uninterrupted run; a fresh plateau state would wait
    until step 16, and a scale re-applied on resume would double the cut."""
    full_cb = ReduceLROnPlateau(patience=1, factor=0.5)
    full = make_trainer(
        tmp_path / "full", [ScriptedMetric("eval_loss", plateau_metric), full_cb], save_strategy="steps", save_steps=5
    )
    full.train()
    full_lrs = logged_lrs(full.state.log_history)

    checkpoint = tmp_path / "full" / "checkpoint-10"
    saved = json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]["ReduceLROnPlateau"]
    progress = saved["attributes"]["progress"]
    assert (progress["scales"], progress["num_bad_epochs"], progress["best"]) == ([0.5, 0.5], 1, 0.8)
    scheduler_state = torch.load(checkpoint / "scheduler.pt", weights_only=True)
    assert scheduler_state["base_lrs"] == pytest.approx([PEAK / 2, PEAK / 2])  # the scaled peak travels with it

    resumed_cb = ReduceLROnPlateau(patience=1, factor=0.5)
    second = make_trainer(
        tmp_path / "resumed", [ScriptedMetric("eval_loss", plateau_metric), resumed_cb], save_strategy="no"
    )
    assert second.args.restore_callback_states_from_checkpoint is False
    second.train(resume_from_checkpoint=str(checkpoint))
    resumed_lrs = logged_lrs(second.state.log_history)
    assert sorted(k for k in resumed_lrs if k > 10) == list(range(11, STEPS + 1))
    for step in range(11, STEPS + 1):
        assert resumed_lrs[step] == pytest.approx(full_lrs[step], rel=1e-12), step
    assert resumed_lrs[13] == pytest.approx(PEAK * cosine_warmup(12) * 0.25, rel=1e-9)
    assert resumed_cb.state_dict() == full_cb.state_dict()
    assert resumed_cb.reductions == full_cb.reductions == 3


@pytest.mark.slow
def test_metrics_reach_tensorboard_and_mlflow(tmp_path, monkeypatch) -> None:
    """Two param groups: lr_plateau/scale and lr_plateau/scale/group_<i> both land (MLflow: '/' -> '.')."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for name, value in local_mlflow_env(tmp_path, "lr").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    callback = ReduceLROnPlateau(patience=1, factor=0.5)
    trainer = make_trainer(
        tmp_path / "run",
        [ScriptedMetric("eval_loss", plateau_metric), callback],
        max_steps=8,
        report_to=["tensorboard", "mlflow"],
    )
    trainer.train()
    expected_scale = [1.0, 1.0, 1.0, 0.5]  # evaluations at steps 2, 4, 6, 8: cut at the 4th

    files = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    scalars: dict[str, list[tuple[int, float]]] = {}
    for f in files:
        acc = EventAccumulator(str(f))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    assert sorted(scalars["lr_plateau/scale"]) == [(s, pytest.approx(v)) for s, v in zip([2, 4, 6, 8], expected_scale)]
    assert sorted(scalars["lr_plateau/new_lr/group_1"]) == [(8, pytest.approx(PEAK / 2))]

    client = MlflowClient()
    experiment = client.get_experiment_by_name("lr")
    assert experiment is not None
    run = client.search_runs([experiment.experiment_id])[0]
    history = client.get_metric_history(run.info.run_id, "lr_plateau.scale")
    assert sorted((m.step, m.value) for m in history) == list(zip([2, 4, 6, 8], expected_scale))
    assert [m.value for m in client.get_metric_history(run.info.run_id, "lr_plateau.scale.group_1")][-1] == 0.5
    assert client.get_metric_history(run.info.run_id, "lr_plateau.reductions")[-1].value == 1.0


class FlatThenImproving(TrainerCallback):
    """``eval_loss`` is flat during the first ``train()`` (the LR is cut) and strictly falls afterwards (no cut)."""

    def __init__(self) -> None:
        self.runs = 0
        self.count = 0

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.runs += 1

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # type: ignore[no-untyped-def]
        self.count += 1
        metrics["eval_loss"] = 1.0 if self.runs == 1 else 1.0 / self.count


def linear_warmup(step: int, warmup: int, total: int) -> float:
    # transformers.get_linear_schedule_with_warmup, written out
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / (total - warmup))


@pytest.mark.slow
@pytest.mark.parametrize("same_instance", [True, False])
def test_a_second_train_starts_from_the_unscaled_schedule(tmp_path, same_instance: bool) -> None:
    """The Trainer reuses its optimizer on a second ``train()`` and builds a new schedule from the param
    groups' ``initial_lr``: a reduction of the first run must not carry over (issue 15 §4)."""
    steps, warmup = 8, 2
    metric, callback = FlatThenImproving(), ReduceLROnPlateau(patience=0, factor=0.25)
    trainer = make_trainer(
        tmp_path, [metric, callback], max_steps=steps, warmup_steps=warmup, lr_scheduler_type="linear"
    )
    trainer.train()
    first = logged_lrs(trainer.state.log_history)
    assert callback.reductions >= 1  # patience 0 on a flat metric: cut at the second evaluation (step 4)
    assert first[steps] < PEAK * linear_warmup(steps - 1, warmup, steps)
    optimizer = unwrap_optimizer(trainer.optimizer)
    assert optimizer.param_groups[0]["initial_lr"] < PEAK  # what the next schedule would start from

    if not same_instance:  # a fresh callback for the second run finds the reduction too
        trainer.remove_callback(callback)
        callback = ReduceLROnPlateau(patience=0, factor=0.25)
        trainer.add_callback(callback)
    trainer.train()
    assert unwrap_optimizer(trainer.optimizer) is optimizer  # the same optimizer, a new schedule
    second = logged_lrs(trainer.state.log_history)
    assert sorted(second) == list(range(1, steps + 1))
    assert callback.reductions == 0
    for step in range(1, steps + 1):
        expected = PEAK * linear_warmup(step - 1, warmup, steps)  # step s runs with schedule(s - 1)
        assert second[step] == pytest.approx(expected, rel=1e-12, abs=1e-18), step
