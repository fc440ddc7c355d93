"""Real ``Trainer`` runs on a tiny random-init BERT (CPU, a few steps, evaluation every step).

With ``learning_rate=0.0`` the weights never change, so ``eval_loss`` is the same at every
evaluation; that makes the stop step derivable by hand. With real learning, the expected stop
is recomputed from the logged evaluation values by the reference model in ``conftest.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.earlystop import EarlyStopping


def scripted(name: str, values: list[float]) -> Any:
    """A ``compute_metrics`` that returns ``values`` in turn (one per evaluation)."""
    calls = {"n": 0}

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        value = values[min(calls["n"], len(values) - 1)]
        calls["n"] += 1
        return {name: value}

    return compute_metrics


def _log(trainer: Any, key: str) -> list[tuple[int, float]]:
    return [(e["step"], e[key]) for e in trainer.state.log_history if key in e]


def _state_file(trainer: Any) -> dict[str, Any]:
    trainer.save_state()
    return json.loads((Path(trainer.args.output_dir) / "trainer_state.json").read_text())


def test_stop_by_hand_with_trackers(tiny_trainer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lr=0: eval_loss is constant. patience 2, combine="all", eval_score 0.1, 0.5, 0.6, 0.6, 0.6 ...

    eval_loss waits 0,1,2,3,4 at steps 1..5 (stalled from step 3); eval_score waits 0,0,0,1,2 (stalled at
    step 5). Both stalled first at step 5: the run stops there. Checked in trainer_state.json, in the
    TensorBoard event file and in the MLflow file store.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    cb = EarlyStopping({"eval_loss": "min", "eval_score": "max"}, patience=2)
    trainer = tiny_trainer(
        [cb],
        compute_metrics=scripted("score", [0.1, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6]),
        learning_rate=0.0,
        report_to=["tensorboard", "mlflow"],
    )
    trainer.train()
    assert trainer.state.global_step == 5
    reason = cb.stop_reason
    assert reason is not None
    assert (reason.kind, reason.step, set(reason.metrics)) == ("patience", 5, {"eval_loss", "eval_score"})
    loss = _log(trainer, "eval_loss")[0][1]
    assert cb.best == {"eval_loss": (loss, 1), "eval_score": (0.6, 3)}

    state = _state_file(trainer)
    history = state["log_history"]
    waits_loss = [
        (e["step"], e["early_stopping/wait/eval_loss"]) for e in history if "early_stopping/wait/eval_loss" in e
    ]
    waits_score = [
        (e["step"], e["early_stopping/wait/eval_score"]) for e in history if "early_stopping/wait/eval_score" in e
    ]
    assert waits_loss == [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]
    assert waits_score == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 2)]
    assert [(e["step"], e["early_stopping/stopped"]) for e in history if "early_stopping/stopped" in e] == [(5, 1.0)]
    assert [(e["step"], e["early_stopping/reason"]) for e in history if "early_stopping/reason" in e] == [
        (5, "patience: all of eval_loss, eval_score stalled for 2/4 evaluations")
    ]

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    assert "early_stopping/stopped" in events.Tags()["scalars"]
    assert [(e.step, e.value) for e in events.Scalars("early_stopping/stopped")] == [(5, 1.0)]
    assert [(e.step, e.value) for e in events.Scalars("early_stopping/wait/eval_score")] == waits_score
    tb_best = [(e.step, e.value) for e in events.Scalars("early_stopping/best/eval_score")]
    assert tb_best == [
        (1, pytest.approx(0.1)),
        (2, 0.5),
        (3, pytest.approx(0.6)),
        (4, pytest.approx(0.6)),
        (5, pytest.approx(0.6)),
    ]

    from mlflow.tracking import MlflowClient

    from trainer_callbacks.core.reporting import mlflow_key

    client = MlflowClient()
    (experiment,) = [e for e in client.search_experiments() if e.name == "earlystop-tests"]
    (run,) = client.search_runs([experiment.experiment_id])
    stopped = client.get_metric_history(run.info.run_id, mlflow_key("early_stopping/stopped"))
    assert [(m.step, m.value) for m in stopped] == [(5, 1.0)]
    waits = client.get_metric_history(run.info.run_id, mlflow_key("early_stopping/wait/eval_loss"))
    assert sorted((m.step, m.value) for m in waits) == waits_loss

    # trainer.evaluate() after train() is not part of the run: nothing changes
    before = cb.state()
    trainer.evaluate()
    assert cb.state() == before


def test_real_learning_matches_the_reference(tiny_trainer: Any, reference: Any) -> None:
    """lr=1e-3: the stop step and every logged counter equal the reference model's, recomputed from the
    evaluation values the run logged. eval_score stalls from evaluation 3, so with combine="any" the run
    must stop by step 4 at the latest."""
    cb = EarlyStopping(
        {"eval_loss": "min", "eval_score": "max"}, patience=2, threshold={"eval_loss": 0.01}, combine="any"
    )
    trainer = tiny_trainer([cb], compute_metrics=scripted("score", [0.1, 0.5, 0.5, 0.5, 0.5, 0.5]))
    trainer.train()
    history = _state_file(trainer)["log_history"]
    evaluations = [
        (e["step"], {"eval_loss": e["eval_loss"], "eval_score": e["eval_score"]}) for e in history if "eval_loss" in e
    ]
    metrics = [reference.Metric("eval_loss", "min", 2, 0.01), reference.Metric("eval_score", "max", 2)]
    index, kind, names = reference.stop(metrics, evaluations, combine="any")
    expected = reference.trajectory(metrics, evaluations, combine="any")
    stop_step = evaluations[index][0]
    assert stop_step <= 4
    assert cb.stop_reason is not None
    assert trainer.state.global_step == stop_step == cb.stop_reason.step
    assert (cb.stop_reason.kind, set(cb.stop_reason.metrics)) == (kind, set(names))
    for name in ("eval_loss", "eval_score"):
        logged = [(e["step"], e[f"early_stopping/wait/{name}"]) for e in history if f"early_stopping/wait/{name}" in e]
        assert logged == [(step, exp["waits"][name]) for (step, _), exp in zip(evaluations, expected)]


def test_resume_stops_where_the_uninterrupted_run_did(tiny_trainer: Any, tmp_path: Path) -> None:
    """lr=0, patience 4: uninterrupted, eval_loss is best at step 1 and waits 1..4 at steps 2..5 -> stop at 5.

    Resumed from checkpoint-2 (wait 1) or checkpoint-4 (wait 3) with a NEW callback and without
    restore_callback_states_from_checkpoint, it must stop at step 5 as well. A callback that lost its
    counters would take step 3 (or 5) as a fresh best and stop at step 7 (or 9).
    """
    options = dict(learning_rate=0.0, save_strategy="steps", save_steps=2)
    whole = EarlyStopping("eval_loss", patience=4)
    trainer = tiny_trainer([whole], output_dir=str(tmp_path / "whole"), **options)
    trainer.train()
    assert whole.stop_reason is not None
    assert trainer.state.global_step == 5 == whole.stop_reason.step
    for checkpoint in ("checkpoint-2", "checkpoint-4"):
        resumed = EarlyStopping("eval_loss", patience=4)
        again = tiny_trainer([resumed], output_dir=str(tmp_path / f"resumed-{checkpoint}"), **options)
        assert not again.args.restore_callback_states_from_checkpoint
        again.train(resume_from_checkpoint=str(tmp_path / "whole" / checkpoint))
        assert again.state.global_step == 5, checkpoint
        assert resumed.stop_reason == whole.stop_reason
        assert resumed.best == whole.best


def test_one_instance_serves_two_train_calls(tiny_trainer: Any) -> None:
    """lr=0, patience 2: each train() stops at step 3. Without a reset the second would stop at step 1
    (its first evaluation would not beat the first run's best and the wait would already be 2)."""
    cb = EarlyStopping("eval_loss", patience=2)
    trainer = tiny_trainer([cb], learning_rate=0.0)
    trainer.train()
    first = cb.stop_reason
    trainer.train()
    assert first is not None and cb.stop_reason is not None
    assert trainer.state.global_step == 3 == first.step == cb.stop_reason.step


def test_several_eval_datasets(tiny_trainer: Any) -> None:
    """eval_dataset as a dict: one decision per step over both datasets' metrics (lr=0: stop at 1 + 2)."""
    data = tiny_trainer.dataset
    cb = EarlyStopping({"eval_a_loss": "min", "eval_b_loss": "min"}, patience=2)
    trainer = tiny_trainer([cb], learning_rate=0.0, eval_dataset={"a": data(16, 1), "b": data(16, 2)})
    trainer.train()
    assert trainer.state.global_step == 3
    assert [s for s, _ in _log(trainer, "early_stopping/wait/eval_a_loss")] == [1, 2, 3]


def test_eval_strategy_no_is_an_error_at_train_begin(tiny_trainer: Any) -> None:
    trainer = tiny_trainer([EarlyStopping("eval_loss")], eval_strategy="no")
    with pytest.raises(ConfigurationError, match="eval_strategy"):
        trainer.train()
    assert trainer.state.global_step == 0
