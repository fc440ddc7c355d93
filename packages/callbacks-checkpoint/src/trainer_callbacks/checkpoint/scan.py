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

import bisect
import functools
import json
import os
import re
import time
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
    by a save that returned (or at least got past the weights). A DeepSpeed checkpoint (a
    ``global_stepN`` folder or a ``latest`` file) is complete only with both.
    """
    names = {e if isinstance(e, str) else e.name for e in entries}
    if TRAINER_STATE not in names:
        return False
    engine = [n for n in names if n.startswith("global_step")]
    if engine or "latest" in names:
        # DeepSpeed: resume loads the global_stepN folder that the ``latest`` tag file names (written
        # after the folder); without either, the Trainer's resume fails, so the checkpoint is not complete
        return bool(engine) and "latest" in names
    if names.intersection(WEIGHT_FILES):
        return True
    return any(n.startswith(WEIGHT_DIR_PREFIXES) or n.startswith("global_step") for n in names)


class Scanner:
    """An index of one run directory's ``checkpoint-N`` entries, kept up to date by scanning only what changed.

    Built by the first :meth:`scan`; at each later one:

    * the run directory's ``stat`` (device, inode, modification time in ns) is compared with the
      one recorded at the last listing. Unchanged, and recorded more than :attr:`RACY_SECONDS`
      after that modification time: nothing was added, removed or renamed, and no listing is done.
      (A modification within the same timestamp tick as the recorded listing would leave the time
      unchanged, hence the margin, as git does for its index.)
    * otherwise the directory is listed once (names and inode numbers, which ``readdir`` gives
      without a ``stat`` per entry), and only the entries that are new, gone, or whose inode
      changed (a folder replaced under the same name) are inspected or dropped;
    * folders that were incomplete or unreadable are inspected again (they may have been
      completed), as a fresh scan would. A complete folder is not re-listed: its completeness is
      remembered by ``(name, inode)``.

    The result equals :func:`full_scan` of the same directory (up to the order of ``foreign`` and
    ``unreadable``); ``tests/test_index.py`` checks that after any sequence of changes.
    """

    RACY_SECONDS = 2.0

    def __init__(self, now: Any = time.time) -> None:
        self._now = now
        self._complete: set[tuple[str, int]] = set()
        self._reset(None)
        self.listings = 0
        """How many times the directory was listed (the cost that grows with the number of entries)."""

    def _reset(self, run_dir: str | None) -> None:
        self._dir = run_dir
        self._stamp: tuple[int, int, int] | None = None
        self._inodes: dict[str, int] = {}
        """Every entry named ``checkpoint-...`` -> its inode number."""
        self._found: dict[str, Found] = {}
        self._steps: list[tuple[int, str]] = []
        """``(step, name)`` of :attr:`_found`, sorted."""
        self._foreign: set[str] = set()
        self._recheck: set[str] = set()
        """Incomplete, unreadable or vanished-while-inspected folders: inspected again at every scan."""
        self._unreadable: set[str] = set()

    def scan(self, run_dir: str | os.PathLike[str], global_step: int) -> ScanResult:
        key = os.path.normpath(os.path.abspath(run_dir))
        if key != self._dir:
            self._reset(key)
        try:
            st = os.stat(run_dir)
        except OSError:
            self._reset(key)
            return ScanResult()
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns)
        if stamp != self._stamp:
            try:
                self._relist(Path(run_dir))
            except (FileNotFoundError, NotADirectoryError):
                self._reset(key)
                return ScanResult()
            settled = self._now() - st.st_mtime_ns / 1e9 > self.RACY_SECONDS
            self._stamp = stamp if settled else None
        for name in sorted(self._recheck):
            self._inspect_name(Path(run_dir) / name, self._inodes.get(name))
        return self._result(global_step)

    def _relist(self, run_dir: Path) -> None:
        self.listings += 1
        current: dict[str, os.DirEntry[str]] = {}
        with os.scandir(run_dir) as it:
            for entry in it:
                if entry.name.startswith("checkpoint-"):
                    current[entry.name] = entry
        for name in [n for n in self._inodes if n not in current]:
            self._forget(name)
        for name, entry in current.items():
            try:
                inode = entry.inode()
            except OSError:
                continue
            if self._inodes.get(name) == inode:
                continue  # unchanged (an incomplete or unreadable one is inspected again by scan)
            self._forget(name)
            self._classify(entry, inode)

    def _forget(self, name: str) -> None:
        self._inodes.pop(name, None)
        self._foreign.discard(name)
        self._recheck.discard(name)
        self._unreadable.discard(name)
        found = self._found.pop(name, None)
        if found is not None:
            i = bisect.bisect_left(self._steps, (found.step, name))
            if i < len(self._steps) and self._steps[i] == (found.step, name):
                del self._steps[i]

    def _classify(self, entry: os.DirEntry[str], inode: int) -> None:
        name = entry.name
        match = CHECKPOINT_NAME.match(name)
        if match is None:
            if LOOSE_NAME.match(name):
                self._inodes[name] = inode
                self._foreign.add(name)
            return
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            return
        self._inodes[name] = inode
        if not is_dir:
            self._foreign.add(name)
            return
        self._inspect_name(Path(entry.path), inode)

    def _inspect_name(self, path: Path, inode: int | None) -> None:
        name = path.name
        if inode is None:
            return
        old = self._found.pop(name, None)
        if old is not None:
            i = bisect.bisect_left(self._steps, (old.step, name))
            if i < len(self._steps) and self._steps[i] == (old.step, name):
                del self._steps[i]
        self._recheck.discard(name)
        self._unreadable.discard(name)
        match = CHECKPOINT_NAME.match(name)
        assert match is not None
        step = int(match.group(1))
        key = (name, inode)
        if key in self._complete:
            complete = True
        else:
            try:
                with os.scandir(path) as it:
                    complete = is_complete(list(it))
            except FileNotFoundError:  # deleted under us (another process pruned it): look again next time
                self._recheck.add(name)
                return
            except OSError:
                self._unreadable.add(name)
                self._recheck.add(name)
                return
            if complete:
                self._complete.add(key)
            else:
                self._recheck.add(name)
        self._found[name] = Found(path, step, inode, complete)
        bisect.insort(self._steps, (step, name))

    def _result(self, global_step: int) -> ScanResult:
        split = bisect.bisect_right(self._steps, (global_step, "\uffff"))
        found = self._found
        return ScanResult(
            candidates=[found[n] for _, n in self._steps[:split]],
            newer=[found[n] for _, n in self._steps[split:]],
            foreign=sorted(self._foreign),
            unreadable=sorted(self._unreadable),
        )


def full_scan(run_dir: str | os.PathLike[str], global_step: int) -> ScanResult:
    """A scan from scratch, remembering nothing (the reference :class:`Scanner` must agree with)."""
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
        path = Path(entry.path)
        try:
            with os.scandir(path) as it:
                complete = is_complete(list(it))
        except FileNotFoundError:
            continue
        except OSError:
            result.unreadable.append(entry.name)
            continue
        found = Found(path, int(match.group(1)), inode, complete)
        (result.candidates if found.step <= global_step else result.newer).append(found)
    result.candidates.sort(key=lambda f: f.step)
    result.newer.sort(key=lambda f: f.step)
    result.foreign.sort()
    result.unreadable.sort()
    return result


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

    def _index(self, log_history: Sequence[Mapping[str, Any]]) -> set[int] | None:
        """Index the new entries; the steps whose metrics changed (``None``: everything may have)."""
        changed: set[int] | None = set()
        if id(log_history) != self._history_id or len(log_history) < self._seen:
            self._history_id, self._seen, self._by_step = id(log_history), 0, {}
            changed = None
        for entry in log_history[self._seen :]:
            step = entry.get("step")
            items = _eval_items(entry)
            if items and isinstance(step, int):
                self._by_step.setdefault(step, {}).update(items)
                if changed is not None:
                    changed.add(step)
        self._seen = len(log_history)
        return changed

    def changed_steps(self, log_history: Sequence[Mapping[str, Any]]) -> set[int] | None:
        """Bring the index up to date; the steps whose metrics changed since the last call (``None``: any)."""
        return self._index(log_history)

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
    return _normalised(a) == _normalised(b)


def _normalised(path: str | os.PathLike[str]) -> str:
    if os.path.isabs(path):
        return _normalised_absolute(os.fspath(path))
    return os.path.normpath(os.path.abspath(path))  # relative: depends on the working directory, not cached


@functools.lru_cache(maxsize=1 << 16)
def _normalised_absolute(path: str) -> str:
    # cached: a prune compares every candidate's path with the best and resume paths
    return os.path.normpath(path)
