"""Checkpoints of a simulated run: ``Trainer._save_checkpoint``, rotation and resume.

A :class:`CheckpointStore` knows which ``checkpoint-N`` folders exist in the run
directory. With ``write=True`` it writes real folders (``model.safetensors``,
``optimizer.pt``, ``scheduler.pt``, ``trainer_state.json``) on processes where
``args.should_save`` holds, and rotates them with transformers' own
``rotate_checkpoints``; otherwise it keeps the same folders in memory (a model of the
shared filesystem that the main process maintains) and rotates them with the same
rule (:func:`rotate_in_memory`). Either way a simulated run can be resumed from any of
its checkpoints.

Which folder rotation deletes depends on time. ``Trainer._save_checkpoint`` calls
``rotate_checkpoints(use_mtime=True)``: the folders are ordered by their modification
time (a folder's mtime changes when an entry is created in it, not when a file in it is
overwritten), except that when the newest and the oldest are less than a second apart
transformers falls back to the step number. So when a folder holds an earlier run's
checkpoints (a second ``train()`` with fewer steps, a resume with a lower ``max_steps``)
"newest" is not "highest step", and a real run on a tiny model that saves within one
second behaves differently from the same run on a real model. The simulator models a
real run: a save that creates a folder, or an entry in it, gives that folder a
modification time at least one second after every other checkpoint folder
(:func:`next_mtime`; on disk it sets it with ``os.utime``). A save that only
overwrites files leaves the folder's time as it was, as on disk. To compare a real
``Trainer`` with the simulator under the same clock, run it inside
:func:`~trainer_callbacks.testing.real_trainer.checkpoint_saves_a_second_apart`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

PREFIX = "checkpoint"
TRAINER_STATE_NAME = "trainer_state.json"
_STEP = re.compile(rf".*{PREFIX}-([0-9]+)")
_LAST = re.compile(rf"^{PREFIX}\-(\d+)$")  # get_last_checkpoint's (anchored) pattern
MTIME_RESOLUTION_S = 1.0
"""``sort_checkpoints`` falls back to step order when all mtimes lie within this many seconds."""
WEIGHTS_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
"""The files ``Trainer._load_from_checkpoint`` accepts as a checkpoint's weights."""


def checkpoint_step(path: str) -> int | None:
    """The step number in a checkpoint folder name, as ``sort_checkpoints`` reads it (``None``: not one)."""
    match = _STEP.match(path)
    return int(match.group(1)) if match else None


def trainer_state_json(state: Any) -> str:
    """The text ``TrainerState.save_to_json`` writes."""
    return json.dumps(dataclasses.asdict(state), indent=2, sort_keys=True) + "\n"


@dataclass
class SavedCheckpoint:
    """One checkpoint of a simulated run (pass it, or its ``path``, as ``resume_from_checkpoint``)."""

    path: str
    global_step: int
    trainer_state: str | None
    """The ``trainer_state.json`` text; ``None`` where this process did not write it (``should_save`` false)."""
    model_state: dict[str, torch.Tensor] | None = None
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    folders: dict[str, SavedCheckpoint] = field(default_factory=dict, repr=False)
    """The checkpoints that existed next to this one when its run ended (memory mode resume)."""
    mtime: float = 0.0
    """The folder's modification time (simulated in memory mode, see the module docstring)."""
    files: frozenset[str] = frozenset()
    """The kinds of file the folder holds (``model``, ``optimizer``, ...): a save adding one changes ``mtime``."""

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def load_state(self) -> Any:
        """A ``TrainerState`` from this checkpoint (as ``TrainerState.load_from_json``)."""
        from transformers.trainer_callback import TrainerState

        if self.trainer_state is None:
            raise FileNotFoundError(f"{self.path}: this process did not write trainer_state.json (should_save=False)")
        return TrainerState(**json.loads(self.trainer_state))


def _clone(obj: Any) -> Any:
    if torch.is_tensor(obj):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_clone(v) for v in obj)
    return obj


def sort_checkpoints_in_memory(paths: Iterable[str], mtimes: Mapping[str, float] | None = None) -> list[str]:
    """``transformers.trainer_utils.sort_checkpoints`` without a filesystem, oldest first.

    With ``mtimes`` (``use_mtime=True``): by modification time, unless the newest and the oldest
    are less than :data:`MTIME_RESOLUTION_S` apart; then, as without ``mtimes``, by the step in
    the name (names without one are left out, as transformers leaves them out).
    """
    paths = list(paths)
    if mtimes is not None:
        by_time = sorted((mtimes[p], p) for p in paths)
        if len(by_time) <= 1 or by_time[-1][0] - by_time[0][0] >= MTIME_RESOLUTION_S:
            return [p for _, p in by_time]
    numbered = [(checkpoint_step(p), p) for p in paths]
    return [p for _, p in sorted((step, p) for step, p in numbered if step is not None)]


