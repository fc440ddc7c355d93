"""The simulator against the real ``transformers.Trainer``: identical event streams.

Each example draws a ``TrainingArguments`` configuration (``strategies.training_setups``)
and a script of control flags that a callback sets or clears at any event, then runs the real
``Trainer`` on ``TinyModel`` and ``simulate`` with the same callbacks. The real run's
evaluation losses are fed to the simulator (metric values are data, not flow), so
``save_strategy="best"`` and ``load_best_model_at_end`` decide on the same numbers.

Each example of :func:`test_runs_in_one_folder_match` goes further: two or three
``train()`` calls in ONE output folder, each a new Trainer with changed arguments, the
same Trainer again with a changed ``max_steps``/epochs/``save_total_limit``, or a new
Trainer resuming from any checkpoint there (or ``True``, or a folder that does not
exist) with changed arguments: rotation then meets an earlier run's checkpoints.
Both sides draw configurations the Trainer refuses too (``save_strategy="best"``
without ``metric_for_best_model``, a training set without a length and no
``max_steps``): both must raise the same exception type. Real runs save under
:func:`checkpoint_saves_a_second_apart`, the simulator's clock for checkpoint folders
(without it, which checkpoint a real run on a tiny model keeps depends on how fast
the machine is).

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

import dataclasses
import json
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from transformers.trainer_callback import TrainerCallback

from trainer_callbacks.testing import CountingCallback, RecordingCallback, Simulation, simulate, strategies, trace
from trainer_callbacks.testing.real_trainer import RegressionSet, build_trainer, run_trainer

FLAGS = ("should_training_stop", "should_epoch_stop", "should_evaluate", "should_save", "should_log")
SCRIPT_EVENTS = (
    "on_train_begin",
    "on_epoch_begin",
    "on_step_begin",
    "on_substep_end",
    "on_pre_optimizer_step",
    "on_optimizer_step",
    "on_step_end",
    "on_prediction_step",
    "on_evaluate",
    "on_log",
    "on_save",
    "on_epoch_end",
)


class ScriptedControl(TrainerCallback):
    """Sets (or clears) control flags at scripted ``(event, global_step, flag[, value])`` points, as callbacks may."""

    def __init__(self, script: list[tuple[Any, ...]]) -> None:
        self.script = script
        for event in SCRIPT_EVENTS:
            setattr(self, event, self._make(event))

    def _make(self, event: str) -> Any:
        def handler(args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            for name, step, flag, *value in self.script:
                if name == event and step == state.global_step:
                    setattr(control, flag, value[0] if value else True)
            return control

        return handler


scripts = st.lists(
    st.tuples(
        st.sampled_from(SCRIPT_EVENTS), st.integers(0, 12), st.sampled_from(FLAGS), st.sampled_from([True, True, False])
    ),
    max_size=3,
)


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


def _run_both(setup: strategies.TrainingSetup, script: list[tuple[Any, ...]], root: str) -> tuple[Any, Any]:
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
    losses = [{"eval_loss": (e.payload or {})["eval_loss"]} for e in real_rec.events if e.name == "on_evaluate"]
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


def _examples(minimum: int = 200) -> int:
    # At least `minimum` examples, more under a deeper profile (HYPOTHESIS_PROFILE=deep).
    default = settings.default
    assert default is not None  # None only before hypothesis has loaded a profile
    return max(minimum, default.max_examples)


@pytest.mark.slow
@settings(
    max_examples=_examples(),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(setup=strategies.training_setups(output_dir="unused"), script=scripts)
def test_simulator_matches_real_trainer(
    fast_real_trainer: None, tmp_path: Path, setup: strategies.TrainingSetup, script: list[tuple[Any, ...]]
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


# ---- several train() calls in one folder, resumes and refused configurations -------------------


class EndlessRegressionSet(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """A training set without a length: :class:`RegressionSet`'s examples, cycled forever."""

    def __init__(self, n: int) -> None:
        self.examples = RegressionSet(n, seed=0)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while len(self.examples):
            yield from (self.examples[i] for i in range(len(self.examples)))


@dataclass
class Run:
    """One ``train()`` call of a sequence."""

    how: str  # "new": a new Trainer; "again": train() again on the last one; "resume": a new Trainer, resuming
    kwargs: dict[str, Any]
    train_dataset_len: int
    sized: bool = True
    resume: Any = None  # an index into the checkpoints there, True, or "missing"
    restore: bool = False
    script: list[tuple[Any, ...]] = field(default_factory=list)


REFUSALS = ("best_without_metric", "no_length_no_max_steps", "empty_training_set")


def _refused(kwargs: dict[str, Any], size: int, refusal: str) -> tuple[dict[str, Any], bool, int]:
    """A configuration the Trainer refuses: ``(kwargs, whether the training set has a length, its size)``."""
    kwargs = dict(kwargs)
    if refusal == "best_without_metric":
        kwargs.update(eval_strategy="steps", save_strategy="best", load_best_model_at_end=False)
        for key in ("metric_for_best_model", "greater_is_better", "save_steps"):
            kwargs.pop(key, None)
        return kwargs, True, size
    if refusal == "empty_training_set":  # torch's RandomSampler refuses it when the Trainer builds the dataloader
        return kwargs, True, 0
    kwargs.update(max_steps=-1, num_train_epochs=1)
    return kwargs, False, size


