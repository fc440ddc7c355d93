"""Reported scalars reach log_history, a real TensorBoard event file and a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainer_callbacks.core import PluginCallback
from trainer_callbacks.core.reporting import mlflow_key, report_scalars


class Reporter(PluginCallback):
    """Reports the step number under a namespaced key at each step, and once at train end."""

    def __init__(self) -> None:
        super().__init__()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.report(args, state, {"probe/step": state.global_step, "probe/half": state.global_step / 2})

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Runs after the Trainer's TensorBoard writer is closed and its MLflow run ended.
        self.report(args, state, {"probe/final": 1.0})
        super().on_train_end(args, state, control, **kwargs)


def read_tensorboard(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for run in {p.parent for p in log_dir.rglob("events.out.tfevents.*")}:
        acc = EventAccumulator(str(run))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return scalars


def test_scalars_reach_history_tensorboard_and_mlflow(tiny_trainer: Any, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    trainer = tiny_trainer([Reporter()], max_steps=4, report_to=["tensorboard", "mlflow"])
    trainer.train()

    expected = [(s, float(s)) for s in range(1, 5)]
    history = [(e["step"], e["probe/step"]) for e in trainer.state.log_history if "probe/step" in e]
    assert history == expected
    trainer.save_state()
    saved = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    assert [(e["step"], e["probe/step"]) for e in saved if "probe/step" in e] == expected

    tb = read_tensorboard(tmp_path / "out" / "runs")
    assert sorted(tb["probe/step"]) == expected
    assert sorted(tb["probe/half"]) == [(s, s / 2) for s in range(1, 5)]
    assert tb["probe/final"] == [(4, 1.0)]
    assert "train/loss" in tb  # the Trainer's own scalars are in the same run directory
    assert len({p.parent for p in (tmp_path / "out" / "runs").rglob("events.out.tfevents.*")}) == 1

    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    run_id = runs[0].info.run_id
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "probe.step")) == expected
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "probe.final")] == [(4, 1.0)]
    assert "loss" in runs[0].data.metrics  # the Trainer's own metrics went to the same run


class FakeState:
    def __init__(self, zero: bool):
        self.global_step = 7
        self.log_history: list[dict[str, Any]] = []
        self.is_world_process_zero = zero


class RecordingWriter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, int]] = []

    def add_scalar(self, key: str, value: float, step: int) -> None:
        self.calls.append((key, value, step))


def recording_tensorboard() -> Any:
    """A transformers ``TensorBoardCallback`` (found by isinstance) whose writer records the calls."""
    from transformers.integrations import TensorBoardCallback

    class RecordingTensorBoard(TensorBoardCallback):
        def __init__(self) -> None:  # no SummaryWriter, no files
            self.tb_writer = RecordingWriter()

    return RecordingTensorBoard()


class Handler:
    def __init__(self) -> None:
        self.callbacks = [recording_tensorboard()]


@pytest.mark.parametrize("zero", [True, False])
def test_only_world_process_zero_writes_trackers_but_every_rank_keeps_history(zero: bool) -> None:
    handler, state = Handler(), FakeState(zero)
    report_scalars(None, state, {"a/b": 2}, handler=handler)
    report_scalars(None, state, {"a/c": 3}, step=9, handler=handler)
    assert state.log_history == [{"a/b": 2.0, "step": 7}, {"a/c": 3.0, "step": 9}]
    writes = handler.callbacks[0].tb_writer.calls
    assert writes == ([("a/b", 2.0, 7), ("a/c", 3.0, 9)] if zero else [])


def test_mlflow_key_replaces_slashes_and_what_mlflow_refuses() -> None:
    from mlflow.utils.validation import _validate_metric_name

    assert mlflow_key("grad_norm/bert.encoder.layer.0") == "grad_norm.bert.encoder.layer.0"
    odd = "grad_norm/layer(0)[w]"
    assert mlflow_key(odd) == "grad_norm.layer_0__w_"
    _validate_metric_name(mlflow_key(odd))  # accepted by MLflow itself


class PrefixReporter(PluginCallback):
    """Reports keys that are prefixes of each other, and one under the Trainer's own ``grad_norm``."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.report(args, state, {"grad_norm/layer": 1.0, "ns/scale": 2.0, "ns/scale/group_0": 3.0})


def test_mlflow_file_store_takes_keys_that_prefix_each_other(tiny_trainer: Any) -> None:
    """A file store maps ``/`` to folders: ``grad_norm`` (the Trainer's) and ``grad_norm/layer`` must both land."""
    from mlflow.tracking import MlflowClient

    tiny_trainer([PrefixReporter()], max_steps=2, logging_steps=1, report_to=["mlflow"]).train()
    client = MlflowClient()
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    metrics = run.data.metrics
    assert "grad_norm" in metrics  # the Trainer's own, written by MLflowCallback
    assert (metrics["grad_norm.layer"], metrics["ns.scale"], metrics["ns.scale.group_0"]) == (1.0, 2.0, 3.0)
