"""Simulator features that the differential tests do not reach: ranks, gradients, rotation, strategies."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_utils import rotate_checkpoints

from trainer_callbacks.testing import Simulation, simulate, strategies
from trainer_callbacks.testing.checkpoints import rotate_in_memory
from trainer_callbacks.testing.simulator import (
    TRANSFORMERS_VERSIONS,
    SimulatorVersionWarning,
    check_transformers_version,
)


def _args(tmp_path: Path, **kw: Any) -> TrainingArguments:
    base: dict[str, Any] = dict(
        output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, max_steps=6, logging_steps=1
    )
    base.update(kw)
    return TrainingArguments(**base)


def test_non_zero_rank_writes_nothing_and_knows_it_is_not_main(tmp_path: Path) -> None:
    seen: list[tuple[bool, bool]] = []

    class Probe(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            seen.append((args.should_save, state.is_world_process_zero))

    args = _args(tmp_path, save_steps=2, eval_strategy="steps", eval_steps=2, load_best_model_at_end=True)
    sim = simulate(args, [Probe()], process_index=1, world_size=2, save_checkpoints=True)
    assert not (tmp_path / "out").exists()
    assert set(seen) == {(False, False)}
    # the checkpoints exist on the (shared) filesystem rank 0 writes, so the best one is known here too
    assert args.output_dir is not None
    assert sim.state.best_model_checkpoint == os.path.join(args.output_dir, "checkpoint-6")
    main = simulate(args, [], save_checkpoints=True)
    assert sorted(os.listdir(tmp_path / "out")) == [c.name for c in main.checkpoints]


def test_compute_gradients_gives_clipped_gradients_before_the_optimizer_step(tmp_path: Path) -> None:
    norms: list[float] = []

    class GradProbe(TrainerCallback):
        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    sim = simulate(_args(tmp_path, max_grad_norm=0.01), [GradProbe()], compute_gradients=True)
    logged = [log["grad_norm"] for log in sim.logs if "grad_norm" in log]
    assert len(norms) == len(logged) == 6
    # the Trainer logs the norm before clipping and callbacks see the clipped gradients
    assert all(pre > 0.01 for pre in logged)
    assert all(abs(n - 0.01) < 1e-4 for n in norms)


def test_learning_rate_logged_is_the_one_before_the_scheduler_step(tmp_path: Path) -> None:
    # linear decay from 1e-3 over 4 steps, no warm-up: lr used at step k (1-based) is 1e-3 * (4 - (k - 1)) / 4
    sim = simulate(_args(tmp_path, max_steps=4, learning_rate=1e-3), [])
    assert [round(log["learning_rate"], 10) for log in sim.logs if "learning_rate" in log] == [
        1e-3,
        7.5e-4,
        5e-4,
        2.5e-4,
    ]


@settings(max_examples=60)
@given(
    folders=st.lists(
        st.tuples(st.integers(1, 40), st.sampled_from(["", "-merged"]), st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0])),
        max_size=8,
        unique_by=lambda f: f[:2],
    ),
    limit=st.one_of(st.none(), st.integers(0, 5)),
    best=st.one_of(st.none(), st.integers(0, 7)),
    use_mtime=st.booleans(),
)
def test_in_memory_rotation_equals_transformers(
    tmp_path_factory: Any,
    folders: list[tuple[int, str, float]],
    limit: int | None,
    best: int | None,
    use_mtime: bool,
) -> None:
    """Against transformers' own ``rotate_checkpoints`` on real folders with those modification times.

    mtimes less than a second apart make transformers fall back to step order; names with a
    suffix (``checkpoint-3-merged``) count in mtime order and by their number in step order.
    """
    root = tmp_path_factory.mktemp("rot")
    base = 1_700_000_000.0
    paths, mtimes = [], {}
    for step, suffix, offset in folders:
        path = str(root / f"checkpoint-{step}{suffix}")
        os.makedirs(path)
        os.utime(path, (base + offset, base + offset))
        paths.append(path)
        mtimes[path] = base + offset
    best_path = paths[best] if best is not None and best < len(paths) else None
    predicted = set(rotate_in_memory(paths, limit, best_path, mtimes if use_mtime else None))
    rotate_checkpoints(str(root), save_total_limit=limit, best_model_checkpoint=best_path, use_mtime=use_mtime)
    assert {p for p in paths if not os.path.isdir(p)} == predicted


def test_a_checkpoint_saved_again_keeps_its_time_and_a_new_one_is_newest(tmp_path: Path) -> None:
    """A second run with fewer steps in the same folder: its checkpoint-2 is newer than the first run's checkpoint-4.

    The Trainer rotates by modification time, so with ``save_total_limit=1`` the second run keeps its own
    checkpoint-2 and deletes checkpoint-4 (step order would do the opposite).
    """
    for write in (False, True):
        out = tmp_path / f"write-{write}"
        first = simulate(_args(out, max_steps=4, save_steps=1, save_total_limit=1), [], save_checkpoints=write)
        assert [c.name for c in first.checkpoints] == ["checkpoint-4"]
        first.args.max_steps = 2  # train() again on the same (simulated) Trainer
        first.train()
        assert [c.name for c in first.checkpoints] == ["checkpoint-2"]
        if write:  # and a new Trainer in the same folder
            assert sorted(os.listdir(out / "out")) == ["checkpoint-2"]
            second = Simulation(_args(out, max_steps=1, save_steps=1, save_total_limit=1), [], save_checkpoints=True)
            second.train()
            assert sorted(os.listdir(out / "out")) == ["checkpoint-1"]


def test_resuming_from_a_missing_or_empty_folder_raises_what_the_trainer_raises(tmp_path: Path) -> None:
    args = _args(tmp_path, save_steps=2)
    with pytest.raises(ValueError, match="Can't find a valid checkpoint"):
        simulate(args, [], resume_from_checkpoint=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="Can't find a valid checkpoint"):
        simulate(args, [], resume_from_checkpoint=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="No valid checkpoint found"):
        simulate(args, [], resume_from_checkpoint=True)
    sim = simulate(args, [], save_checkpoints=True)
    os.remove(os.path.join(sim.checkpoints[0].path, "trainer_state.json"))
    with pytest.raises(FileNotFoundError):  # weights but no state: TrainerState.load_from_json's error
        simulate(args, [], resume_from_checkpoint=sim.checkpoints[0].path)


@pytest.mark.parametrize(
    ("kwargs", "options"),
    [
        (dict(eval_strategy="steps", save_strategy="best"), {}),  # no metric_for_best_model
        (dict(max_steps=-1), {}),  # a training set without a length needs max_steps
        (dict(), {"train_dataset_len": 0}),  # torch's RandomSampler refuses an empty training set
        (dict(max_steps=-1, train_sampling_strategy="sequential"), {"train_dataset_len": 0}),  # no batches
    ],
    ids=["best-without-metric", "no-length-no-max-steps", "empty-training-set", "empty-sequential"],
)
def test_configurations_the_trainer_refuses_are_refused_with_its_error(
    tmp_path: Path, kwargs: dict[str, Any], options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError) as info:
        simulate(_args(tmp_path, **kwargs), [], **options)
    assert type(info.value) is ValueError  # the Trainer's own check raised it, not a look-alike


def test_the_mirrored_transformers_versions_are_stated_and_checked() -> None:
    import transformers
    from packaging.specifiers import SpecifierSet

    assert transformers.__version__ in SpecifierSet(TRANSFORMERS_VERSIONS)  # else: re-run the differential tests
    assert check_transformers_version(transformers.__version__)
    with pytest.warns(SimulatorVersionWarning, match="4.57.0"):
        assert not check_transformers_version("4.57.0")


@settings(max_examples=40)
@given(setup=strategies.training_setups(output_dir="unused"), stream=strategies.metric_streams())
def test_strategies_only_make_configurations_the_simulator_runs(
    setup: strategies.TrainingSetup, stream: list[dict[str, float]]
) -> None:
    sim = simulate(setup.args, [], stream, train_dataset_len=setup.train_dataset_len)
    assert sim.state.global_step <= sim.state.max_steps + 1


@given(strategies.metric_streams(names=("eval_loss", "eval_f1"), kind="improving", min_size=2))
def test_improving_streams_improve_in_each_metrics_direction(stream: list[dict[str, float]]) -> None:
    losses = [m["eval_loss"] for m in stream]
    f1 = [m["eval_f1"] for m in stream]
    assert all(b < a for a, b in itertools.pairwise(losses))
    assert all(b > a for a, b in itertools.pairwise(f1))
