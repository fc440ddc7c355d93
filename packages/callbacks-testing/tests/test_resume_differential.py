"""Resume from a checkpoint and repeated ``train()`` calls: the simulator against the real Trainer.

For every checkpoint of an uninterrupted run, both the real ``Trainer`` and the
simulator resume from (a copy of) that checkpoint with fresh callback instances, with
and without ``restore_callback_states_from_checkpoint``; their event streams, final
``TrainerState``, the callbacks the handler holds afterwards (the Trainer REPLACES
restored callbacks by new instances and appends them at the end) and those callbacks'
restored counters must agree.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from transformers import EarlyStoppingCallback, TrainingArguments

from trainer_callbacks.testing import CountingCallback, RecordingCallback, Simulation, simulate, trace
from trainer_callbacks.testing.real_trainer import build_trainer, run_trainer


def metrics_like(events: list[Any]) -> Any:
    """The eval losses a real run produced, served to the simulator by (global_step, n-th evaluation at it)."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for e in events:
        if e.name == "on_evaluate":
            by_step[e.global_step].append(e.payload["eval_loss"])
    served: dict[int, int] = defaultdict(int)

    def metrics(eval_index: int, global_step: int) -> dict[str, float]:
        i = served[global_step]
        served[global_step] += 1
        return {"eval_loss": by_step[global_step][i]}

    return metrics


CONFIGS = {
    "steps": dict(max_steps=9, eval_strategy="steps", eval_steps=2, save_steps=2, logging_steps=3),
    "epochs-accumulation": dict(
        num_train_epochs=3,
        gradient_accumulation_steps=2,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        save_total_limit=2,
    ),
}


def _args(output_dir: str, restore: bool, **kw: Any) -> TrainingArguments:
    return TrainingArguments(
        output_dir=output_dir,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        per_device_train_batch_size=2,
        restore_callback_states_from_checkpoint=restore,
        metric_for_best_model="loss",
        **kw,
    )


def _callbacks(twins: bool = True) -> list[Any]:
    # Two instances of one ExportableState class exercise a transformers quirk the simulator must
    # share: ``_save_checkpoint`` APPENDS their states to the list in ``stateful_callbacks`` at every
    # save, and ``_load_callback_state`` zips the instances with the FIRST entries of that list (the
    # states at train begin), so twins are restored stale.
    counters = [CountingCallback("a"), CountingCallback("b")] if twins else [CountingCallback("a")]
    return [*counters, EarlyStoppingCallback(early_stopping_patience=3), RecordingCallback()]


def _summary(callbacks: list[Any]) -> list[Any]:
    out: list[tuple[object, ...] | str] = []
    for cb in callbacks:
        if isinstance(cb, CountingCallback):
            out.append(("Counter", cb.tag, cb.steps, cb.evals))
        elif isinstance(cb, EarlyStoppingCallback):
            out.append(("EarlyStopping", cb.early_stopping_patience_counter))
        else:
            out.append(type(cb).__name__)
    return out


def _recorder(callbacks: list[Any]) -> RecordingCallback:
    return next(cb for cb in callbacks if isinstance(cb, RecordingCallback))


