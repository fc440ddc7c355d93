"""A damaged ``stateful_callbacks`` entry on resume, for every first-party callback (issue 14).

Each callback runs in the simulator with real checkpoint folders; the checkpoint's
``trainer_state.json`` is then damaged (not a table, progress not a table, a missing key, a wrong
type, a half-written nested entry) and a fresh callback resumes from it. Callbacks whose decisions
depend on their progress (EarlyStopping, ReduceLROnPlateau) refuse with a ``SavedStateError``
naming the callback and the field; those whose progress is bookkeeping only (GradNormLogger,
CheckpointPruner) warn, name the field and start fresh. One real ``Trainer`` resume checks the
message names the checkpoint folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Edit = Callable[[dict[str, Any]], None]

CONFIG: dict[str, tuple[str, dict[str, Any]]] = {
    "earlystop": ("EarlyStopping", {"monitor": "eval_loss", "patience": 5}),
    "lr": ("ReduceLROnPlateau", {"monitor": "eval_loss", "patience": 5}),
    "gradviz": ("GradNormLogger", {}),
    "checkpoint": ("CheckpointPruner", {"keep_last": 1, "keep_best": 0}),
}


def progress(edit: Callable[[dict[str, Any]], None]) -> Edit:
    def apply(entry: dict[str, Any]) -> None:
        edit(entry["attributes"]["progress"])

    return apply


def set_entry(value: Any) -> Edit:
    def apply(entry: dict[str, Any]) -> None:
        entry.clear()
        entry["__replace__"] = value

    return apply


# (plugin, damage) -> (edit of the callback's entry, the field named in the message, what is said about it)
DAMAGE: dict[tuple[str, str], tuple[Edit, str, str]] = {}
for _plugin in CONFIG:
    DAMAGE[(_plugin, "not a table")] = (set_entry("garbage"), "", "expected a table with 'args' and 'attributes'")
    DAMAGE[(_plugin, "progress not a table")] = (
        lambda e: e["attributes"].__setitem__("progress", [1, 2]),
        ".attributes.progress",
        "expected a table, got [1, 2] (list)",
    )
DAMAGE |= {
    ("earlystop", "missing key"): (
        progress(lambda p: p["progress"]["eval_loss"].pop("wait")),
        ".attributes.progress.progress.eval_loss.wait",
        "missing",
    ),
    ("earlystop", "wrong type"): (
        progress(lambda p: p.__setitem__("evaluations", "2")),
        ".attributes.progress.evaluations",
        "expected an integer, got '2' (str)",
    ),
    ("earlystop", "half-written nested entry"): (
        progress(lambda p: p.__setitem__("stop_reason", {"kind": "patience"})),
        ".attributes.progress.stop_reason.metrics",
        "missing",
    ),
    ("lr", "missing key"): (
        progress(lambda p: p.pop("num_bad_epochs")),
        ".attributes.progress.num_bad_epochs",
        "missing",
    ),
    ("lr", "wrong type"): (
        progress(lambda p: p.__setitem__("reductions", [0])),
        ".attributes.progress.reductions",
        "expected an integer, got [0] (list)",
    ),
    ("lr", "half-written nested entry"): (
        progress(lambda p: p.__setitem__("scales", [0.5, None])),
        ".attributes.progress.scales[1]",
        "expected a number, got None (NoneType)",
    ),
    ("gradviz", "wrong type"): (
        progress(lambda p: p.__setitem__("last_measured_step", "8")),
        ".attributes.progress.last_measured_step",
        "expected an integer, got '8' (str)",
    ),
    ("checkpoint", "wrong type"): (
        progress(lambda p: p.__setitem__("deleted_total", -3)),
        ".attributes.progress.deleted_total",
        "expected an integer >= 0, got -3",
    ),
}
FRESH_START_IS_SAFE = {"gradviz", "checkpoint"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One simulated run per plugin, 8 steps, saved and evaluated every 4: its checkpoint-8."""
    from transformers import TrainingArguments

    from trainer_callbacks.core import create
    from trainer_callbacks.testing import simulate

    folders = {}
    for plugin, (_, options) in CONFIG.items():
        out = tmp_path_factory.mktemp(plugin)
        args = training_args(out, max_steps=8)
        assert isinstance(args, TrainingArguments)
        simulate(args, [create(plugin, **options)], save_checkpoints=True, steps_per_epoch=100)
        folders[plugin] = out / "checkpoint-8"
    return folders


def training_args(out: Path, **overrides: Any) -> Any:
    from transformers import TrainingArguments

    options: dict[str, Any] = dict(
        output_dir=str(out),
        eval_strategy="steps",
        eval_steps=4,
        save_steps=4,
        logging_steps=4,
        report_to="none",
        use_cpu=True,
        metric_for_best_model="eval_loss",
    )
    options.update(overrides)
    return TrainingArguments(**options)


