"""Crash-safe deletion: claim by atomic rename, background removal, leftovers, concurrent pruners, dry run."""

from __future__ import annotations

import errno
import multiprocessing
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerControl, TrainerState
from transformers.trainer_utils import get_last_checkpoint

from trainer_callbacks.checkpoint import CheckpointPruner, deletion
from trainer_callbacks.checkpoint.deletion import TRASH_NAME, Deleter, claim, leftovers, tree_size


def begin(cb: CheckpointPruner, args: Any, step: int, log_history: list[dict[str, Any]] | None = None) -> Any:
    state = TrainerState(global_step=step, log_history=list(log_history or []))
    cb.on_train_begin(args, state, TrainerControl())
    return state


def test_claim_is_won_once(tmp_path: Path, write_ckpt: Any) -> None:
    path = write_ckpt(tmp_path, 4)
    first = claim(path)
    assert first is not None and TRASH_NAME.match(first.name) and not path.exists()
    assert claim(path) is None  # the loser of the race skips quietly


def test_claim_failure_keeps_the_checkpoint(
    tmp_path: Path, write_ckpt: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_ckpt(tmp_path, 4)

    def busy(src: Any, dst: Any) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(os, "rename", busy)
    assert claim(path) is None
    assert (path / "trainer_state.json").is_file()
    assert "is kept" in caplog.text


def test_tree_size_counts_files_once_and_ignores_links(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a").write_bytes(b"x" * 1000)
    (tmp_path / "d" / "sub" / "b").write_bytes(b"y" * 24)
    os.link(tmp_path / "d" / "a", tmp_path / "d" / "sub" / "a-again")
    (tmp_path / "big").write_bytes(b"z" * 10_000)
    os.symlink(tmp_path / "big", tmp_path / "d" / "link")
    assert tree_size(tmp_path / "d") == 1024


def test_background_removal_is_off_the_training_thread_and_awaited(
    tmp_path: Path, training_args: Any, write_ckpt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    for step in (1, 2, 3):
        write_ckpt(run, step, payload=b"p" * 500)
    # bytes freed by hand: weights + optimizer (500 each) + trainer_state.json of checkpoints 1 and 2
    freed = sum(1000 + (run / f"checkpoint-{s}" / "trainer_state.json").stat().st_size for s in (1, 2))
    release = threading.Event()
    removed: list[str] = []
    real_remove = deletion.remove_tree

    def slow_remove(path: Path) -> bool:
        assert threading.current_thread() is not threading.main_thread()
        release.wait()
        removed.append(path.name)
        return real_remove(path)

    monkeypatch.setattr(deletion, "remove_tree", slow_remove)
    args = training_args(output_dir=str(run))
    cb = CheckpointPruner(keep_last=1, keep_best=0, background=True)
    cb._deleter = Deleter(background=True, process=False)  # threads of this process, so the patch reaches them
    state = begin(cb, args, 3)
    try:
        cb.on_save(args, state, TrainerControl())
        # on_save returned while the removal is blocked: the old checkpoints are already hidden from loaders
        assert removed == []
        assert get_last_checkpoint(str(run)) == str(run / "checkpoint-3")
        assert sorted(p.name for p in run.iterdir() if not TRASH_NAME.match(p.name)) == ["checkpoint-3"]
        # what the save decided is logged and saved before the thread has removed anything
        decided = [{"checkpoint/kept": 1.0, "checkpoint/deleted": 2.0, "step": 3}]
        assert state.log_history == decided
        assert cb.state()["attributes"]["progress"] == {"deleted_total": 2, "prunes": 1}
    finally:
        release.set()  # never leave the deleter thread blocked (pytest would hang at exit)
    cb.on_train_end(args, state, TrainerControl())
    assert len(removed) == 2 and sorted(p.name for p in run.iterdir()) == ["checkpoint-3"]
    # the bytes, which only the thread learns, come once at train end, after waiting for it
    assert state.log_history == [*decided, {"checkpoint/bytes_freed": freed, "step": 3}]
    assert cb.bytes_freed_total == freed
    assert cb.state()["attributes"]["progress"] == {"deleted_total": 2, "prunes": 1}


# ---- counts that tell the truth: injected failures, no timing ----------------------------------------------


@pytest.mark.parametrize("background", [True, False])
def test_a_failed_rename_is_counted_as_kept_not_deleted(
    tmp_path: Path, training_args: Any, write_ckpt: Any, monkeypatch: pytest.MonkeyPatch, background: bool
) -> None:
    run = tmp_path / "run"
    for step in (1, 2, 3):
        write_ckpt(run, step)
    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        if Path(src).name == "checkpoint-1":
            raise OSError(errno.EBUSY, "Device or resource busy")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    args = training_args(output_dir=str(run))
    cb = CheckpointPruner(keep_last=1, keep_best=0, background=background)
    cb._deleter = Deleter(background=background, process=False)  # this process: the patch reaches it
    state = begin(cb, args, 3)
    cb.on_save(args, state, TrainerControl())
    cb.on_train_end(args, state, TrainerControl())
    # the policy keeps checkpoint-3 only; checkpoint-1 could not be moved aside, so it is still there
    on_disk = sorted(p.name for p in run.iterdir())
    assert on_disk == ["checkpoint-1", "checkpoint-3"]
    prune = [e for e in state.log_history if "checkpoint/kept" in e]
    assert prune == [{"checkpoint/kept": float(len(on_disk)), "checkpoint/deleted": 1.0, "step": 3}]
    assert cb.deleted_total == 1 and cb.state()["attributes"]["progress"]["deleted_total"] == 1


@pytest.mark.parametrize("background", [True, False])
def test_a_failed_removal_frees_nothing_and_is_reported(
    tmp_path: Path,
    training_args: Any,
    write_ckpt: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    background: bool,
) -> None:
    run = tmp_path / "run"
    for step in (1, 2, 3):
        write_ckpt(run, step, payload=b"p" * 500)
    kept_size = tree_size(run / "checkpoint-2")  # the one whose removal succeeds
    real_rmtree = shutil.rmtree

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if ".checkpoint-1." in os.fspath(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    args = training_args(output_dir=str(run))
    cb = CheckpointPruner(keep_last=1, keep_best=0, background=background)
    cb._deleter = Deleter(background=background, process=False)  # this process: the patch reaches it
    state = begin(cb, args, 3)
    cb.on_save(args, state, TrainerControl())
    cb.on_train_end(args, state, TrainerControl())
    # both left the checkpoints at the save (renamed: no loader sees them); one stays on disk, hidden
    assert get_last_checkpoint(str(run)) == str(run / "checkpoint-3")
    hidden = [p for p in run.iterdir() if TRASH_NAME.match(p.name)]
    assert [p.name.split(".deleting-")[0] for p in hidden] == [".checkpoint-1"]
    assert state.log_history == [
        {"checkpoint/kept": 1.0, "checkpoint/deleted": 2.0, "step": 3},
        {"checkpoint/bytes_freed": float(kept_size), "checkpoint/not_removed": 1.0, "step": 3},
    ]
    assert "could not be removed (PermissionError" in caplog.text and ".checkpoint-1." in caplog.text
    # the next start removes it
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    again = CheckpointPruner(keep_last=1, keep_best=0, background=background)
    state = begin(again, args, 3)
    again.on_train_end(args, state, TrainerControl())
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-3"]


def test_synchronous_removal_is_done_when_on_save_returns(tmp_path: Path, training_args: Any, write_ckpt: Any) -> None:
    run = tmp_path / "run"
    for step in (1, 2):
        write_ckpt(run, step)
    args = training_args(output_dir=str(run))
    cb = CheckpointPruner(keep_last=1, keep_best=0, background=False)
    state = begin(cb, args, 2)
    cb.on_save(args, state, TrainerControl())
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-2"]
    assert [e["checkpoint/deleted"] for e in state.log_history if "checkpoint/deleted" in e] == [1.0]


def test_crash_leftovers_are_removed_at_the_next_start(tmp_path: Path, training_args: Any, write_ckpt: Any) -> None:
    run = tmp_path / "run"
    write_ckpt(run, 5)
    # a crash after the rename, and one in the middle of rmtree (weights already gone)
    whole = write_ckpt(run, 3).rename(run / f".checkpoint-3.deleting-{uuid.uuid4().hex}")
    half = write_ckpt(run, 4).rename(run / f".checkpoint-4.deleting-{uuid.uuid4().hex}")
    (half / "model.safetensors").unlink()
    lookalike = run / ".checkpoint-2.deleting-not-ours"
    lookalike.mkdir()
    assert get_last_checkpoint(str(run)) == str(run / "checkpoint-5")
    assert set(leftovers(run)) == {whole, half}

    args = training_args(output_dir=str(run))
    dry = CheckpointPruner(dry_run=True)
    begin(dry, args, 5)
    dry.wait()
    assert whole.exists() and half.exists()  # a dry run deletes nothing, not even leftovers

    cb = CheckpointPruner()
    state = begin(cb, args, 5)
    cb.on_train_end(args, state, TrainerControl())
    assert sorted(p.name for p in run.iterdir()) == [lookalike.name, "checkpoint-5"]
    assert not [e for e in state.log_history if "checkpoint/deleted" in e]  # leftovers are not a prune


def test_dry_run_reports_what_a_real_run_deletes(tmp_path: Path, training_args: Any, write_ckpt: Any) -> None:
    history = [{"eval_loss": v, "step": s} for s, v in [(1, 0.5), (2, 0.9), (3, 0.7), (4, 0.8)]]
    for name in ("dry", "real"):
        for step in (1, 2, 3, 4):
            write_ckpt(tmp_path / name, step, payload=bytes(100 * step))
    reports = {}
    for name, dry in (("dry", True), ("real", False)):
        args = training_args(output_dir=str(tmp_path / name))
        cb = CheckpointPruner(keep_last=1, keep_best=1, monitor="eval_loss", dry_run=dry)
        state = begin(cb, args, 4, history)
        cb.on_save(args, state, TrainerControl())
        cb.on_train_end(args, state, TrainerControl())
        reports[name] = [e for e in state.log_history if any(k.startswith("checkpoint/") for k in e)]
    assert reports["dry"] == reports["real"]
    # by hand: kept = newest (4) + best eval_loss (1); deleted 2 and 3 = 2*(200+300) bytes of weights+optimizer
    # plus their trainer_state.json files
    sizes = sum(len((tmp_path / "dry" / f"checkpoint-{s}" / "trainer_state.json").read_bytes()) for s in (2, 3))
    assert reports["real"] == [
        {"checkpoint/kept": 2.0, "checkpoint/deleted": 2.0, "step": 4},
        {"checkpoint/bytes_freed": 2 * (200 + 300) + sizes, "step": 4},
    ]
    assert sorted(p.name for p in (tmp_path / "dry").iterdir()) == [f"checkpoint-{s}" for s in (1, 2, 3, 4)]
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["checkpoint-1", "checkpoint-4"]


# ---- two processes pruning the same shared directory -------------------------------------------------------


def _prune_in_child(args: Any, step: int, barrier: Any, results: Any, background: bool) -> None:
    try:
        cb = CheckpointPruner(
            keep_last=2, keep_best=1, monitor={"eval_loss": "min"}, keep_every_n_steps=10, background=background
        )
        history = [{"eval_loss": float((s * 7) % 11), "step": s} for s in range(1, step + 1)]
        state = TrainerState(global_step=step, log_history=history)
        barrier.wait()
        cb.on_train_begin(args, state, TrainerControl())
        cb.on_save(args, state, TrainerControl())
        cb.on_train_end(args, state, TrainerControl())
        deleted = sum(e["checkpoint/deleted"] for e in state.log_history if "checkpoint/deleted" in e)
        results.put(("ok", int(deleted)))
    except BaseException as exc:  # report anything, even SystemExit, to the parent
        results.put(("error", repr(exc)))


@pytest.mark.parametrize("background", [True, False])
def test_concurrent_pruners_neither_crash_nor_double_delete(
    tmp_path: Path, training_args: Any, write_ckpt: Any, background: bool
) -> None:
    run = tmp_path / "run"
    step = 40
    for s in range(1, step + 1):
        write_ckpt(run, s, payload=b"q" * 2000)
    # a leftover of an earlier crash that every process will try to clean at start
    shutil.copytree(run / "checkpoint-1", run / f".checkpoint-0.deleting-{uuid.uuid4().hex}")
    args = training_args(output_dir=str(run))
    # Expected by hand: last 2 = 39, 40; best eval_loss = (s*7) % 11 == 0 -> s in {11, 22, 33}, newest 33;
    # milestones every 10 -> 10, 20, 30, 40.
    expected = {"checkpoint-10", "checkpoint-20", "checkpoint-30", "checkpoint-33", "checkpoint-39", "checkpoint-40"}
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_prune_in_child, args=(args, step, barrier, results, background)) for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in procs]  # hang guards, not speed checks
    for p in procs:
        p.join(timeout=300)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    assert all(p.exitcode == 0 for p in procs)
    # every doomed checkpoint was claimed by exactly one process
    assert sum(count for _, count in outcomes) == step - len(expected)
    assert set(os.listdir(run)) == expected


@pytest.mark.skipif(not hasattr(os, "setpriority") or os.uname().sysname != "Linux", reason="per-thread nice is Linux")
def test_the_background_deleter_runs_at_the_lowest_cpu_priority_and_only_it(tmp_path: Path) -> None:
    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    deleter = deletion.Deleter(background=True, process=False)  # the child process: test_deleter_process.py
    doomed = tmp_path / "doomed"
    doomed.mkdir()
    deleter.submit(deletion.Removal(step=1, names=("doomed",)), [doomed]).result()
    assert deleter._executor is not None
    worker_nice = deleter._executor.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    deleter.close()
    assert worker_nice == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before  # training threads untouched
    assert not doomed.exists()