@pytest.mark.slow
@pytest.mark.parametrize("restore", [False, True], ids=["plain", "restore_callback_states"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_resume_from_every_checkpoint_matches(
    fast_real_trainer: None, tmp_path: Path, config: str, restore: bool
) -> None:
    kw = CONFIGS[config]
    real_dir, sim_dir = str(tmp_path / "real"), str(tmp_path / "sim")
    first = _callbacks()
    run_trainer(_args(real_dir, restore, **kw), first, train_dataset_len=7)
    sim_first = _callbacks()
    simulate(
        _args(sim_dir, restore, **kw),
        sim_first,
        metrics_like(_recorder(first).events),
        train_dataset_len=7,
        save_checkpoints=True,
    )
    assert trace(_recorder(sim_first).events) == trace(_recorder(first).events)
    names = sorted(p for p in os.listdir(real_dir) if p.startswith("checkpoint-"))
    assert names == sorted(p for p in os.listdir(sim_dir) if p.startswith("checkpoint-"))
    assert names, "the configuration must leave checkpoints to resume from"
    for name in names:
        real_copy, sim_copy = str(tmp_path / f"real-{name}"), str(tmp_path / f"sim-{name}")
        shutil.copytree(real_dir, real_copy)
        shutil.copytree(sim_dir, sim_copy)
        real_cbs = _callbacks()
        trainer = build_trainer(_args(real_copy, restore, **kw), real_cbs, train_dataset_len=7)
        trainer.train(resume_from_checkpoint=os.path.join(real_copy, name))
        sim_cbs = _callbacks()
        sim = simulate(
            _args(sim_copy, restore, **kw),
            sim_cbs,
            metrics_like(_recorder(real_cbs).events),
            train_dataset_len=7,
            save_checkpoints=True,
            resume_from_checkpoint=os.path.join(sim_copy, name),
        )
        assert trace(_recorder(sim_cbs).events) == trace(_recorder(real_cbs).events), name
        assert sim.state.global_step == trainer.state.global_step
        assert sim.state.best_global_step == trainer.state.best_global_step
        assert [(sorted(e), e["step"]) for e in sim.state.log_history] == [
            (sorted(e), e["step"]) for e in trainer.state.log_history
        ]
        # which instances the handler holds (restored ones are new objects, appended last) and their counters
        real_held = [
            cb for cb in trainer.callback_handler.callbacks if isinstance(cb, (CountingCallback, EarlyStoppingCallback))
        ]
        sim_held = [cb for cb in sim.callbacks if isinstance(cb, (CountingCallback, EarlyStoppingCallback))]
        assert _summary(sim_held) == _summary(real_held), name
        assert sim.control == trainer.control
        assert sorted(os.listdir(sim_copy)) == sorted(p for p in os.listdir(real_copy))
        if restore:
            assert not any(cb in real_held for cb in real_cbs if isinstance(cb, CountingCallback))  # replaced
            assert not any(cb in sim_held for cb in sim_cbs if isinstance(cb, CountingCallback))


def test_simulator_resumes_its_own_in_memory_checkpoints(tmp_path: Path) -> None:
    """Without writing files, a checkpoint object of one simulation resumes another identically."""
    kw = CONFIGS["steps"]
    full = simulate(_args(str(tmp_path / "x"), True, **kw), _callbacks(twins=False), train_dataset_len=7)
    assert not (tmp_path / "x").exists()
    # Not the last one: resumed at max_steps, the Trainer (and so the simulator, see the test above)
    # still runs one more optimizer step before DefaultFlowCallback stops it.
    for saved in full.checkpoints[:-1]:
        resumed = simulate(
            _args(str(tmp_path / "x"), True, **kw),
            _callbacks(twins=False),
            train_dataset_len=7,
            resume_from_checkpoint=saved,
        )
        tail = [e for e in trace(full.events) if e[1] > saved.global_step]
        assert [e for e in trace(resumed.events) if e[1] > saved.global_step] == tail
        # restored callbacks are re-created and appended at the end, so compare them as a set
        assert sorted(map(str, _summary(resumed.callbacks[1:]))) == sorted(map(str, _summary(full.callbacks[1:])))
        assert resumed.lr_scheduler.get_last_lr() == full.lr_scheduler.get_last_lr()


@pytest.mark.slow
def test_several_train_calls_match(fast_real_trainer: None, tmp_path: Path) -> None:
    """``trainer.train()`` twice on one Trainer, then a new Trainer reusing the instances (hyperparameter search)."""
    kw = dict(max_steps=5, eval_strategy="steps", eval_steps=2, save_strategy="no", logging_steps=2)
    real_cbs = [CountingCallback(), EarlyStoppingCallback(early_stopping_patience=1), RecordingCallback()]
    trainer = build_trainer(_args(str(tmp_path / "r"), False, **kw), real_cbs, train_dataset_len=5)
    trainer.train()
    trainer.train()
    build_trainer(_args(str(tmp_path / "r"), False, **kw), real_cbs, train_dataset_len=5).train()

    sim_cbs = [CountingCallback(), EarlyStoppingCallback(early_stopping_patience=1), RecordingCallback()]
    metrics = metrics_like(_recorder(real_cbs).events)
    sim = Simulation(_args(str(tmp_path / "s"), False, **kw), sim_cbs, metrics, train_dataset_len=5)
    sim.train()
    sim.train()
    simulate(_args(str(tmp_path / "s"), False, **kw), sim_cbs, metrics, train_dataset_len=5)
    assert trace(_recorder(sim_cbs).events) == trace(_recorder(real_cbs).events)
    assert _summary(sim_cbs) == _summary(real_cbs)
