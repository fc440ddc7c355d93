"""Paced freeing of the trash: the pure rule (an oracle), and the deleter driven by a fake clock (no real sleeps)."""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import TrainerControl, TrainerState

from trainer_callbacks.checkpoint import CheckpointPruner, deletion, pacing
from trainer_callbacks.checkpoint.deletion import TRASH_NAME, Deleter, Removal

MiB = 1 << 20
CHUNK = pacing.CHUNK


def oracle_pause(pending: int, seconds_left: float | None, free: int | None) -> float:
    """The rule as the module docstring states it, written independently."""
    if pending <= 0 or seconds_left is None or seconds_left <= 0:
        return 0.0
    if free is not None and free < 2 * pending:  # short: less than twice the trash is free
        return 0.0
    chunks = -(-pending // CHUNK)
    return min(0.5, seconds_left / chunks)


def inline_pruner(
    training_args: Any, run: Path, clock: Callable[[], float], sleep: Callable[[float], None]
) -> tuple[Any, CheckpointPruner, TrainerState]:
    """A pruner keeping the newest checkpoint of ``run`` (saves every 100 steps), deleting inline on the test's
    clock and sleep with plenty of disk, after its ``on_train_begin``: (args, pruner, state at step 0)."""
    args = training_args(output_dir=str(run), save_strategy="steps", save_steps=100)
    cb = CheckpointPruner(keep_last=1, keep_best=0, background=False)
    cb._deleter = Deleter(background=False, clock=clock, sleep=sleep, free_space=lambda p: 1 << 50)
    state = TrainerState(global_step=0, save_steps=100)
    cb.on_train_begin(args, state, TrainerControl())
    return args, cb, state


@given(
    pending=st.integers(min_value=-1, max_value=1 << 40),
    seconds_left=st.none() | st.floats(min_value=-10, max_value=1e5, allow_nan=False),
    free=st.none() | st.integers(min_value=0, max_value=1 << 42),
)
def test_pause_follows_the_stated_rule(pending: int, seconds_left: float | None, free: int | None) -> None:
    assert pacing.pause(pending, seconds_left, free) == pytest.approx(oracle_pause(pending, seconds_left, free))


@given(
    pending=st.integers(min_value=1, max_value=64 << 30),
    seconds_left=st.floats(min_value=0.001, max_value=1e4),
)
def test_the_pauses_of_a_whole_drain_fit_in_the_time_left(pending: int, seconds_left: float) -> None:
    # asked before every chunk with what is then left (the work itself taking no time)
    left, total = pending, 0.0
    while left > 0:
        left -= CHUNK
        wait = pacing.pause(left, seconds_left - total, None)
        total += wait
    assert total <= seconds_left * (1 + 1e-9)


def test_short_on_disk_means_no_pause_and_plenty_means_pacing() -> None:
    gib = 1 << 30
    assert pacing.pause(4 * gib, 100.0, free=7 * gib) == 0.0  # 7 GiB free < 2 x 4 GiB pending
    assert pacing.pause(4 * gib, 100.0, free=9 * gib) > 0.0
    assert pacing.pause(4 * gib, None, free=100 * gib) == 0.0  # no expectation yet: as fast as possible


def test_expected_interval() -> None:
    # 10 steps took 5 s; the Trainer saves every 20 steps: the next save in 10 s
    assert pacing.expected_interval(15.0, 10.0, 100, 110, 20) == pytest.approx(10.0)
    # save_steps unknown (epoch saves): the distance between the last two saves (10 steps, 5 s)
    assert pacing.expected_interval(15.0, 10.0, 100, 110, None) == pytest.approx(5.0)
    assert pacing.expected_interval(15.0, None, None, 110, 20) is None
    assert pacing.expected_interval(15.0, 10.0, 110, 110, 20) is None


class FakeTime:
    """A clock that only ``sleep`` and ``advance`` move."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def sparse_checkpoint(run: Path, step: int, size: int, small: int = 5) -> Path:
    """A checkpoint holding one large sparse file of ``size`` bytes (no disk used) and a few small files."""
    path = run / f"checkpoint-{step}"
    path.mkdir(parents=True)
    with open(path / "model.safetensors", "wb") as f:
        f.truncate(size)
    for i in range(small):
        (path / f"rng_state_{i}.pth").write_bytes(b"r" * 100)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return path


def test_the_trash_is_gone_by_the_next_save(tmp_path: Path, training_args: Any, monkeypatch: Any) -> None:
    fake = FakeTime()
    truncations: list[tuple[str, int]] = []
    real_truncate = os.truncate

    def recorded(path: Any, length: int) -> None:
        truncations.append((os.path.basename(path), length))
        real_truncate(path, length)

    monkeypatch.setattr(os, "truncate", recorded)
    run = tmp_path / "run"
    size = 20 * CHUNK + 123
    args, cb, state = inline_pruner(training_args, run, fake.clock, fake.sleep)
    save_times = []
    for step in (100, 200, 300):
        fake.now += 30.0  # 100 steps of training take 30 s: a save is expected every 30 s
        sparse_checkpoint(run, step, size)
        state.global_step = step
        save_times.append(fake.now)
        cb.on_save(args, state, TrainerControl())
        # the removal ran (inline) with its pauses; it ended half-way to the next save at the latest
        assert fake.now <= save_times[-1] + 15.0 + 1e-6
        assert sorted(p.name for p in run.iterdir()) == [f"checkpoint-{step}"]
    # the large file of each deleted checkpoint went down a chunk at a time: 20 truncations each
    assert [length for _, length in truncations[:20]] == [size - CHUNK * k for k in range(1, 21)]
    assert len(truncations) == 40
    assert fake.sleeps, "the removal was paced"
    assert all(s <= pacing.MAX_PAUSE for s in fake.sleeps)


def test_no_pacing_when_disk_space_is_short(tmp_path: Path) -> None:
    fake = FakeTime()
    trash = tmp_path / ".checkpoint-1.deleting-0"
    sparse_checkpoint(tmp_path, 1, 10 * CHUNK).rename(trash)

    # free space below twice the pending trash at every chunk (what a nearly full disk reports)
    def free_space(where: Path) -> int:
        return sum(f.stat().st_size for f in trash.rglob("*") if f.is_file()) // 2

    deleter = Deleter(background=False, clock=fake.clock, sleep=fake.sleep, free_space=free_space)
    deleter.start(0, 100)
    fake.now += 50.0
    deleter.submit(Removal(step=100, names=(trash.name,)), [trash])
    assert not trash.exists()
    assert fake.sleeps == []  # free space is always below twice what is still pending: freed at once


def test_a_file_with_other_links_is_unlinked_not_truncated(tmp_path: Path) -> None:
    trash = tmp_path / ".checkpoint-1.deleting-0"
    sparse_checkpoint(tmp_path, 1, 3 * CHUNK).rename(trash)
    os.link(trash / "model.safetensors", tmp_path / "elsewhere.safetensors")
    deleter = Deleter(background=False)
    deleter.submit(Removal(step=1, names=(trash.name,)), [trash])
    assert not trash.exists()
    assert (tmp_path / "elsewhere.safetensors").stat().st_size == 3 * CHUNK


class Crash(BaseException):
    """Stands for the process dying (not an Exception: nothing catches it)."""


def test_a_crash_mid_truncation_leaves_only_a_hidden_folder_that_the_next_start_removes(
    tmp_path: Path, training_args: Any
) -> None:
    fake = FakeTime()
    calls = 0

    def dying_sleep(seconds: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Crash
        fake.sleep(seconds)

    run = tmp_path / "run"
    size = 10 * CHUNK
    args, cb, state = inline_pruner(training_args, run, fake.clock, dying_sleep)
    for step in (100, 200):
        sparse_checkpoint(run, step, size)
    fake.now += 60.0
    state.global_step = 200
    with pytest.raises(Crash):
        cb.on_save(args, state, TrainerControl())
    names = sorted(p.name for p in run.iterdir())
    assert names[0].startswith(".checkpoint-100.deleting-") and TRASH_NAME.match(names[0])
    assert names[1:] == ["checkpoint-200"]
    left = run / names[0] / "model.safetensors"
    assert 0 < left.stat().st_size < size  # stopped mid-truncation
    # the next run in this folder removes it at its start
    fresh = CheckpointPruner(keep_last=1, keep_best=0, background=False)
    fresh.on_train_begin(args, TrainerState(global_step=200), TrainerControl())
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-200"]


def test_every_file_is_freed_and_counted(tmp_path: Path) -> None:
    trash = tmp_path / ".checkpoint-1.deleting-0"
    path = sparse_checkpoint(tmp_path, 1, 2 * CHUNK + 7, small=3)
    (path / "sub").mkdir()
    (path / "sub" / "x").write_bytes(b"x" * 10)
    os.symlink(tmp_path / "outside", path / "link")
    (tmp_path / "outside").write_bytes(b"o" * 5)
    expected = deletion.tree_size(path)
    path.rename(trash)
    removal = Deleter(background=False).submit(Removal(step=1, names=(trash.name,)), [trash]).result()
    assert not trash.exists() and removal.removed == 1 and removal.bytes_freed == expected
    assert (tmp_path / "outside").read_bytes() == b"o" * 5
    assert math.isclose(expected, 2 * CHUNK + 7 + 3 * 100 + 10 + len(json.dumps({"global_step": 1, "log_history": []})))


def test_a_drain_that_falls_behind_drops_its_pauses_and_is_done_by_the_next_save(
    tmp_path: Path, training_args: Any, monkeypatch: Any
) -> None:
    # A slow disk: every chunk's truncation takes 0.6 s of (fake) time. Once its target (half-way to the next
    # save) has passed the drain stops pausing, and the trash is still gone before the next save is expected
    # (inline here: background=False; the background deleter also changes threads, see the next test).
    fake = FakeTime()
    real_truncate = os.truncate
    truncated_at: list[float] = []

    def slow_truncate(path: Any, length: int) -> None:
        fake.now += 0.6
        truncated_at.append(fake.now)
        real_truncate(path, length)

    monkeypatch.setattr(os, "truncate", slow_truncate)
    slept_at: list[float] = []

    def sleep(seconds: float) -> None:
        slept_at.append(fake.now)
        fake.sleep(seconds)

    run = tmp_path / "run"
    size = 30 * CHUNK
    args, cb, state = inline_pruner(training_args, run, fake.clock, sleep)
    sparse_checkpoint(run, 100, size)
    fake.now += 30.0  # a save every 30 s: the target is 15 s after the save, the next save 30 s after it
    state.global_step = 100
    cb.on_save(args, state, TrainerControl())
    sparse_checkpoint(run, 200, size)
    fake.now += 30.0
    state.global_step = 200
    saved_at = fake.now
    cb.on_save(args, state, TrainerControl())
    target, next_save = saved_at + 15.0, saved_at + 30.0
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-200"]
    assert len(truncated_at) == 29  # 30 chunks: 29 truncations, then the unlink
    # the work alone (29 x 0.6 s = 17.4 s) outlasts the target: it was paced before it, never after it
    assert any(t < target for t in slept_at)
    assert all(t < target for t in slept_at)
    assert truncated_at[-1] > target
    assert fake.now <= next_save


def test_a_background_drain_behind_its_target_goes_to_a_normal_priority_thread(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # Issue 18 §3: the deleter thread runs at nice 19 (gentle while on time) and cannot renice itself back;
    # once behind, the rest of the batch is freed by a second thread at normal priority, without pauses.
    fake = FakeTime()
    real_truncate = os.truncate
    done: list[tuple[str, int, float]] = []  # (thread, its nice value, fake time the truncation started)

    def slow_truncate(path: Any, length: int) -> None:
        nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) if hasattr(os, "getpriority") else 0
        done.append((threading.current_thread().name, nice, fake.now))
        fake.now += 0.6
        real_truncate(path, length)

    monkeypatch.setattr(os, "truncate", slow_truncate)
    trash = tmp_path / ".checkpoint-1.deleting-0"
    sparse_checkpoint(tmp_path, 1, 30 * CHUNK).rename(trash)
    deleter = Deleter(background=True, process=False, clock=fake.clock, sleep=fake.sleep, free_space=lambda p: 1 << 50)
    deleter.start(0, 100)
    fake.now += 30.0  # 100 steps in 30 s, a save every 100: the target is 15 s after this save, the next save 30 s
    saved_at = fake.now
    removal = deleter.submit(Removal(step=100, names=(trash.name,)), [trash]).result()
    deleter.close()
    assert removal.removed == 1 and not trash.exists()
    assert fake.now <= saved_at + 30.0  # gone before the next save
    assert deleter.hand_offs == 1
    paced = [d for d in done if d[0].startswith("checkpoint-pruner_")]
    rest = [d for d in done if d[0].startswith("checkpoint-pruner-catch-up")]
    assert len(paced) + len(rest) == 29 and paced and rest
    assert all(t <= saved_at + 15.0 for _, _, t in paced)  # the low-priority thread worked only while on time
    assert all(t > saved_at + 15.0 for _, _, t in rest)
    if sys.platform.startswith("linux"):
        main_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert {n for _, n, _ in paced} == {19}
        assert {n for _, n, _ in rest} == {main_nice}
