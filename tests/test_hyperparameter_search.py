"""Every plugin under ``Trainer.hyperparameter_search`` (optuna) and across repeated ``train()`` calls.

The same callback instances serve every trial. Each trial must start from fresh callback state,
stop by its own evaluations only, prune only inside its own ``run-<n>`` folder, and log nothing
carried over from an earlier trial. Two ``train()`` calls of one Trainer (with ``model_init``)
must log exactly the same history, plugin scalars included.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CONFIG: dict[str, dict[str, Any]] = {
    "earlystop": {"monitor": "eval_loss", "patience": 1},
    "lr": {"monitor": "eval_loss", "factor": 0.5, "patience": 0},
    "gradviz": {},
    "checkpoint": {"keep_last": 1, "keep_best": 1},
}
MAX_STEPS, EVERY = 32, 4
VOLATILE = ("runtime", "per_second", "total_flos", "bytes_freed")
"""Keys that differ between identical runs: timings, and the size of pruned folders (their
trainer_state.json holds the timings)."""


@pytest.fixture
def all_plugins(require_plugins: Any) -> None:
    require_plugins(*CONFIG)


def build_trainer(output_dir: Path, callbacks: list[Any], **overrides: Any) -> Any:
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from trainer_callbacks.app.demo_data import EncodedDataset, TaskConfig, accuracy, build_tokenizer, generate

    task = TaskConfig(train_size=128, eval_size=48, seed=3)
    tokenizer = build_tokenizer(task, model_max_length=48)
    train_rows, eval_rows = generate(task)

    def model_init(trial: Any = None) -> Any:
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=24,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=48,
            max_position_embeddings=48,
        )
        # set through the property: transformers 5 takes num_labels only as an undeclared **kwargs entry
        config.num_labels = 2
        return BertForSequenceClassification(config)

    options: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=MAX_STEPS,
        per_device_train_batch_size=16,
        learning_rate=5e-3,
        lr_scheduler_type="constant",
        eval_strategy="steps",
        eval_steps=EVERY,
        save_strategy="steps",
        save_steps=EVERY,
        logging_steps=EVERY,
        metric_for_best_model="eval_loss",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    options.update(overrides)
    return Trainer(
        model_init=model_init,
        args=TrainingArguments(**options),
        train_dataset=EncodedDataset(train_rows, tokenizer, 48),
        eval_dataset=EncodedDataset(eval_rows, tokenizer, 48),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
        callbacks=callbacks,
    )


class Observer:
    """Added after the plugins: snapshots their state at each train begin, and each run's outcome."""

    def __init__(self, plugins: list[Any]):
        from transformers import TrainerCallback

        self.plugins = plugins
        self.begin_states: list[list[dict[str, Any]]] = []
        self.runs: list[dict[str, Any]] = []
        observer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                observer.begin_states.append([cb.state_dict() for cb in observer.plugins])

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                observer.runs.append(
                    {
                        "global_step": state.global_step,
                        "log_history": [dict(e) for e in state.log_history],
                        "trial_params": dict(state.trial_params or {}),
                    }
                )

        self.callback = Callback()


def evals(run: dict[str, Any]) -> list[tuple[int, float]]:
    return [(e["step"], e["eval_loss"]) for e in run["log_history"] if "eval_loss" in e]


def expected_stop(run: dict[str, Any]) -> int:
    """patience=1 on eval_loss: the first evaluation that does not beat the best before it."""
    points = evals(run)
    for i in range(1, len(points)):
        if points[i][1] >= min(v for _, v in points[:i]):
            return points[i][0]
    return MAX_STEPS


def expected_kept(run: dict[str, Any]) -> list[str]:
    losses = dict(evals(run))
    saved = list(range(EVERY, run["global_step"] + 1, EVERY))
    best = min(saved, key=lambda s: (losses[s], s))
    return [f"checkpoint-{s}" for s in sorted({saved[-1], best})]


def checkpoints(folder: Path) -> list[str]:
    return sorted((p.name for p in folder.glob("checkpoint-*")), key=lambda n: int(n.split("-")[1]))


