"""The background deleter's child process (issue 18 §1): it frees the trash so that training never waits for the
GIL behind a starved low-priority thread; nothing claimed is left behind when it cannot start or dies."""

from __future__ import annotations

import copy
import gc
import io
import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from trainer_callbacks.checkpoint import deletion, pacing
from trainer_callbacks.checkpoint.deleter_process import serve
from trainer_callbacks.checkpoint.deletion import Deleter, Removal, claim, tree_size

CHUNKS = 40
"""Chunks of the large file: paced with a target an hour away, their pauses alone would take 40 x 0.5 s."""


def trash(run: Path, step: int, chunks: int = CHUNKS) -> Path:
    """A claimed checkpoint holding one sparse file of ``chunks`` chunks (no disk used) and a few small files."""
    path = run / f"checkpoint-{step}"
    path.mkdir(parents=True)
    with open(path / "model.safetensors", "wb") as f:
        f.truncate(chunks * pacing.CHUNK)
    for i in range(3):
        (path / f"rng_state_{i}.pth").write_bytes(b"r" * (100 + i))
    hidden = claim(path)
    assert hidden is not None
    return hidden


def slow_deleter() -> Deleter:
    """A child-process deleter whose next batch is paced to be done in half an hour (pauses of 0.5 s per chunk)."""
    deleter = Deleter(background=True)
    deleter.start(0, 100)
    deleter._last = (time.monotonic() - 3600.0, 0)  # the last 100 steps took an hour
    return deleter


def record_local_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make this process's own freeing functions record their use (the child has its own copies)."""
    used: list[str] = []
    for name in ("free_files", "remove_tree"):
        real = getattr(deletion, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            used.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(deletion, name, spy)
    return used


def test_background_batches_are_freed_by_a_child_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    used = record_local_work(monkeypatch)
    hidden = trash(tmp_path, 1, chunks=3)
    size = tree_size(hidden)
    deleter = Deleter(background=True)
    removal = deleter.submit(Removal(step=1, names=(hidden.name,)), [hidden]).result()
    pid = deleter.worker_pid
    child = deleter._child
    deleter.close()
    assert pid is not None and pid != os.getpid()
    assert (removal.removed, removal.bytes_freed, removal.not_removed) == (1, size, [])
    assert not hidden.exists()
    assert used == []  # nothing was freed by this process
    assert child._proc.wait(timeout=60) == 0  # close() let the child exit by itself


def test_wait_makes_the_child_stop_pausing(tmp_path: Path) -> None:
    deleter = slow_deleter()
    hidden = trash(tmp_path, 100)
    future = deleter.submit(Removal(step=100, names=(hidden.name,)), [hidden])
    deleter.wait()  # train end: no more pauses
    removal = future.result()
    deleter.close()
    assert removal.removed == 1 and not hidden.exists()
    # paced, its pauses would add up to CHUNKS x MAX_PAUSE; after the hurry it asked for none
    assert removal.paused < CHUNKS * pacing.MAX_PAUSE / 2


def test_a_child_that_dies_leaves_nothing_behind(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    deleter = slow_deleter()
    first, second = trash(tmp_path, 100), trash(tmp_path, 200, chunks=2)
    future = deleter.submit(Removal(step=100, names=(first.name,)), [first])
    pid = deleter.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING):
        deleter.wait()
        removal = future.result()
        assert removal.removed == 1 and not first.exists()  # this process finished the batch
        assert "exited (code -9)" in caplog.text and "this process frees it instead" in caplog.text
        # and the next batch goes to this process's threads
        later = deleter.submit(Removal(step=200, names=(second.name,)), [second]).result()
        deleter.close()
    assert deleter.worker_pid is None
    assert later.removed == 1 and not second.exists()
    assert caplog.text.count("this process frees it instead") == 1


@pytest.mark.parametrize("executable", ["", "false"], ids=["no sys.executable", "not python"])
def test_where_no_child_can_run_this_process_deletes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executable: str
) -> None:
    if executable:
        found = shutil.which(executable)
        if found is None:  # pragma: no cover - every POSIX system has false
            pytest.skip("no `false` program")
        executable = found
    monkeypatch.setattr(sys, "executable", executable)
    hidden = trash(tmp_path, 1, chunks=2)
    deleter = Deleter(background=True)
    removal = deleter.submit(Removal(step=1, names=(hidden.name,)), [hidden]).result()
    deleter.close()
    assert removal.removed == 1 and not hidden.exists()
    assert deleter.worker_pid is None