def rotate_in_memory(
    paths: list[str],
    save_total_limit: int | None,
    best_model_checkpoint: str | None,
    mtimes: Mapping[str, float] | None = None,
) -> list[str]:
    """The folders ``transformers.trainer_utils.rotate_checkpoints`` deletes, without a filesystem.

    ``mtimes`` (path -> modification time) given: as ``use_mtime=True`` (what the Trainer passes);
    else in step order (``use_mtime=False``).
    """
    if save_total_limit is None or save_total_limit <= 0:
        return []
    ordered = sort_checkpoints_in_memory(paths, mtimes)
    if len(ordered) <= save_total_limit:
        return []
    protected = {ordered[-1]}
    if best_model_checkpoint is not None:
        protected.add(str(Path(best_model_checkpoint)))
    num_to_keep = max(save_total_limit, len(protected))
    remaining = len(ordered)
    deleted = []
    for path in ordered:
        if remaining <= num_to_keep:
            break
        if path not in protected:
            deleted.append(path)
            remaining -= 1
    return deleted


def last_checkpoint(paths: Iterable[str]) -> str | None:
    """``transformers.trainer_utils.get_last_checkpoint`` over ``paths``: the highest ``checkpoint-N`` (exact name)."""
    steps = [(int(m.group(1)), p) for p in paths if (m := _LAST.search(os.path.basename(p)))]
    return max(steps)[1] if steps else None


def next_mtime(others: Iterable[float], now: float | None = None) -> float:
    """The mtime the simulator gives a folder a save changed: a second after ``others``, and at least ``now``."""
    candidates = [t + MTIME_RESOLUTION_S for t in others]
    if now is not None:
        candidates.append(now)
    return max(candidates, default=MTIME_RESOLUTION_S)


def folder_mtime_ns(path: str) -> int | None:
    """The modification time of the folder ``path`` in ns (``None``: no such folder)."""
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def stamp_after_save(folder: str, mtime_ns_before: int | None) -> None:
    """After a save into ``folder``: if it changed the folder's mtime, move it a second past its siblings.

    The siblings are the other ``checkpoint-*`` folders of its parent. Used on disk by the
    simulator and, in differential tests, by the real ``Trainer``
    (:func:`~trainer_callbacks.testing.real_trainer.checkpoint_saves_a_second_apart`).
    """
    if not os.path.isdir(folder) or folder_mtime_ns(folder) == mtime_ns_before:
        return
    parent = Path(folder).parent
    others = [os.path.getmtime(p) for p in parent.glob(f"{PREFIX}-*") if p.is_dir() and str(p) != str(Path(folder))]
    stamp = next_mtime(others, time.time())
    os.utime(folder, (stamp, stamp))


