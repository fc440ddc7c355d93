"""A real run read back from a real TensorBoard event file and a real MLflow file store."""

from __future__ import annotations

import glob

import pytest
from gradviz_helpers import logged

from trainer_callbacks.core.reporting import mlflow_key
from trainer_callbacks.gradviz import GradNormLogger


def test_tensorboard_and_mlflow_receive_the_group_norms(run_trainer, tmp_path, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}/mlruns")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "gradviz")
    logdir = tmp_path
    trainer = run_trainer(
        [GradNormLogger(histogram=True, log_param_norm=True)],
        max_steps=4,
        logging_steps=2,
        report_to=["tensorboard", "mlflow"],
    )
    expected = logged(trainer.state.log_history, "grad_norm/")
    assert sorted(expected) == [2, 4]

    files = glob.glob(str(logdir / "**" / "events.out.tfevents.*"), recursive=True)
    assert files
    tb: dict[str, dict[int, float]] = {}
    histograms: set[str] = set()
    for f in files:
        acc = EventAccumulator(f, size_guidance={"scalars": 0, "histograms": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for ev in acc.Scalars(tag):
                tb.setdefault(tag, {})[ev.step] = ev.value
        histograms.update(acc.Tags()["histograms"])
    for step, groups in expected.items():
        for group, value in groups.items():
            assert tb[f"grad_norm/{group}"][step] == pytest.approx(value, rel=1e-6)
    assert "param_norm/classifier" in tb
    assert "grad_norm_groups" in histograms

    client = MlflowClient()
    experiment = client.get_experiment_by_name("gradviz")
    assert experiment is not None
    run = client.search_runs([experiment.experiment_id])[0]
    for group in expected[2]:
        key = mlflow_key(f"grad_norm/{group}")  # core's documented MLflow name: '/' becomes '.'
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        assert history == pytest.approx({s: expected[s][group] for s in (2, 4)}, rel=1e-6)