def test_the_child_reports_failures_and_forwards_its_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the child's side of the protocol, run here (inline deleter: each batch is done before the next line is read)
    hidden = trash(tmp_path, 1, chunks=1)
    fine = trash(tmp_path, 2, chunks=1)
    fine_size = tree_size(fine)

    real = shutil.rmtree

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if os.fspath(path) != os.fspath(fine):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    lines = [
        {"op": "free", "id": 7, "step": 1, "names": [hidden.name], "paths": [str(hidden)], "measure": True,
         "dry_run": False, "report": True, "seconds_left": None},
        {"op": "free", "id": 8, "step": 2, "names": [fine.name], "paths": [str(fine)], "measure": True,
         "dry_run": False, "report": True, "seconds_left": None},
        {"op": "exit"},
        {"op": "free", "id": 9, "step": 3, "names": [], "paths": [], "measure": True, "dry_run": False,
         "report": True, "seconds_left": None},
    ]  # fmt: skip
    out = io.StringIO()
    before = logging.getLogger("trainer_callbacks.checkpoint").propagate
    serve(io.StringIO("".join(json.dumps(m) + "\n" for m in lines)), out, Deleter(background=False))
    sent = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sent[0] == {"ready": os.getpid()}
    logs = [m for m in sent if "log" in m]
    assert len(logs) == 1 and logs[0]["log"] == logging.WARNING and "could not be removed" in logs[0]["message"]
    results = {m["id"]: m for m in sent if "id" in m}
    assert sorted(results) == [7, 8]  # nothing after exit
    assert (results[7]["removed"], results[7]["not_removed"]) == (0, [hidden.name])
    assert (results[8]["removed"], results[8]["bytes_freed"]) == (1, fine_size)
    assert hidden.exists() and not fine.exists()
    assert logging.getLogger("trainer_callbacks.checkpoint").propagate == before  # the test process's logging restored


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are read from /proc (Linux)")
def test_the_child_paces_on_a_nice_19_thread_and_leaves_this_process_alone(tmp_path: Path) -> None:
    def nice_values(pid: int) -> list[int]:
        values = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except FileNotFoundError:  # a thread that ended meanwhile (an earlier child's reader, exiting)
                continue
            values.append(int(stat[stat.rindex(")") + 2 :].split()[16]))  # field 19: nice
        return sorted(values)

    base = os.getpriority(os.PRIO_PROCESS, 0)  # the test run's own nice value (`nice pytest`), which the child inherits
    if base >= 19:
        pytest.skip("the test run is already at nice 19")
    ours = nice_values(os.getpid())
    deleter = Deleter(background=True)
    hidden = trash(tmp_path, 1, chunks=1)
    deleter.submit(Removal(step=1, names=(hidden.name,)), [hidden]).result()
    pid = deleter.worker_pid
    assert pid is not None
    child = nice_values(pid)
    deleter.close()
    assert child.count(19) == 1  # the pacing thread only
    assert child.count(base) == len(child) - 1  # the thread that reads the pipe, the catch-up thread: as started
    assert 19 not in ours and nice_values(os.getpid()).count(19) == 0  # no thread of this process was niced


def test_an_injected_clock_needs_the_in_process_deleter() -> None:
    with pytest.raises(ValueError, match="process=False"):
        Deleter(background=True, clock=lambda: 0.0)
    assert Deleter(background=True, process=False, clock=lambda: 0.0).process is False
    assert Deleter(background=False, clock=lambda: 0.0).process is False  # inline: nothing to send anywhere


def test_a_copied_deleter_starts_its_own_child(tmp_path: Path) -> None:
    # optuna and `copy.deepcopy(trainer.callback_handler)` copy callbacks: a pipe to a child cannot travel
    deleter = Deleter(background=True)
    first = trash(tmp_path, 1, chunks=1)
    deleter.submit(Removal(step=1, names=(first.name,)), [first]).result()
    twin = copy.deepcopy(deleter)
    second = trash(tmp_path, 2, chunks=1)
    assert twin.worker_pid is None and twin.process  # fresh: nothing started yet
    twin.submit(Removal(step=2, names=(second.name,)), [second]).result()
    pids = (deleter.worker_pid, twin.worker_pid)
    deleter.close()
    twin.close()
    assert None not in pids and pids[0] != pids[1]
    assert not first.exists() and not second.exists()


def test_a_dropped_deleter_lets_its_child_exit(tmp_path: Path) -> None:
    # a run that died without on_train_end, in a notebook that goes on: its child must not linger
    deleter = Deleter(background=True)
    deleter.start(0)  # train begin starts the child
    proc = deleter._child._proc
    hidden = trash(tmp_path, 1, chunks=1)
    deleter.submit(Removal(step=1, names=(hidden.name,)), [hidden]).result()
    del deleter
    gc.collect()
    assert proc.wait(timeout=60) == 0
    assert not hidden.exists()
