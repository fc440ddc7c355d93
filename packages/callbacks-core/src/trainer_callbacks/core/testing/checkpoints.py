"""Checkpoints of a simulated run: ``Trainer._save_checkpoint``, rotation and resume.

A :class:`CheckpointStore` knows which ``checkpoint-N`` folders exist in the run
directory. With ``write=True`` it writes real folders (``model.safetensors``,
``optimizer.pt``, ``scheduler.pt``, ``trainer_state.json``) on processes where
``args.should_save`` holds, and rotates them with transformers' own
``rotate_checkpoints``; otherwise it keeps the same folders in memory (a model of the
shared filesystem that the main process maintains) and rotates them with the same
rule. Either way a simulated run can be resumed from any of its checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

PREFIX = "checkpoint"
TRAINER_STATE_NAME = "trainer_state.json"
_STEP = re.compile(rf".*{PREFIX}-([0-9]+)")


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


def rotate_in_memory(paths: list[str], save_total_limit: int | None, best_model_checkpoint: str | None) -> list[str]:
    """The folders ``transformers.trainer_utils.rotate_checkpoints`` deletes (numeric order), without a filesystem."""
    if save_total_limit is None or save_total_limit <= 0:
        return []
    ordered = [p for _, p in sorted((checkpoint_step(p), p) for p in paths if checkpoint_step(p) is not None)]
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


class CheckpointStore:
    """The ``checkpoint-N`` folders of one run directory (see the module docstring)."""

    def __init__(self, run_dir: str, *, write: bool, folders: dict[str, SavedCheckpoint] | None = None) -> None:
        self.run_dir = run_dir
        self.write = write
        self.folders: dict[str, SavedCheckpoint] = dict(folders or {})
        if write and os.path.isdir(run_dir):
            for path in Path(run_dir).glob(f"{PREFIX}-*"):
                if path.is_dir() and str(path) not in self.folders:
                    self.folders[str(path)] = SavedCheckpoint(str(path), checkpoint_step(str(path)) or 0, None)

    def exists(self, path: str) -> bool:
        return path in self.folders or (self.write and os.path.isdir(path))

    def paths(self) -> list[str]:
        """Existing checkpoint folders, oldest step first."""
        return sorted(self.folders, key=lambda p: (checkpoint_step(p) or 0, p))

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
        saved = SavedCheckpoint(
            path=path,
            global_step=global_step,
            trainer_state=state_text,
            model_state=_clone(model.state_dict()),
            optimizer_state=None if save_only_model or optimizer is None else _clone(optimizer.state_dict()),
            scheduler_state=None if save_only_model or scheduler is None else _clone(scheduler.state_dict()),
        )
        self.folders[path] = saved
        if self.write and should_save:
            os.makedirs(path, exist_ok=True)
            _save_weights(model, path)
            if saved.optimizer_state is not None:
                torch.save(saved.optimizer_state, os.path.join(path, "optimizer.pt"))
            if saved.scheduler_state is not None:
                torch.save(saved.scheduler_state, os.path.join(path, "scheduler.pt"))
            if state_text is not None:
                with open(os.path.join(path, TRAINER_STATE_NAME), "w", encoding="utf-8") as f:
                    f.write(state_text)
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
            for path in rotate_in_memory(list(self.folders), save_total_limit, best_model_checkpoint):
                del self.folders[path]

    def keep_only(self, keep: str, *, should_save: bool) -> None:
        """``_finalize_training`` with ``save_total_limit=1``: delete every checkpoint but ``keep``."""
        for path in self.paths():
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
    """A :class:`SavedCheckpoint` from a folder on disk (written by the simulator or a real ``Trainer``)."""
    state_file = os.path.join(path, TRAINER_STATE_NAME)
    if not os.path.isfile(state_file):
        raise FileNotFoundError(f"{path} has no {TRAINER_STATE_NAME}: not a checkpoint folder")
    with open(state_file, encoding="utf-8") as f:
        text = f.read()
    saved = SavedCheckpoint(path=path, global_step=json.loads(text)["global_step"], trainer_state=text)
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
