"""Damaged saved state on resume, and restore_callback_states_from_checkpoint keeping the user's object.

``StateReader`` checks each field a ``load_state_dict`` reads; ``PluginCallback._restore`` turns a
damaged entry into a ``SavedStateError`` naming the callback, the checkpoint file and the field
(or, for ``fresh_start_is_safe`` callbacks, a warning and a fresh start).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from trainer_callbacks.core import PluginCallback, SavedStateError, StateFieldError, StateReader


class Tally(PluginCallback):
    """Counts steps; its progress is read through StateReader."""

    def __init__(self, tag: str = "tally") -> None:
        super().__init__(tag=tag)
        self.tag = tag

    def reset(self) -> None:
        self.steps = 0
        self.last: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "last": self.last}

    def load_state_dict(self, state: Any) -> None:
        saved = StateReader(state)
        steps = saved.integer("steps", minimum=0)
        last = saved.table("last", none=True)
        self.last = None if last is None else {"step": last.integer("step"), "value": last.number("value")}
        self.steps = steps

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps += 1


class Bookkeeping(Tally):
    fresh_start_is_safe = True


class Unchecked(Tally):
    """A third-party style load_state_dict that indexes and converts without checking."""

    def load_state_dict(self, state: Any) -> None:
        self.steps = int(state["steps"])


def resume(cb: PluginCallback, entry: Any, step: int = 4) -> TrainerState:
    state = TrainerState(global_step=step)
    state.stateful_callbacks = {type(cb).__name__: entry}  # type: ignore[assignment]  # as load_from_json leaves it
    cb.on_train_begin(TrainingArguments("unused", report_to="none"), state, TrainerControl())
    return state


def good(steps: Any = 4, **progress: Any) -> dict[str, Any]:
    return {"args": {"tag": "tally"}, "attributes": {"progress": {"steps": steps, "last": None, **progress}}}


# ---- StateReader ----------------------------------------------------------------------------------


def test_reader_returns_typed_values_and_defaults() -> None:
    saved = StateReader({"n": 3, "x": 2, "inf": "-inf", "flag": True, "name": "min", "xs": [1, 2.5], "t": {"a": 1}})
    assert saved.integer("n") == 3 and isinstance(saved.number("x"), float)
    assert saved.number("inf") == -math.inf
    assert saved.boolean("flag") is True and saved.text("name", choices=("min", "max")) == "min"
    assert saved.numbers("xs") == [1.0, 2.5] and saved.number_table("t") == {"a": 1.0}
    assert saved.integer("absent", 7) == 7 and saved.table("absent", None) is None
    assert saved.integer("n", minimum=3) == 3


@pytest.mark.parametrize(
    ("data", "read", "field", "problem"),
    [
        ({"n": "3"}, lambda r: r.integer("n"), "n", "expected an integer, got '3' (str)"),
        ({"n": True}, lambda r: r.integer("n"), "n", "expected an integer, got True (bool)"),
        ({"n": 2.5}, lambda r: r.integer("n"), "n", "expected an integer, got 2.5 (float)"),
        ({"n": -1}, lambda r: r.integer("n", minimum=0), "n", "expected an integer >= 0, got -1"),
        ({}, lambda r: r.integer("n"), "n", "missing"),
        ({"x": None}, lambda r: r.number("x"), "x", "expected a number, got None (NoneType)"),
        ({"x": "abc"}, lambda r: r.number("x"), "x", "expected a number, got 'abc' (str)"),
        ({"b": "false"}, lambda r: r.boolean("b"), "b", "expected true or false, got 'false' (str)"),
        ({"m": "up"}, lambda r: r.text("m", choices=("min", "max")), "m", "expected one of 'min', 'max', got 'up'"),
        ({"t": [1]}, lambda r: r.table("t").integer("a"), "t", "expected a table (a JSON object), got [1] (list)"),
        ({"t": {"a": "z"}}, lambda r: r.table("t").integer("a"), "t.a", "expected an integer, got 'z' (str)"),
        ({"xs": [1, "2"]}, lambda r: r.numbers("xs"), "xs[1]", "expected a number, got '2' (str)"),
        ({"xs": 1}, lambda r: r.numbers("xs"), "xs", "expected a list of numbers, got 1 (int)"),
        ({"s": ["a", 1]}, lambda r: r.strings("s"), "s", "expected a list of strings"),
        ({"w": {"a": 1.5}}, lambda r: r.number_table("w", integers=True), "w.a", "expected an integer, got 1.5"),
    ],
)
def test_reader_names_the_field_and_what_it_found(data: Any, read: Any, field: str, problem: str) -> None:
    with pytest.raises(StateFieldError) as info:
        read(StateReader(data))
    assert info.value.field == field and problem in info.value.problem
    assert isinstance(info.value, SavedStateError) and isinstance(info.value, ValueError)


def test_reader_refuses_a_non_table() -> None:
    with pytest.raises(StateFieldError, match=r"expected a table \(a JSON object\), got 'oops' \(str\)"):
        StateReader("oops")


# ---- _restore: every damage is one error naming callback, file and field ---------------------------------

DAMAGE = {
    "not a table": ("oops", "stateful_callbacks.Tally: expected a table with 'args' and 'attributes', got 'oops'"),
    "args not a table": (
        {"args": [1], "attributes": {}},
        "stateful_callbacks.Tally.args: expected a table, got [1] (list)",
    ),
    "progress not a table": (
        {"args": {"tag": "tally"}, "attributes": {"progress": 5}},
        "stateful_callbacks.Tally.attributes.progress: expected a table, got 5 (int)",
    ),
    "missing key": (
        {"args": {"tag": "tally"}, "attributes": {"progress": {"last": None}}},
        "stateful_callbacks.Tally.attributes.progress.steps: missing",
    ),
    "wrong type": (good(steps="four"), "stateful_callbacks.Tally.attributes.progress.steps: expected an integer"),
    "half-written nested entry": (
        good(last={"step": 3}),
        "stateful_callbacks.Tally.attributes.progress.last.value: missing",
    ),
    "list entry": (["oops"], "stateful_callbacks.Tally[0]: expected a table"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_an_error_naming_callback_checkpoint_and_field(damage: str) -> None:
    entry, expected = DAMAGE[damage]
    cb = Tally()
    with pytest.raises(SavedStateError) as info:
        resume(cb, entry)
    message = str(info.value)
    assert message.startswith("Tally: cannot resume from the saved state in the checkpoint of step 4")
    assert expected in message
    assert "Resume from another checkpoint, or delete the 'Tally' entry" in message


def test_a_good_entry_restores() -> None:
    cb = Tally()
    resume(cb, good(steps=4, last={"step": 4, "value": 0.5}))
    assert cb.steps == 4 and cb.last == {"step": 4, "value": 0.5}


def test_setting_progress_outside_a_trainer_loads_and_raises() -> None:
    cb = Tally()
    cb.progress = {"steps": 3, "last": None}
    assert cb.steps == 3
    with pytest.raises(StateFieldError, match="steps: expected an integer"):
        cb.progress = {"steps": "x", "last": None}


def test_an_unchecked_load_state_dict_is_wrapped_too() -> None:
    cb = Unchecked()
    with pytest.raises(SavedStateError, match=r"Unchecked: .*attributes\.progress: KeyError: 'steps'"):
        resume(cb, {"args": {"tag": "tally"}, "attributes": {"progress": {"stepz": 1}}})


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_bookkeeping_callbacks_warn_and_start_fresh(damage: str, caplog: pytest.LogCaptureFixture) -> None:
    entry, expected = DAMAGE[damage]
    cb = Bookkeeping()
    with caplog.at_level(logging.WARNING, logger="trainer_callbacks.core"):
        resume(cb, entry)
    assert cb.steps == 0 and cb.last is None
    assert expected.replace("Tally", "Bookkeeping") in caplog.text
    assert "starting Bookkeeping fresh" in caplog.text


# ---- through a real Trainer: an edited trainer_state.json, and restore_callback_states_from_checkpoint ------


def saved_run(tiny_trainer: Any, tmp_path: Path, cb: PluginCallback) -> Path:
    tiny_trainer([cb], max_steps=4, save_strategy="steps", save_steps=2).train()
    return tmp_path / "out" / "checkpoint-4"


def edit_state(checkpoint: Path, edit: Any) -> None:
    path = checkpoint / "trainer_state.json"
    data = json.loads(path.read_text())
    edit(data["stateful_callbacks"])
    path.write_text(json.dumps(data))


def test_real_resume_from_an_edited_trainer_state_names_the_folder(tiny_trainer: Any, tmp_path: Path) -> None:
    checkpoint = saved_run(tiny_trainer, tmp_path, Tally())

    def half_write(saved: dict[str, Any]) -> None:
        saved["Tally"]["attributes"]["progress"]["last"] = {"step": "4"}

    edit_state(checkpoint, half_write)
    trainer = tiny_trainer([Tally()], max_steps=6, save_strategy="steps", save_steps=2)
    with pytest.raises(SavedStateError) as info:
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert str(info.value).startswith(
        f"Tally: cannot resume from the saved state in {checkpoint}/trainer_state.json: "
        "stateful_callbacks.Tally.attributes.progress.last.step: expected an integer, got '4' (str)"
    )
    assert trainer.state.global_step == 4  # raised at train begin, before any step


def test_restore_flag_keeps_the_users_object(
    tiny_trainer: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = saved_run(tiny_trainer, tmp_path, Tally())
    mine = Tally()
    trainer = tiny_trainer(
        [mine], max_steps=6, save_strategy="steps", save_steps=2, restore_callback_states_from_checkpoint=True
    )
    with caplog.at_level(logging.WARNING, logger="trainer_callbacks.core"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    # the Trainer rebuilt a Tally from the saved options; the one it ran with is the user's object,
    # which carried on from the checkpoint's progress
    assert [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, Tally)] == [mine]
    assert mine.steps == 6
    assert "restore_callback_states_from_checkpoint" not in caplog.text  # same options: nothing to warn about


def test_restore_flag_with_changed_options_warns_naming_them(
    tiny_trainer: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = saved_run(tiny_trainer, tmp_path, Tally())
    mine = Tally(tag="renamed")
    trainer = tiny_trainer(
        [mine], max_steps=6, save_strategy="steps", save_steps=2, restore_callback_states_from_checkpoint=True
    )
    with caplog.at_level(logging.WARNING, logger="trainer_callbacks.core"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, Tally)] == [mine]
    assert mine.tag == "renamed"
    assert "keeps your object, with your options, which differ from the saved ones: tag='renamed' (saved: 'tally')" in (
        caplog.text
    )
    assert mine.steps == 2  # other options: its progress starts fresh (and says so)
    assert "made with other options" in caplog.text