def damaged_copy(checkpoint: Path, target: Path, name: str, edit: Edit) -> Path:
    import shutil

    folder = target / checkpoint.name
    shutil.copytree(checkpoint, folder)
    path = folder / "trainer_state.json"
    data = json.loads(path.read_text())
    entry = data["stateful_callbacks"][name]
    edit(entry)
    if "__replace__" in entry:
        data["stateful_callbacks"][name] = entry["__replace__"]
    path.write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize(("plugin", "damage"), list(DAMAGE), ids=[f"{p}-{d}" for p, d in DAMAGE])
def test_damaged_state_is_refused_or_started_fresh_with_a_message(
    plugin: str,
    damage: str,
    saved: dict[str, Path],
    tmp_path: Path,
    require_plugins: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    require_plugins(plugin)
    from trainer_callbacks.core import SavedStateError, create
    from trainer_callbacks.testing import Simulation

    name, options = CONFIG[plugin]
    edit, field, problem = DAMAGE[(plugin, damage)]
    folder = damaged_copy(saved[plugin], tmp_path, name, edit)
    cb = create(plugin, **options)
    simulation = Simulation(training_args(tmp_path, max_steps=12), [cb], save_checkpoints=True, steps_per_epoch=100)
    where = f"stateful_callbacks.{name}{field}: {problem}"
    if plugin in FRESH_START_IS_SAFE:
        with caplog.at_level(logging.WARNING, logger="trainer_callbacks"):
            simulation.train(resume_from_checkpoint=str(folder))
        assert where in caplog.text and f"starting {name} fresh" in caplog.text
        assert simulation.state.global_step == 12  # the run went on
    else:
        with pytest.raises(SavedStateError) as info:
            simulation.train(resume_from_checkpoint=str(folder))
        message = str(info.value)
        assert message.startswith(f"{name}: cannot resume from the saved state in ") and where in message
        assert f"delete the {name!r} entry of stateful_callbacks" in message
        assert simulation.state.global_step == 8  # refused at train begin, before any step


@pytest.mark.parametrize("plugin", list(CONFIG))
def test_an_intact_checkpoint_resumes(
    plugin: str, saved: dict[str, Path], tmp_path: Path, require_plugins: Any
) -> None:
    require_plugins(plugin)
    from trainer_callbacks.core import create
    from trainer_callbacks.testing import simulate

    _, options = CONFIG[plugin]
    simulation = simulate(
        training_args(tmp_path, max_steps=12),
        [create(plugin, **options)],
        resume_from_checkpoint=str(damaged_copy(saved[plugin], tmp_path, CONFIG[plugin][0], lambda e: None)),
        save_checkpoints=True,
        steps_per_epoch=100,
    )
    assert simulation.state.global_step == 12


def test_real_trainer_resume_names_the_checkpoint_folder(tmp_path: Path, require_plugins: Any) -> None:
    """EarlyStopping with a half-written stop_reason in a real checkpoint: refused at train begin, folder named."""
    require_plugins("earlystop")
    from trainer_callbacks.core import SavedStateError
    from trainer_callbacks.earlystop import EarlyStopping
    from trainer_callbacks.testing import build_tiny_trainer

    options: dict[str, Any] = dict(
        output_dir=tmp_path / "out",
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        metric_for_best_model="eval_loss",
    )
    build_tiny_trainer(callbacks=[EarlyStopping(monitor="eval_loss", patience=9)], max_steps=4, **options).train()
    checkpoint = tmp_path / "out" / "checkpoint-4"
    path = checkpoint / "trainer_state.json"
    data = json.loads(path.read_text())
    data["stateful_callbacks"]["EarlyStopping"]["attributes"]["progress"]["stop_reason"] = {"kind": "patience"}
    path.write_text(json.dumps(data))
    trainer = build_tiny_trainer(callbacks=[EarlyStopping(monitor="eval_loss", patience=9)], max_steps=6, **options)
    with pytest.raises(SavedStateError) as info:
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert str(info.value).startswith(
        f"EarlyStopping: cannot resume from the saved state in {path}: "
        "stateful_callbacks.EarlyStopping.attributes.progress.stop_reason.metrics: missing"
    )
    assert trainer.state.global_step == 4


def test_restore_flag_keeps_the_users_stopper(tmp_path: Path, require_plugins: Any) -> None:
    """restore_callback_states_from_checkpoint=True: the user's EarlyStopping is the one that runs and sees the run."""
    require_plugins("earlystop")
    from trainer_callbacks.earlystop import EarlyStopping
    from trainer_callbacks.testing import build_tiny_trainer

    options: dict[str, Any] = dict(
        output_dir=tmp_path / "out",
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        metric_for_best_model="eval_loss",
    )
    first = EarlyStopping(monitor="eval_loss", patience=9)
    build_tiny_trainer(callbacks=[first], max_steps=4, **options).train()
    assert first.state_dict()["evaluations"] == 2
    stopper = EarlyStopping(monitor="eval_loss", patience=9)
    trainer = build_tiny_trainer(
        callbacks=[stopper], max_steps=6, restore_callback_states_from_checkpoint=True, **options
    )
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    assert [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, EarlyStopping)] == [stopper]
    assert stopper.state_dict()["evaluations"] == 3  # 2 restored from the checkpoint + 1 after it