@st.composite
def run_sequences(draw: Any) -> list[Run]:
    # Draws are spread by hand: hypothesis favours the ends of a range, so the rare choices sit in the middle.
    hows = draw(st.lists(st.sampled_from(["again", "resume", "new"]), min_size=1, max_size=2))
    setup = draw(strategies.training_setups(output_dir="unused"))
    kwargs, sized, size = dict(setup.kwargs), True, setup.train_dataset_len
    if "resume" in hows and kwargs["save_strategy"] == "no":  # leave checkpoints to resume from
        kwargs.update(save_strategy="steps", save_steps=draw(st.integers(1, 3)))
    pick = draw(st.integers(0, 15))
    if pick in (5, 6, 7):  # one of the configurations the Trainer refuses
        kwargs, sized, size = _refused(kwargs, size, REFUSALS[pick - 5])
    elif pick in (8, 9) and kwargs["max_steps"] > 0:
        sized = False  # an IterableDataset (max_steps is set)
    runs = [Run("new", kwargs, size, sized, script=draw(scripts))]
    for how in hows:
        last = runs[-1]
        changed = dict(last.kwargs)
        if changed["max_steps"] > 0:
            changed["max_steps"] = draw(st.integers(1, 12))
        else:
            changed["num_train_epochs"] = draw(st.sampled_from([1, 2, 3, 0.5, 1.5]))
        if changed.get("save_strategy", "steps") != "no":
            changed["save_total_limit"] = draw(st.sampled_from([None, 1, 2]))
        size, sized = last.train_dataset_len, last.sized
        if how != "again" and draw(st.booleans()):  # a new Trainer may change anything
            fresh = draw(strategies.training_setups(output_dir="unused"))
            changed, size, sized = fresh.kwargs, fresh.train_dataset_len, True
        resume = None
        if how == "resume":  # mostly an existing checkpoint (an index into those there), else True or a missing one
            where = draw(st.integers(0, 11))
            resume = True if where == 5 else "missing" if where == 6 else where
        runs.append(Run(how, changed, size, sized, resume, draw(st.booleans()), draw(scripts)))
    return runs


class Side:
    """One side of the comparison (the real Trainer or the simulator) running a sequence in one folder."""

    def __init__(self, real: bool, folder: str, feed: deque[float]) -> None:
        self.real, self.folder, self.feed = real, folder, feed
        self.trainer: Any = None
        self.recorder = RecordingCallback()
        self.error: BaseException | None = None

    def _metrics(self, eval_index: int, global_step: int) -> dict[str, float]:
        return {"eval_loss": self.feed.popleft() if self.feed else 1.0}

    def run(self, run: Run, names: list[str]) -> None:
        self.error = None
        start = len(self.recorder.events)
        resume: Any = None
        if run.resume is True:
            resume = True
        elif run.resume == "missing" or (run.resume is not None and not names):
            resume = os.path.join(self.folder, "no-such-checkpoint")
        elif run.resume is not None:
            resume = os.path.join(self.folder, names[run.resume % len(names)])
        try:
            if run.how == "again" and self.trainer is not None:
                for key in ("max_steps", "num_train_epochs", "save_total_limit"):
                    setattr(self.trainer.args, key, run.kwargs.get(key, getattr(self.trainer.args, key)))
            else:
                self.recorder = RecordingCallback()
                start = 0
                args = strategies.build_args(
                    {**run.kwargs, "restore_callback_states_from_checkpoint": run.restore}, self.folder
                )
                callbacks = [ScriptedControl(run.script), CountingCallback(), self.recorder]
                self.trainer = None
                if self.real:
                    dataset = (
                        RegressionSet(run.train_dataset_len)
                        if run.sized
                        else EndlessRegressionSet(run.train_dataset_len)
                    )
                    self.trainer = build_trainer(args, callbacks, train_dataset=dataset)
                else:
                    size: dict[str, Any] = {"train_dataset_len": run.train_dataset_len} if run.sized else {}
                    self.trainer = Simulation(args, callbacks, self._metrics, save_checkpoints=True, **size)
            if self.trainer is None:
                raise LookupError("no Trainer to train again (the previous one was refused)")
            self.trainer.train(resume_from_checkpoint=resume)
        except Exception as exc:  # the other side must then fail the same way
            self.error = exc
        self.events = self.recorder.events[start:]


def _outcome(side: Side) -> dict[str, Any]:
    """What one ``train()`` call left: its error, events, checkpoint folders and final state."""
    folder = side.folder
    ok = side.error is None
    return {
        "error": type(side.error),
        "trace": trace(side.events),
        "checkpoints": {n: _comparable_state(Path(folder, n, "trainer_state.json")) for n in _checkpoints(folder)},
        "state": _final_state(side.trainer.state) if ok else None,
        "control": dataclasses.asdict(side.trainer.control) if ok else None,
    }


