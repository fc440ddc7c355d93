"""The checkpoint index (scan.Scanner, runindex.RunIndex) equals a fresh scan after any sequence of saves, prunes and
outside changes, also when it is reconciled on another thread; and a stale one never deletes what a fresh scan keeps."""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from transformers import TrainerControl, TrainerState

from trainer_callbacks.checkpoint import CheckpointPruner
from trainer_callbacks.checkpoint.deletion import Deleter, claim
from trainer_callbacks.checkpoint.policy import CheckpointInfo, RetentionPolicy, decide
from trainer_callbacks.checkpoint.scan import (
    Delta,
    Found,
    Scanner,
    ScanResult,
    Snapshot,
    full_scan,
    metrics_from_history,
)


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


# ---- reconciling on another thread, and the pruner's decisions on a stale index (issue 18 §2) -----------


def all_found(scanner: Scanner) -> dict[str, Found]:
    result = scanner._result(10**9)
    return {f.path.name: f for f in result.candidates + result.newer}


interleaved = st.one_of(
    operations,
    st.tuples(st.just("snapshot"), st.just(0)),  # the background thread copies the index ...
    st.tuples(st.just("compute"), st.just(0)),  # ... lists the directory ...
    st.tuples(st.just("apply"), st.just(0)),  # ... and the training thread applies it at the next prune
    st.tuples(st.just("inspect"), step_numbers),  # the training thread looks at one folder (the one just saved)
    st.tuples(st.just("our_prune"), step_numbers),  # the pruner renames a folder aside and forgets it
)