@pytest.mark.usefixtures("all_plugins")
def test_each_trial_starts_fresh_and_stops_and_prunes_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    from trainer_callbacks.core import create_all

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plugins = create_all(CONFIG)
    observer = Observer(plugins)

    current = {"run": -1}
    removed: list[tuple[int, str]] = []
    for module, name in ((shutil, "rmtree"), (os, "rename"), (os, "replace")):
        original = getattr(module, name)

        def recorded(path: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if "checkpoint-" in os.fspath(path):
                removed.append((current["run"], os.path.realpath(os.fspath(path))))
            return _original(path, *args, **kwargs)

        monkeypatch.setattr(module, name, recorded)

    from transformers import TrainerCallback

    class RunCounter(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            current["run"] += 1

    out = tmp_path / "search"
    trainer = build_trainer(out, [RunCounter(), *plugins, observer.callback])
    rates = [1e-2, 3e-3, 1e-3]
    trainer.hyperparameter_search(
        hp_space=lambda trial: {"learning_rate": trial.suggest_categorical("learning_rate", rates)},
        backend="optuna",
        n_trials=3,
        direction="minimize",
        sampler=optuna.samplers.GridSampler({"learning_rate": rates}, seed=0),
    )
    assert len(observer.runs) == 3
    assert sorted(run["trial_params"]["learning_rate"] for run in observer.runs) == sorted(rates)
    # trial 0 begins from freshly built callbacks (after their set-up for the run): every trial must match it
    fresh = observer.begin_states[0]
    for index, (begin, run) in enumerate(zip(observer.begin_states, observer.runs)):
        assert begin == fresh, f"trial {index} began with state left over from an earlier trial"
        # early stopping decided from this trial's evaluations alone
        assert run["global_step"] == expected_stop(run), index
        stops = [e["step"] for e in run["log_history"] if e.get("early_stopping/stopped") == 1]
        assert stops == ([run["global_step"]] if run["global_step"] < MAX_STEPS else [])
        # the first evaluation of a trial is its own best: no best, wait or LR scale carried over
        first = evals(run)[0]
        bests = [e for e in run["log_history"] if "early_stopping/best/eval_loss" in e]
        assert bests[0]["early_stopping/best/eval_loss"] == pytest.approx(first[1])
        scales = [e["lr_plateau/scale"] for e in run["log_history"] if "lr_plateau/scale" in e]
        assert scales[0] == 1.0
        lrs = [e["learning_rate"] for e in run["log_history"] if "learning_rate" in e]
        assert lrs[0] == pytest.approx(run["trial_params"]["learning_rate"])
        # one gradviz entry per logged step, not one per trial so far (no hooks left on old models)
        grad_steps = [e["step"] for e in run["log_history"] if any(k.startswith("grad_norm/") for k in e)]
        assert len(grad_steps) == len(set(grad_steps)) > 0
    # pruning stayed inside each trial's folder, and each folder holds what the policy keeps
    run_dirs = sorted(p for p in out.iterdir() if p.is_dir() and p.name.startswith("run-"))
    assert [p.name for p in run_dirs] == ["run-0", "run-1", "run-2"]
    assert not checkpoints(out)
    for index, run in enumerate(observer.runs):
        folder = (out / f"run-{index}").resolve()
        assert checkpoints(folder) == expected_kept(run), index
        paths = [path for run_index, path in removed if run_index == index]
        assert paths, f"trial {index} pruned nothing"
        assert all(Path(p).is_relative_to(folder) for p in paths), paths


@pytest.mark.usefixtures("all_plugins")
def test_two_train_calls_on_one_trainer_log_the_same_history(tmp_path: Path) -> None:
    from trainer_callbacks.core import create_all

    plugins = create_all(CONFIG)
    observer = Observer(plugins)
    trainer = build_trainer(tmp_path / "out", [*plugins, observer.callback])
    trainer.train()
    trainer.train()
    first, second = observer.runs

    def stable(run: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if not any(s in k for s in VOLATILE)} for e in run["log_history"]]

    assert observer.begin_states[0] == observer.begin_states[1]
    assert first["global_step"] == second["global_step"] == expected_stop(first) < MAX_STEPS
    assert stable(second) == stable(first)
    freed = [
        [e["checkpoint/bytes_freed"] for e in r["log_history"] if "checkpoint/bytes_freed" in e]
        for r in (first, second)
    ]
    assert freed[1] == pytest.approx(freed[0], rel=1e-3)
    assert checkpoints(tmp_path / "out") == expected_kept(second)