def _run_sequence(runs: list[Run], root: str) -> list[str]:
    """Run ``runs`` on both sides and compare each; returns what each real run was and how it ended."""
    # All real runs first: building the simulator's TrainingArguments resets accelerate's state, which a
    # real Trainer training again on an IterableDataset would trip over (a harness artefact, not a Trainer rule).
    feed: deque[float] = deque()
    real = Side(True, os.path.join(root, "real"), feed)
    expected, names, losses, labels = [], [], [], []
    for run in runs:
        names.append(_checkpoints(real.folder))
        real.run(run, names[-1])
        kind = f"{run.how}{'' if run.sized else ' (no length)'}"
        labels.append(f"{kind}: {type(real.error).__name__} {str(real.error)[:50]}")
        expected.append((_outcome(real), repr(real.error)))
        losses.append([(e.payload or {})["eval_loss"] for e in real.events if e.name == "on_evaluate"])
    sim = Side(False, os.path.join(root, "sim"), feed)
    for i, run in enumerate(runs):
        feed.clear()
        feed.extend(losses[i])
        sim.run(run, names[i])
        got, (want, real_error) = _outcome(sim), expected[i]
        for key in want:
            assert got[key] == want[key], (f"run {i} ({run.how}): {key}", real_error, repr(sim.error))
    return labels


@pytest.mark.slow
@settings(
    max_examples=_examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(runs=run_sequences())
def test_runs_in_one_folder_match(fast_real_trainer: None, tmp_path: Path, runs: list[Run]) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as root:
        for label in _run_sequence(runs, root):
            note_event(label)  # their spread: pytest --hypothesis-show-statistics


BASE = dict(report_to="none", use_cpu=True, disable_tqdm=True, save_steps=1, save_total_limit=1)
BEST = dict(max_steps=-1, eval_strategy="steps", eval_steps=1, save_strategy="best", metric_for_best_model="loss")


def _runs(*runs: Run) -> list[Run]:
    return [dataclasses.replace(r, kwargs={**BASE, **r.kwargs}) for r in runs]


@pytest.mark.parametrize(
    ("runs", "kept", "errors"),
    [
        # The reported cases (save_steps=1, save_total_limit=1 unless said). Rotation orders by mtime:
        # the first run leaves checkpoint-4; the second run's checkpoint-1 and -2 are newer, so each
        # rotation keeps the newest and checkpoint-4 goes (step order would keep checkpoint-4).
        (_runs(Run("new", dict(max_steps=4), 8), Run("new", dict(max_steps=2), 8)), ["checkpoint-2"], [None, None]),
        # checkpoint-1..6 exist; resumed from checkpoint-3, the save of step 4 overwrites files in an
        # existing folder (its mtime stays), so checkpoint-6 is still the newest and everything else
        # goes, checkpoint-4 included; step 5 creates a new folder, the newest, and checkpoint-6 goes.
        (
            _runs(
                Run("new", dict(max_steps=6, save_total_limit=None), 8), Run("resume", dict(max_steps=5), 8, resume=2)
            ),
            ["checkpoint-5"],
            [None, None],
        ),
        # which steps are best depends on the real losses: compared with the real Trainer only
        (
            _runs(Run("new", BEST | dict(num_train_epochs=1), 8), Run("new", BEST | dict(num_train_epochs=3), 8)),
            None,
            [None, None],
        ),
        # refused by the Trainer, then a valid run in the same folder; a missing checkpoint
        (
            _runs(
                Run("new", dict(max_steps=3, eval_strategy="steps", save_strategy="best"), 8),
                Run("new", dict(max_steps=3), 8),
                Run("resume", dict(max_steps=4), 8, resume="missing"),
            ),
            ["checkpoint-3"],
            ["ValueError", None, "ValueError"],
        ),
        (_runs(Run("new", dict(max_steps=-1), 8, sized=False)), [], ["ValueError"]),  # no length, no max_steps
        (_runs(Run("new", dict(max_steps=3), 0)), [], ["ValueError"]),  # an empty training set
        # an IterableDataset, trained again with more steps, then resumed from the newest (True)
        (
            _runs(
                Run("new", dict(max_steps=3), 5, sized=False),
                Run("again", dict(max_steps=5), 5, sized=False),
                Run("resume", dict(max_steps=7), 5, sized=False, resume=True),
            ),
            ["checkpoint-7"],
            [None, None, None],
        ),
    ],
    ids=[
        "fewer-steps",
        "resume-lower-max-steps",
        "best-more-epochs",
        "refused-then-valid",
        "no-length",
        "empty",
        "iterable",
    ],
)
def test_known_sequences_match(
    fast_real_trainer: None, tmp_path: Path, runs: list[Run], kept: list[str] | None, errors: list[str | None]
) -> None:
    labels = _run_sequence(runs, str(tmp_path))
    raised = [label.split(": ", 1)[1].split()[0] for label in labels]  # "<how>: <exception type> <message>"
    assert [None if r == "NoneType" else r for r in raised] == errors
    if kept is not None:
        assert _checkpoints(str(tmp_path / "real")) == kept