@given(ops=st.lists(interleaved, max_size=30), settled=st.booleans())
def test_reconciling_on_a_snapshot_taken_before_other_changes_converges_to_a_fresh_scan(
    ops: list[tuple[str, int]], settled: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        scanner = Scanner()
        scanner.update(run)
        mirror: dict[str, Found] = {}  # what a consumer of changes() (the pruner's RunIndex) holds

        def drain() -> None:
            for name, found in scanner.changes().found.items():
                if found is None:
                    mirror.pop(name, None)
                else:
                    mirror[name] = found

        drain()
        snapshot: Snapshot | None = None
        delta: Delta | None = None
        for op, n in ops:
            name = f"checkpoint-{n}"
            if op == "snapshot" and snapshot is None and delta is None:
                snapshot = scanner.snapshot(run)
            elif op == "compute" and snapshot is not None:
                delta, snapshot = scanner.compute(snapshot), None
            elif op == "apply" and delta is not None:
                scanner.apply(delta)
                delta = None
            elif op == "inspect":
                scanner.inspect(run, [name])
            elif op == "our_prune":
                path = run / name
                if path.is_dir() and not path.is_symlink():
                    hidden = claim(path)
                    assert hidden is not None
                    shutil.rmtree(hidden)
                    scanner.forget([name])
            else:
                apply(run, op, n)
            if settled:
                past = os.stat(run).st_mtime - 3600
                os.utime(run, (past, past))
            drain()
            assert mirror == all_found(scanner)
        if snapshot is not None:
            delta = scanner.compute(snapshot)
        if delta is not None:
            scanner.apply(delta)
        drain()
        assert mirror == all_found(scanner)
        # one more reconciliation: nothing a stale delta left can survive it
        assert same(scanner.scan(run, 12), full_scan(run, 12))
        drain()
        assert mirror == all_found(scanner)
        assert scanner._touched == {} and scanner._out == []


class Later:
    """A submitter whose jobs run only when the test says (the background thread, made deterministic)."""

    def __init__(self) -> None:
        self.queue: list[tuple[Future[Any], Any, tuple[Any, ...]]] = []

    def submit(self, fn: Any, /, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.queue.append((future, fn, args))
        return future

    def run(self) -> None:
        for future, fn, args in self.queue:
            future.set_result(fn(*args))
        self.queue.clear()


def fresh_decision(run: Path, step: int, history: list[dict[str, Any]], policy: RetentionPolicy) -> set[int]:
    """What a pruner that scans the directory from scratch would keep now (the oracle: policy.decide)."""
    infos = [
        CheckpointInfo(path=f.path, step=f.step, metrics=metrics_from_history(history, f.step), complete=f.complete)
        for f in full_scan(run, step).candidates
    ]
    return set(decide(infos, policy).kept)


pruner_ops = st.lists(
    st.one_of(
        st.tuples(st.just("save"), st.one_of(st.none(), st.integers(0, 5))),  # the Trainer saves (eval_loss or none)
        st.tuples(st.just("reconcile"), st.none()),  # the background thread gets to run
        st.tuples(st.just("will_save"), st.none()),  # on_step_end with should_save: a reconciliation starts
        st.tuples(st.just("write"), st.integers(0, 30)),  # another process writes an older checkpoint
        st.tuples(st.just("rmtree"), st.integers(0, 30)),  # a user deletes one
        st.tuples(st.just("rmtree_recent"), st.integers(0, 3)),  # ... one of the newest (a witness, often)
        st.tuples(st.just("partial"), st.integers(0, 30)),  # an incomplete one appears
    ),
    max_size=30,
)


# training_args hands out a fresh copy per call: nothing carries over between examples
@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(ops=[("save", None), ("save", None), ("rmtree_recent", 0), ("save", None)])
@given(ops=pruner_ops)
def test_a_stale_index_never_deletes_what_a_fresh_scan_keeps(ops: list[tuple[str, Any]], training_args: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        for step in (1, 2, 3):
            write(run, f"checkpoint-{step}", complete=True)
        args = training_args(output_dir=str(run), eval_strategy="steps")
        cb = CheckpointPruner(
            keep_last=2, keep_best=1, monitor={"eval_loss": "min"}, keep_every_n_steps=5, strict=False, background=True
        )
        history: list[dict[str, Any]] = []
        state = TrainerState(global_step=3, log_history=history)
        cb.on_train_begin(args, state, TrainerControl())
        later = Later()
        cb._index._submitter = later
        cb._deleter = Deleter(background=False)
        policy = cb.policy(args)
        for op, value in ops:
            if op == "save":
                state.global_step += 1
                step = state.global_step
                if value is not None:
                    history.append({"eval_loss": float(value), "step": step})
                if not os.path.lexists(run / f"checkpoint-{step}"):
                    write(run, f"checkpoint-{step}", complete=True)
                must_keep = fresh_decision(run, step, history, policy)
                cb.on_save(args, state, TrainerControl())
                assert all((run / f"checkpoint-{s}").is_dir() for s in must_keep), must_keep
            elif op == "reconcile":
                later.run()
            elif op == "will_save":
                cb.on_step_end(args, state, TrainerControl(should_save=True))
            elif op == "rmtree_recent":
                path = run / f"checkpoint-{state.global_step - value}"
                if path.is_dir():
                    shutil.rmtree(path)
            elif value <= state.global_step:
                path = run / f"checkpoint-{value}"
                if op == "rmtree" and path.is_dir():
                    shutil.rmtree(path)
                elif op in ("write", "partial") and not path.exists():
                    write(run, path.name, complete=op == "write")
        # after a reconciliation (started, as the Trainer's flow makes it, before the save) and the save, the
        # pruner's candidates are exactly a fresh scan's
        cb.on_step_end(args, state, TrainerControl(should_save=True))
        later.run()
        state.global_step += 1
        write(run, f"checkpoint-{state.global_step}", complete=True)
        cb.on_save(args, state, TrainerControl())
        index = cb._index
        assert index.retention is not None
        expected = {f.step: f.complete for f in full_scan(run, state.global_step).candidates}
        assert {s: i.complete for s, i in index.retention.infos.items()} == expected
        # it pruned what a fresh scan would: a fresh decision keeps everything left
        assert cb.last_decision is not None and set(cb.last_decision.kept) == set(expected)
        assert fresh_decision(run, state.global_step, history, policy) == set(expected)
        cb.on_train_end(args, state, TrainerControl())


def test_a_deleted_witness_is_noticed_before_anything_is_deleted(tmp_path: Path, training_args: Any) -> None:
    # keep_last=2 over 1..4: the index does not know yet that the user deleted checkpoint-4 (no reconciliation
    # ran). Trusting it would delete checkpoint-3, which a fresh scan keeps (it is one of the two newest then).
    run = tmp_path / "run"
    run.mkdir()
    for step in (1, 2, 3, 4):
        write(run, f"checkpoint-{step}", complete=True)
    args = training_args(output_dir=str(run))
    cb = CheckpointPruner(keep_last=2, keep_best=0, background=True)
    state = TrainerState(global_step=4)
    cb.on_train_begin(args, state, TrainerControl())
    cb._index._submitter = Later()  # the background reconciliation never runs
    cb._deleter = Deleter(background=False)
    shutil.rmtree(run / "checkpoint-4")
    write(run, "checkpoint-5", complete=True)
    state.global_step = 5
    cb.on_save(args, state, TrainerControl())
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-3", "checkpoint-5"]
    assert cb._index.stale_rounds >= 1
    cb.on_train_end(args, state, TrainerControl())


def test_the_trainers_rotation_is_seen_at_the_save_that_follows_it(tmp_path: Path, training_args: Any) -> None:
    # save_total_limit: the Trainer deletes the oldest folders right before on_save; the pruner lists the (small)
    # directory then, without waiting for a background reconciliation
    run = tmp_path / "run"
    run.mkdir()
    for step in (1, 2, 3):
        write(run, f"checkpoint-{step}", complete=True)
    args = training_args(output_dir=str(run), save_total_limit=3)
    cb = CheckpointPruner(keep_last=3, keep_best=0, background=True)
    state = TrainerState(global_step=3)
    cb.on_train_begin(args, state, TrainerControl())
    cb._index._submitter = Later()  # no background reconciliation ever runs
    cb._deleter = Deleter(background=False)
    for step in (4, 5):
        write(run, f"checkpoint-{step}", complete=True)
        shutil.rmtree(run / f"checkpoint-{step - 3}")  # the Trainer's rotation
        state.global_step = step
        cb.on_save(args, state, TrainerControl())
        index = cb._index.retention
        assert index is not None
        assert sorted(index.infos) == [f.step for f in full_scan(run, step).candidates] == [step - 2, step - 1, step]
    assert cb._index.stale_rounds == 0
    cb.on_train_end(args, state, TrainerControl())
