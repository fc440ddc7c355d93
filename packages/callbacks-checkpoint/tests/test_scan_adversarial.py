"""Adversarial run-directory contents: only real ``checkpoint-N`` folders of this run are ever touched."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerControl, TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint, sort_checkpoints

from trainer_callbacks.checkpoint import CheckpointPruner
from trainer_callbacks.checkpoint.deletion import TRASH_NAME, trash_name
from trainer_callbacks.checkpoint.scan import CHECKPOINT_NAME, PREFIX, Scanner, is_complete


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (symlinks not followed) with a hash of file contents / link targets."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha1(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def run_prune(cb: CheckpointPruner, args: Any, step: int, log_history: list[dict[str, Any]] | None = None) -> None:
    state = TrainerState(global_step=step, log_history=list(log_history or []))
    control = TrainerControl()
    cb.on_train_begin(args, state, control)
    cb.on_save(args, state, control)
    cb.on_train_end(args, state, control)


def test_names_match_transformers() -> None:
    assert PREFIX == PREFIX_CHECKPOINT_DIR
    # our hidden trash names are invisible to every loader pattern transformers uses
    name = trash_name("checkpoint-12")
    assert TRASH_NAME.match(name)
    assert not re.match(r"^" + PREFIX_CHECKPOINT_DIR + r"\-(\d+)$", name)
    assert not Path(name).match(f"{PREFIX_CHECKPOINT_DIR}-*")


def test_trash_is_invisible_to_get_last_checkpoint_and_rotation(tmp_path: Path, write_ckpt: Any) -> None:
    write_ckpt(tmp_path, 3)
    (tmp_path / trash_name("checkpoint-9")).mkdir()
    assert get_last_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-3")
    assert sort_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-3")]


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        ("checkpoint-12", True),
        ("checkpoint-0", True),
        ("checkpoint-012", False),
        ("checkpoint-12-merged", False),
        ("checkpoint-", False),
        ("checkpoint-1\u0660", False),
        ("xcheckpoint-1", False),
        (".checkpoint-1", False),
        ("checkpoint-12 ", False),
        ("checkpoint-12\n", False),
    ],
)
def test_candidate_name_rule(name: str, ours: bool) -> None:
    assert bool(CHECKPOINT_NAME.match(name)) is ours


def test_adversarial_directory_is_left_alone(
    tmp_path: Path, training_args: Any, write_ckpt: Any, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    outside = tmp_path / "outside"
    for i in (1, 2):
        write_ckpt(outside, i)  # another run's checkpoints, outside the run dir
    for step in (1, 2, 3, 4, 5):
        write_ckpt(run, step)
    os.symlink(outside / "checkpoint-1", run / "checkpoint-6")  # a link to outside, named like a candidate
    os.symlink(outside / "checkpoint-2", run / "checkpoint-0")
    write_ckpt(run, 100).rename(run / "checkpoint-100-merged")  # Trainer's unanchored regex reads step 100
    write_ckpt(run, 7).rename(run / "checkpoint-007")  # non-canonical step
    (run / "checkpoint-8").write_text("a file, not a folder")
    (run / "notes-checkpoint-2").mkdir()
    write_ckpt(run, 50)  # a later run's leftover: step above the current global step
    before_outside = snapshot(outside)
    untouchable = {k: v for k, v in snapshot(run).items() if not re.match(r"checkpoint-[1-5](/|$)", k)}

    cb = CheckpointPruner(keep_last=1, keep_best=0)
    with caplog.at_level(logging.WARNING, logger="trainer_callbacks.checkpoint"):
        run_prune(cb, training_args(output_dir=str(run)), step=5)

    after = snapshot(run)
    assert snapshot(outside) == before_outside
    assert {k: v for k, v in after.items() if k in untouchable} == untouchable
    assert not any(re.match(r"checkpoint-[1-4](/|$)", k) for k in after)  # the real, older ones went
    assert "checkpoint-5" in after
    assert not any(TRASH_NAME.match(k.split("/")[0]) for k in after)  # nothing half-deleted left behind
    text = caplog.text
    assert "checkpoint-50" in text and "get_last_checkpoint" in text  # the hijacker is named
    assert "checkpoint-6" in text and "checkpoint-007" in text and "checkpoint-8" in text


def test_unreadable_checkpoint_is_left_alone(
    tmp_path: Path,
    training_args: Any,
    write_ckpt: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Tests run as root here, where chmod 000 does not stop reading; so when root, an unreadable
    # folder is simulated by making os.scandir raise PermissionError for it, as it would for a user.
    run = tmp_path / "run"
    for step in (1, 2, 3):
        write_ckpt(run, step)
    locked = run / "checkpoint-1"
    if os.geteuid() == 0:
        real = os.scandir

        def scandir(path: Any = ".") -> Any:
            if isinstance(path, str | os.PathLike) and Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)
    else:  # pragma: no cover - depends on who runs the tests
        locked.chmod(0)
    try:
        with caplog.at_level(logging.WARNING, logger="trainer_callbacks.checkpoint"):
            run_prune(CheckpointPruner(keep_last=1, keep_best=0), training_args(output_dir=str(run)), step=3)
    finally:
        locked.chmod(0o755)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-1", "checkpoint-3"]
    assert "cannot list checkpoint-1" in caplog.text


def test_completeness_rule() -> None:
    assert is_complete(["trainer_state.json", "model.safetensors", "optimizer.pt"])
    assert is_complete(["trainer_state.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"])
    assert is_complete(["trainer_state.json", "adapter_model.safetensors"])
    assert is_complete(["trainer_state.json", "pytorch_model_fsdp_0"])
    assert is_complete(["trainer_state.json", "global_step10", "latest"])
    assert not is_complete(["model.safetensors", "optimizer.pt"])  # trainer_state.json is written last
    assert not is_complete(["trainer_state.json", "optimizer.pt"])


def test_scanner_sorts_and_splits_by_global_step(tmp_path: Path, write_ckpt: Any) -> None:
    for step in (10, 2, 30, 20):
        write_ckpt(tmp_path, step, complete=step != 2)
    result = Scanner().scan(tmp_path, global_step=20)
    assert [(f.step, f.complete) for f in result.candidates] == [(2, False), (10, True), (20, True)]
    assert [f.step for f in result.newer] == [30]
    assert Scanner().scan(tmp_path / "missing", 5).candidates == []
