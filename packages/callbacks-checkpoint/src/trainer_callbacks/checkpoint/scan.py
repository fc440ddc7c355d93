"""Finding the candidate checkpoints of a run directory, safely.

A candidate is a direct child of the run directory that

* is named exactly ``checkpoint-<step>`` with ``<step>`` written as the Trainer writes it
  (ASCII digits, no leading zeros): ``checkpoint-100-merged``, ``checkpoint-0100`` or
  non-ASCII digits are not candidates;
* is a real directory: symlinks are never followed (a link named ``checkpoint-7`` that points
  outside the run directory is left alone, and so is whatever it points to);
* can be listed (an unreadable folder is reported, not touched);
* has ``step <= current global step``. Higher steps (left by an earlier run in a reused
  directory) are reported separately: they are never deleted, but they would hijack
  ``get_last_checkpoint`` / ``resume_from_checkpoint=True``.

Nothing here deletes or writes anything.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "checkpoint"
"""transformers' ``PREFIX_CHECKPOINT_DIR``."""
CHECKPOINT_NAME = re.compile(r"\Acheckpoint-(0|[1-9][0-9]*)\Z", re.ASCII)
LOOSE_NAME = re.compile(r"^checkpoint-(\d+)$")
"""What ``transformers.trainer_utils.get_last_checkpoint`` matches (Unicode digits, leading zeros)."""
TRAINER_STATE = "trainer_state.json"
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "pytorch_model_fsdp.bin",
    "latest",  # DeepSpeed's tag file, written after its engine checkpoint
)
WEIGHT_DIR_PREFIXES = ("pytorch_model_fsdp_",)


@dataclass(frozen=True)
class Found:
    """A checkpoint folder as found on disk."""

    path: Path
    step: int
    inode: int
    complete: bool


@dataclass
class ScanResult:
    candidates: list[Found] = field(default_factory=list)
    newer: list[Found] = field(default_factory=list)
    """Real ``checkpoint-N`` folders with N above the current global step (never touched)."""
    foreign: list[str] = field(default_factory=list)
    """Names ``get_last_checkpoint`` would match that are not candidates (symlinks, files, ``checkpoint-007``)."""
    unreadable: list[str] = field(default_factory=list)
    """``checkpoint-N`` folders that could not be listed (left alone)."""


def is_complete(entries: Sequence[os.DirEntry[str]] | Sequence[str]) -> bool:
    """``trainer_state.json`` and model weights are among a checkpoint folder's entries.

    ``trainer_state.json`` is written near the end of the Trainer's ``_save_checkpoint``, after
    the weights, optimizer, scheduler and RNG state; so a checkpoint with both was fully written
    by a save that returned (or at least got past the weights).
    """
    names = {e if isinstance(e, str) else e.name for e in entries}
    if TRAINER_STATE not in names:
        return False
    if names.intersection(WEIGHT_FILES):
        return True
    return any(n.startswith(WEIGHT_DIR_PREFIXES) or n.startswith("global_step") for n in names)


class Scanner:
    """Scans one run directory; remembers which folders were complete (by inode) to stat less."""

    def __init__(self) -> None:
        self._complete: set[tuple[str, int]] = set()

    def scan(self, run_dir: str | os.PathLike[str], global_step: int) -> ScanResult:
        result = ScanResult()
        try:
            with os.scandir(run_dir) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return result
        for entry in entries:
            match = CHECKPOINT_NAME.match(entry.name)
            if match is None:
                if LOOSE_NAME.match(entry.name):
                    result.foreign.append(entry.name)
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                inode = entry.inode()
            except OSError:
                continue
            if not is_dir:
                result.foreign.append(entry.name)
                continue
            found = self._inspect(Path(entry.path), int(match.group(1)), inode, result)
            if found is None:
                continue
            (result.candidates if found.step <= global_step else result.newer).append(found)
        result.candidates.sort(key=lambda f: f.step)
        result.newer.sort(key=lambda f: f.step)
        return result

    def _inspect(self, path: Path, step: int, inode: int, result: ScanResult) -> Found | None:
        key = (path.name, inode)
        if key in self._complete:
            return Found(path, step, inode, True)
        try:
            with os.scandir(path) as it:
                complete = is_complete(list(it))
        except FileNotFoundError:  # deleted under us (another process pruned it)
            return None
        except OSError:
            result.unreadable.append(path.name)
            return None
        if complete:
            self._complete.add(key)
        return Found(path, step, inode, complete)


def _eval_items(entry: Mapping[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in entry.items()
        if key.startswith("eval_") and isinstance(value, int | float) and not isinstance(value, bool)
    }


def metrics_from_history(log_history: Sequence[Mapping[str, Any]], step: int) -> dict[str, float]:
    """The evaluation metrics logged at ``step`` (every ``eval_*`` key of the entries at that step; later wins)."""
    out: dict[str, float] = {}
    for entry in log_history:
        if entry.get("step") == step:
            out.update(_eval_items(entry))
    return out


def metrics_from_checkpoint(path: Path, step: int) -> dict[str, float]:
    """The evaluation at ``step`` recorded in the checkpoint's own ``trainer_state.json`` (empty if unreadable)."""
    try:
        with (path / TRAINER_STATE).open(encoding="utf-8") as handle:
            history = json.load(handle).get("log_history", [])
    except (OSError, ValueError, AttributeError):
        return {}
    return metrics_from_history(history if isinstance(history, list) else [], step)


class MetricsReader:
    """A checkpoint's metrics: from ``state.log_history``, else from its ``trainer_state.json``.

    The history is indexed by step incrementally (it only grows during a run), so a prune costs
    time in the number of new entries, not in the length of the run.
    """

    def __init__(self) -> None:
        self._from_files: dict[tuple[str, int], dict[str, float]] = {}
        self._history_id: int | None = None
        self._seen = 0
        self._by_step: dict[int, dict[str, float]] = {}

    def _index(self, log_history: Sequence[Mapping[str, Any]]) -> None:
        if id(log_history) != self._history_id or len(log_history) < self._seen:
            self._history_id, self._seen, self._by_step = id(log_history), 0, {}
        for entry in log_history[self._seen :]:
            step = entry.get("step")
            items = _eval_items(entry)
            if items and isinstance(step, int):
                self._by_step.setdefault(step, {}).update(items)
        self._seen = len(log_history)

    def __call__(self, found: Found, log_history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        self._index(log_history)
        metrics = self._by_step.get(found.step)
        if metrics or not found.complete:
            return dict(metrics or {})
        key = (found.path.name, found.inode)
        if key not in self._from_files:
            self._from_files[key] = metrics_from_checkpoint(found.path, found.step)
        return dict(self._from_files[key])


def same_path(a: str | os.PathLike[str] | None, b: str | os.PathLike[str] | None) -> bool:
    """Whether two paths name the same place (absolute, normalised; symlinks not resolved)."""
    if a is None or b is None:
        return False
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))
