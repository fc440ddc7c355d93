"""The checkpoint index (scan.Scanner) equals a fresh scan after any sequence of saves, prunes and outside changes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from transformers import TrainerControl, TrainerState

from trainer_callbacks.checkpoint import CheckpointPruner
from trainer_callbacks.checkpoint.deletion import claim
from trainer_callbacks.checkpoint.scan import Scanner, ScanResult, full_scan


def write(run: Path, name: str, complete: bool) -> None:
    path = run / name
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"w")
    if complete:
        (path / "trainer_state.json").write_text("{}")


def same(a: ScanResult, b: ScanResult) -> bool:
    return (
        a.candidates == b.candidates
        and a.newer == b.newer
        and sorted(a.foreign) == sorted(b.foreign)
        and sorted(a.unreadable) == sorted(b.unreadable)
    )


step_numbers = st.integers(min_value=0, max_value=12)
operations = st.one_of(
    st.tuples(st.just("save"), step_numbers),  # the Trainer writes a complete checkpoint
    st.tuples(st.just("partial"), step_numbers),  # a save interrupted before trainer_state.json
    st.tuples(st.just("complete"), step_numbers),  # ... finished later
    st.tuples(st.just("prune"), step_numbers),  # the pruner's rename aside, then the removal
    st.tuples(st.just("rmtree"), step_numbers),  # someone else deletes it
    st.tuples(st.just("replace"), step_numbers),  # deleted and written again under the same name
    st.tuples(st.just("symlink"), step_numbers),
    st.tuples(st.just("file"), step_numbers),
    st.tuples(st.just("padded"), step_numbers),  # checkpoint-007
    st.tuples(st.just("other"), step_numbers),  # unrelated entries
)


def apply(run: Path, op: str, n: int) -> None:
    name = f"checkpoint-{n}"
    path = run / name
    exists = os.path.lexists(path)
    if op in ("save", "partial") and not exists:
        write(run, name, complete=op == "save")
    elif op == "complete" and path.is_dir() and not path.is_symlink():
        (path / "trainer_state.json").write_text("{}")
    elif op == "prune" and path.is_dir() and not path.is_symlink():
        hidden = claim(path)
        assert hidden is not None
        shutil.rmtree(hidden)
    elif op == "rmtree" and exists:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    elif op == "replace" and path.is_dir() and not path.is_symlink():
        complete = (path / "trainer_state.json").exists()
        shutil.rmtree(path)
        write(run, name, complete=not complete)
    elif op == "symlink" and not exists:
        os.symlink(run / "elsewhere", path)
    elif op == "file" and not exists:
        path.write_text("not a folder")
    elif op == "padded" and not os.path.lexists(run / f"checkpoint-00{n}"):
        (run / f"checkpoint-00{n}").mkdir()
    elif op == "other" and not os.path.lexists(run / f"runs-{n}"):
        (run / f"runs-{n}").mkdir()


@given(ops=st.lists(operations, max_size=25), global_step=step_numbers, settled=st.booleans())
def test_the_index_equals_a_fresh_scan_after_any_changes(
    ops: list[tuple[str, int]], global_step: int, settled: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        scanner = Scanner()
        assert same(scanner.scan(run, global_step), full_scan(run, global_step))
        for op, n in ops:
            apply(run, op, n)
            if settled:
                # a modification time far in the past: the index trusts an unchanged time and skips listing,
                # and every change that follows still moves it
                past = os.stat(run).st_mtime - 3600
                os.utime(run, (past, past))
            assert same(scanner.scan(run, global_step), full_scan(run, global_step)), (op, n)


def test_an_unchanged_directory_is_not_listed_again(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        write(tmp_path, f"checkpoint-{step}", complete=True)
    past = os.stat(tmp_path).st_mtime - 3600
    os.utime(tmp_path, (past, past))
    scanner = Scanner()
    first = scanner.scan(tmp_path, 3)
    assert scanner.listings == 1 and [f.step for f in first.candidates] == [1, 2, 3]
    again = scanner.scan(tmp_path, 3)
    assert scanner.listings == 1 and again.candidates == first.candidates
    write(tmp_path, "checkpoint-4", complete=True)  # moves the directory's modification time
    assert [f.step for f in scanner.scan(tmp_path, 4).candidates] == [1, 2, 3, 4]
    assert scanner.listings == 2


def test_a_recently_modified_directory_is_listed_every_time(tmp_path: Path) -> None:
    # within the timestamp tick of the last listing, an unchanged time proves nothing
    write(tmp_path, "checkpoint-1", complete=True)
    scanner = Scanner(now=lambda: os.stat(tmp_path).st_mtime + 0.5)
    scanner.scan(tmp_path, 1)
    scanner.scan(tmp_path, 1)
    assert scanner.listings == 2


def test_pruner_decisions_with_many_checkpoints_match_a_fresh_pruner(tmp_path: Path, training_args: Any) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for step in range(1, 41):
        write(run, f"checkpoint-{step}", complete=True)
    args = training_args(output_dir=str(run))
    kept = CheckpointPruner(keep_last=3, keep_best=0, keep_every_n_steps=10, background=False)
    state = TrainerState(global_step=40)
    kept.on_train_begin(args, state, TrainerControl())
    for step in range(41, 46):
        write(run, f"checkpoint-{step}", complete=True)
        if step == 43:
            shutil.rmtree(run / "checkpoint-20")  # an outside change between saves
        state.global_step = step
        kept.on_save(args, state, TrainerControl())
    fresh = CheckpointPruner(keep_last=3, keep_best=0, keep_every_n_steps=10, background=False)
    fresh.on_train_begin(args, TrainerState(global_step=45), TrainerControl())
    decision = fresh.prune(args, TrainerState(global_step=45))
    assert decision is not None and decision.deleted == ()
    assert sorted(int(p.name.split("-")[1]) for p in run.iterdir()) == [10, 30, 40, 43, 44, 45]


def test_reused_checkpoint_infos_follow_the_best_checkpoint_and_new_metrics(tmp_path: Path, training_args: Any) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for step in (1, 2, 3, 4):
        write(run, f"checkpoint-{step}", complete=True)
    args = training_args(output_dir=str(run), eval_strategy="steps")
    cb = CheckpointPruner(keep_last=1, keep_best=1, monitor={"eval_loss": "min"}, strict=False, background=False)
    history: list[dict[str, Any]] = [{"eval_loss": 0.5, "step": s} for s in (1, 2, 3, 4)]
    state = TrainerState(global_step=4, log_history=history)
    cb.on_train_begin(args, state, TrainerControl())
    first = cb.prune(args, state)
    assert first is not None and set(first.kept) == {4}  # ties: the newer wins
    write(run, "checkpoint-5", complete=True)
    state.global_step = 5
    state.log_history.append({"eval_loss": 0.5, "step": 5})
    state.best_model_checkpoint = str(run / "checkpoint-5")
    second = cb.prune(args, state)
    assert second is not None and second.kept[5] >= {"best_model_checkpoint", "last"}
    # a metric logged late for step 5 changes its info (no stale cached copy)
    state.log_history.append({"eval_loss": 0.1, "step": 5})
    write(run, "checkpoint-6", complete=True)
    state.global_step = 6
    state.log_history.append({"eval_loss": 0.3, "step": 6})  # better than step 5's first value, worse than its last
    third = cb.prune(args, state)
    assert third is not None and "best:eval_loss" in third.kept[5]
    # the best checkpoint moves: the cached flag does not stick to the old one
    state.best_model_checkpoint = str(run / "checkpoint-6")
    write(run, "checkpoint-7", complete=True)
    state.global_step = 7
    state.log_history.append({"eval_loss": 0.9, "step": 7})
    fourth = cb.prune(args, state)
    assert fourth is not None and "best_model_checkpoint" not in fourth.kept.get(5, frozenset())
    assert "best_model_checkpoint" in fourth.kept[6]
