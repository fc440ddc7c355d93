"""PluginCallback with a real Trainer: validation at train begin, resume, reuse, copying."""

from __future__ import annotations

import copy
import json
import pickle
import types
from pathlib import Path
from typing import Any

import pytest

from trainer_callbacks.core import ConfigurationError, PluginCallback, hookimpl, plugins


class StepCounter(PluginCallback):
    """Counts optimizer steps and reports the count.

    Args:
        tag (str): the reported name.
    """

    def __init__(self, tag: str = "counter/steps") -> None:
        super().__init__(tag=tag)
        self.tag = tag

    def reset(self) -> None:
        self.steps = 0

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: Any) -> None:
        self.steps = int(state["steps"])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps += 1
        self.report(args, state, {self.tag: self.steps})


class NeedsEval(StepCounter):
    def check_training_args(self, args: Any) -> list[str]:
        if args.eval_strategy == "no":
            return ["eval_strategy='no' means no evaluation ever runs; set eval_strategy='steps' and eval_steps"]
        return []


def test_state_is_what_the_trainer_saves(tiny_trainer: Any) -> None:
    cb = StepCounter()
    trainer = tiny_trainer([cb], max_steps=3)
    trainer.train()
    state = cb.state()
    assert state == {"args": {"tag": "counter/steps"}, "attributes": {"progress": {"steps": 3}}}
    # The Trainer's own restore path: type(cb)(**args), then setattr for each attribute.
    rebuilt = type(cb)(**state["args"])
    for name, value in json.loads(json.dumps(state["attributes"])).items():
        setattr(rebuilt, name, value)
    assert rebuilt.steps == 3


def test_resume_restores_progress_without_restore_callback_states(tiny_trainer: Any, tmp_path: Path) -> None:
    first = StepCounter()
    tiny_trainer([first], max_steps=6, save_strategy="steps", save_steps=2).train()
    assert first.steps == 6
    resumed = StepCounter()
    trainer = tiny_trainer([resumed], max_steps=6, save_strategy="steps", save_steps=2)
    assert trainer.args.restore_callback_states_from_checkpoint is False
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    assert resumed.steps == 6  # 4 restored from the checkpoint, 2 trained after it
    counts = [e["counter/steps"] for e in trainer.state.log_history if "counter/steps" in e]
    assert counts == [1, 2, 3, 4, 5, 6]  # history restored with the state, then continued


def test_one_instance_serves_several_train_calls(tiny_trainer: Any) -> None:
    cb = StepCounter()
    trainer = tiny_trainer([cb], max_steps=4)
    trainer.train()
    trainer.train()
    assert cb.steps == 4


def test_validation_runs_at_train_begin_before_any_step(tiny_trainer: Any) -> None:
    cb = NeedsEval()
    trainer = tiny_trainer([cb], eval_strategy="no")
    with pytest.raises(ConfigurationError, match="eval_strategy='no'") as info:
        trainer.train()
    assert "NeedsEval:" in str(info.value)
    assert trainer.state.global_step == 0 and cb.steps == 0


def test_plugin_hook_sees_every_callback(
    tiny_trainer: Any, fresh_plugin_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reload()
    seen: list[list[str]] = []
    module = types.ModuleType("validator")

    @hookimpl
    def validate_training_args(args, callbacks):  # type: ignore[no-untyped-def]
        seen.append([type(cb).__name__ for cb in callbacks])
        return ["logging_steps=2 is too small for this validator; raise it"] if args.logging_steps < 5 else []

    module.validate_training_args = validate_training_args  # type: ignore[attr-defined]
    plugins.register_plugin(module, name="validator")
    trainer = tiny_trainer([StepCounter(), StepCounter(tag="counter/twice")])
    with pytest.raises(ConfigurationError, match="logging_steps=2 is too small"):
        trainer.train()
    assert len(seen) == 1  # once per train(), not once per callback
    assert seen[0].count("StepCounter") == 2 and "DefaultFlowCallback" in seen[0]


def test_copy_and_pickle_do_not_carry_the_trainer(tiny_trainer: Any) -> None:
    cb = StepCounter()
    trainer = tiny_trainer([cb], max_steps=2)
    trainer.train()
    assert cb.handler is not None  # held weakly while the Trainer lives
    for clone in (copy.deepcopy(cb), pickle.loads(pickle.dumps(cb))):
        assert clone.steps == 2 and clone.handler is None


def test_options_must_be_json_serialisable() -> None:
    with pytest.raises(ConfigurationError, match="JSON-serialisable"):
        StepCounter(tag=object())  # type: ignore[arg-type]


def test_two_instances_of_one_class_resume_from_their_newest_states(tiny_trainer: Any, tmp_path: Path) -> None:
    # The Trainer keeps such twins in one list that grows at every save; its own restore
    # pairs instances with the oldest entries (their states at train begin).
    tiny_trainer([StepCounter(), StepCounter()], max_steps=6, save_strategy="steps", save_steps=2).train()
    twins = [StepCounter(), StepCounter()]
    trainer = tiny_trainer(twins, max_steps=6, save_strategy="steps", save_steps=2)
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    assert [cb.steps for cb in twins] == [6, 6]  # 4 restored + 2; stale entries would give 2


def test_resuming_a_checkpoint_made_without_the_callback_starts_fresh_and_saves(
    tiny_trainer: Any, tmp_path: Path
) -> None:
    tiny_trainer([], max_steps=4, save_strategy="steps", save_steps=2).train()
    late = StepCounter()
    trainer = tiny_trainer([late], max_steps=6, save_strategy="steps", save_steps=2)
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))  # the Trainer alone: KeyError at save
    assert late.steps == 4
    saved = json.loads((tmp_path / "out" / "checkpoint-6" / "trainer_state.json").read_text())
    assert saved["stateful_callbacks"]["StepCounter"]["attributes"]["progress"] == {"steps": 4}