class CheckpointStore:
    """The ``checkpoint-N`` folders of one run directory (see the module docstring)."""

    def __init__(self, run_dir: str, *, write: bool, folders: dict[str, SavedCheckpoint] | None = None) -> None:
        self.run_dir = run_dir
        self.write = write
        self.folders: dict[str, SavedCheckpoint] = dict(folders or {})
        if write and os.path.isdir(run_dir):
            for path in Path(run_dir).glob(f"{PREFIX}-*"):
                if path.is_dir() and str(path) not in self.folders:
                    self.folders[str(path)] = SavedCheckpoint(
                        str(path), checkpoint_step(str(path)) or 0, None, mtime=os.path.getmtime(path)
                    )

    def exists(self, path: str) -> bool:
        return path in self.folders or (self.write and os.path.isdir(path))

    def paths(self) -> list[str]:
        """Existing checkpoint folders, oldest step first."""
        return sorted(self.folders, key=lambda p: (checkpoint_step(p) or 0, p))

    def last(self) -> str | None:
        """The folder ``resume_from_checkpoint=True`` resumes from (``get_last_checkpoint``)."""
        return last_checkpoint(self.folders)

    def save(
        self,
        path: str,
        global_step: int,
        state_text: str | None,
        *,
        should_save: bool,
        model: Any,
        optimizer: Any,
        scheduler: Any,
        save_only_model: bool,
    ) -> SavedCheckpoint:
        """Record (and with ``write``, write) the checkpoint folder ``path``."""
        files = {"model", "training_args"}
        if not save_only_model:
            files |= {"optimizer", "scheduler", "rng_state"}
        if state_text is not None:
            files.add("trainer_state")
        before = self.folders.get(path)
        if before is not None and files <= before.files:
            mtime, files = before.mtime, set(before.files)  # files overwritten: the folder's mtime stays
        else:
            mtime = next_mtime(f.mtime for p, f in self.folders.items() if p != path)
            if before is not None:
                files |= before.files
        saved = SavedCheckpoint(
            path=path,
            global_step=global_step,
            trainer_state=state_text,
            model_state=_clone(model.state_dict()),
            optimizer_state=None if save_only_model or optimizer is None else _clone(optimizer.state_dict()),
            scheduler_state=None if save_only_model or scheduler is None else _clone(scheduler.state_dict()),
            mtime=mtime,
            files=frozenset(files),
        )
        self.folders[path] = saved
        if self.write and should_save:
            mtime_ns_before = folder_mtime_ns(path)
            os.makedirs(path, exist_ok=True)
            _save_weights(model, path)
            if saved.optimizer_state is not None:
                torch.save(saved.optimizer_state, os.path.join(path, "optimizer.pt"))
            if saved.scheduler_state is not None:
                torch.save(saved.scheduler_state, os.path.join(path, "scheduler.pt"))
            if state_text is not None:
                with open(os.path.join(path, TRAINER_STATE_NAME), "w", encoding="utf-8") as f:
                    f.write(state_text)
            stamp_after_save(path, mtime_ns_before)
            saved.mtime = os.path.getmtime(path)
        return saved

    def rotate(self, save_total_limit: int | None, best_model_checkpoint: str | None, *, should_save: bool) -> None:
        """``rotate_checkpoints(..., use_mtime=True)`` as ``Trainer._save_checkpoint`` calls it."""
        if self.write and should_save:
            from transformers.trainer_utils import rotate_checkpoints

            rotate_checkpoints(
                output_dir=self.run_dir,
                save_total_limit=save_total_limit,
                best_model_checkpoint=best_model_checkpoint,
                use_mtime=True,
            )
            for path in list(self.folders):
                if not os.path.isdir(path):
                    del self.folders[path]
        else:
            mtimes = {p: f.mtime for p, f in self.folders.items()}
            for path in rotate_in_memory(list(self.folders), save_total_limit, best_model_checkpoint, mtimes):
                del self.folders[path]

    def keep_only(self, keep: str, *, should_save: bool) -> None:
        """``_finalize_training`` with ``save_total_limit=1``: delete every checkpoint but ``keep``."""
        for path in sort_checkpoints_in_memory(self.folders):
            if os.path.normpath(path) != os.path.normpath(keep):
                if self.write and should_save:
                    shutil.rmtree(path, ignore_errors=True)
                del self.folders[path]

    def snapshot(self) -> dict[str, SavedCheckpoint]:
        return dict(self.folders)

    def load(self, source: str | SavedCheckpoint) -> SavedCheckpoint:
        """The checkpoint to resume from: one of ours, or a folder on disk (also a real Trainer's)."""
        if isinstance(source, SavedCheckpoint):
            return source
        known = self.folders.get(source)
        if known is not None and known.trainer_state is not None:
            return known
        return read_checkpoint(source)


def read_checkpoint(path: str) -> SavedCheckpoint:
    """A :class:`SavedCheckpoint` from a folder on disk (written by the simulator or a real ``Trainer``).

    Raises as ``Trainer.train(resume_from_checkpoint=path)`` does: ``ValueError("Can't find a valid
    checkpoint at ...")`` when the folder (or any weights file in it) is missing, then
    ``FileNotFoundError`` when it has weights but no ``trainer_state.json``.
    """
    if not any(os.path.isfile(os.path.join(path, name)) for name in WEIGHTS_FILES):
        raise ValueError(f"Can't find a valid checkpoint at {path}")
    state_file = os.path.join(path, TRAINER_STATE_NAME)
    if not os.path.isfile(state_file):
        raise FileNotFoundError(f"{path} has no {TRAINER_STATE_NAME}: not a checkpoint folder")
    with open(state_file, encoding="utf-8") as f:
        text = f.read()
    saved = SavedCheckpoint(
        path=path, global_step=json.loads(text)["global_step"], trainer_state=text, mtime=os.path.getmtime(path)
    )
    weights = os.path.join(path, "model.safetensors")
    if os.path.isfile(weights):
        from safetensors.torch import load_file

        saved.model_state = load_file(weights)
    for attr, name in (("optimizer_state", "optimizer.pt"), ("scheduler_state", "scheduler.pt")):
        file = os.path.join(path, name)
        if os.path.isfile(file):
            setattr(saved, attr, torch.load(file, weights_only=True))
    return saved


def _save_weights(model: Any, path: str) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    try:
        save_file(state, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    except RuntimeError:  # shared tensors: safetensors refuses them
        torch.save(state, os.path.join(path, "pytorch_model.bin"))
