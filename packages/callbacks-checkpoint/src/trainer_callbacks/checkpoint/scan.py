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
import stat
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
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


Ident = tuple[int, int]
"""An entry's identity: inode number and status-change time (ns). A folder deleted and written again
under the same name may get the same inode number back, never the same change time unless within the
file system's timestamp tick (hence the racy rule of :class:`Scanner`)."""
Outcome = Found | str
"""What inspecting one ``checkpoint-...`` entry found: a candidate folder (complete or not), or one of
``"foreign"`` (a file, a symlink, a non-canonical name), ``"unreadable"``, ``"vanished"`` (gone while
it was inspected)."""


@dataclass
class Delta:
    """What a reconciliation found changed, relative to the index it was computed against (:meth:`Scanner.compute`).

    Computed from a snapshot, possibly on another thread; :meth:`Scanner.apply` applies it, except
    for the names the index changed itself since the snapshot (their entries are newer than these).
    """

    run_dir: str
    generation: int
    stamp: tuple[int, int, int] | None = None
    """The directory's ``stat`` when it was listed, if settled (an unchanged stamp then skips the next listing)."""
    missing: bool = False
    """The run directory itself is gone."""
    gone: list[str] = field(default_factory=list)
    inspected: list[tuple[str, Ident, Outcome]] = field(default_factory=list)
    """``(name, identity, outcome)`` of each new, changed or re-checked entry."""


@dataclass
class Snapshot:
    """What :meth:`Scanner.compute` needs of the index (copied under its lock when it goes to another thread)."""

    run_dir: str
    path: str
    """The run directory as the caller names it (the paths of what is found start with it)."""
    generation: int
    stamp: tuple[int, int, int] | None
    idents: Mapping[str, Ident]
    recheck: AbstractSet[str]


@dataclass
class Changes:
    """What changed in the index since the last :meth:`Scanner.changes`."""

    found: dict[str, Found | None] = field(default_factory=dict)
    """Name -> its candidate folder now, or ``None`` if it is no longer one (gone, unreadable, replaced by a file)."""
    foreign: set[str] = field(default_factory=set)
    """Names newly found that ``get_last_checkpoint`` would match but are not candidates."""
    unreadable: set[str] = field(default_factory=set)
    """``checkpoint-N`` folders newly found unreadable."""


class Scanner:
    """An index of one run directory's ``checkpoint-N`` entries, kept up to date by looking only at what changed.

    Built by the first :meth:`scan` (or :meth:`update`); kept up to date in three ways:

    * :meth:`inspect` looks at named entries only (the folder the Trainer just saved, a folder the
      pruner is about to rely on): an ``lstat``, and a listing of a new, changed or incomplete
      folder; :meth:`forget` drops names the pruner renamed aside. Neither costs anything that
      grows with the number of checkpoints.
    * a reconciliation (:meth:`update`; or :meth:`snapshot`, then :meth:`compute` on another thread,
      then :meth:`apply`) notices everything else: another process, a user deleting folders, the
      Trainer's own rotation. The run directory's ``stat`` (device, inode, modification time in ns)
      is compared with the one recorded at the last listing. Unchanged, and recorded more than
      :attr:`RACY_SECONDS` after that modification time: nothing was added, removed or renamed, and
      no listing is done. (A modification within the same timestamp tick as the recorded listing
      would leave the time unchanged, hence the margin, as git does for its index.) Otherwise the
      directory is listed once, each ``checkpoint-...`` entry's identity (inode, change time) is
      read, and only the entries that are new, gone or changed are inspected or dropped.
    * folders that were incomplete or unreadable are inspected again at every reconciliation (they
      may have been completed), as a fresh scan would, and so are entries whose change time was
      within :attr:`RACY_SECONDS` of when they were recorded (a folder replaced within the same
      timestamp tick can have the same identity). A complete folder is not re-listed: its
      completeness is remembered by name and identity.

    :meth:`changes` hands out what changed since its last call, for the pruner's
    :class:`~.retention.RetentionIndex`. The index changes only in :meth:`inspect`, :meth:`forget`,
    :meth:`apply` and :meth:`update`, under a lock that :meth:`snapshot` takes too; a delta applied
    leaves alone the names :meth:`inspect` or :meth:`forget` touched after its snapshot (what they
    found is newer).

    After :meth:`update`, :meth:`scan`'s result equals :func:`full_scan` of the same directory (up to
    the order of ``foreign`` and ``unreadable``); ``tests/test_index.py`` checks that after any
    sequence of changes, with reconciliations computed on a snapshot taken before some of them.
    """

    RACY_SECONDS = 2.0

    def __init__(self, now: Any = time.time) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._complete: set[tuple[str, Ident]] = set()
        self._generation = 0
        self._touched: dict[str, int] = {}
        """Name -> the generation at which :meth:`inspect`/:meth:`forget` last changed it (see :meth:`apply`)."""
        self._out: list[int] = []
        """Generations of the snapshots handed out and not yet applied."""
        self._changes = Changes()
        self._reset(None, "")
        self.listings = 0
        """How many times the directory was listed (the cost that grows with the number of entries)."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _reset(self, run_dir: str | None, path: str) -> None:
        for name in getattr(self, "_found", {}):
            self._changes.found[name] = None
        self._dir = run_dir
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._idents: dict[str, Ident] = {}
        """Every entry named ``checkpoint-...`` that :func:`full_scan` would report -> its identity."""
        self._found: dict[str, Found] = {}
        self._steps: list[tuple[int, str]] = []
        """``(step, name)`` of :attr:`_found`, sorted."""
        self._foreign: set[str] = set()
        self._recheck: set[str] = set()
        """Incomplete, unreadable, vanished-while-inspected or racy entries: inspected again at every reconciliation."""
        self._unreadable: set[str] = set()

    def _select(self, run_dir: str | os.PathLike[str]) -> None:
        key = _key(run_dir)
        if key != self._dir:
            self._reset(key, os.fspath(run_dir))

    # ---- reading -------------------------------------------------------------------------------
    @property
    def run_dir(self) -> str | None:
        """The directory indexed (absolute, normalised), ``None`` before the first scan."""
        return self._dir

    def get(self, name: str) -> Found | None:
        """The candidate folder named ``name``, if the index has one."""
        return self._found.get(name)

    def ident(self, name: str) -> Ident | None:
        """The identity recorded for ``name``."""
        return self._idents.get(name)

    def changes(self) -> Changes:
        """What changed since the last call (and forget it)."""
        with self._lock:
            out, self._changes = self._changes, Changes()
        return out

    def scan(self, run_dir: str | os.PathLike[str], global_step: int) -> ScanResult:
        """Reconcile now (:meth:`update`) and return the whole index, split at ``global_step``."""
        self.update(run_dir)
        return self._result(global_step)

    # ---- reconciling ---------------------------------------------------------------------------
    def update(self, run_dir: str | os.PathLike[str], *, force: bool = False) -> None:
        """Reconcile with the directory now, on this thread (``force``: list it even if its stamp did not move)."""
        with self._lock:
            self._select(run_dir)
            if force:
                self._stamp = None
            snapshot = Snapshot(self._dir or "", self._path, self._generation, self._stamp, self._idents, self._recheck)
            self._apply(self.compute(snapshot))
            self._release(None)

    def snapshot(self, run_dir: str | os.PathLike[str]) -> Snapshot | None:
        """What :meth:`compute` needs, copied (``None`` if the index is of another directory: :meth:`update` first)."""
        with self._lock:
            if self._dir is None or _key(run_dir) != self._dir:
                return None
            self._out.append(self._generation)
            return Snapshot(
                self._dir, self._path, self._generation, self._stamp, dict(self._idents), set(self._recheck)
            )

    def compute(self, snapshot: Snapshot) -> Delta:
        """Compare the directory with ``snapshot``: reads the disk, changes nothing (safe on another thread)."""
        path = Path(snapshot.path)
        delta = Delta(snapshot.run_dir, snapshot.generation)
        try:
            st = os.stat(path)
        except OSError:
            delta.missing = True
            return delta
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns)
        if stamp == snapshot.stamp:
            delta.stamp = stamp
            for name in sorted(snapshot.recheck):
                try:
                    entry_st = os.lstat(path / name)
                except FileNotFoundError:
                    delta.gone.append(name)
                    continue
                except OSError:
                    continue
                self._inspect_into(delta, path, name, entry_st, snapshot)
            return delta
        self.listings += 1
        current: dict[str, os.DirEntry[str]] = {}
        try:
            with os.scandir(path) as it:
                for entry in it:
                    if entry.name.startswith("checkpoint-"):
                        current[entry.name] = entry
        except (FileNotFoundError, NotADirectoryError):
            delta.missing = True
            return delta
        delta.gone = [n for n in snapshot.idents if n not in current]
        for name, entry in current.items():
            if not LOOSE_NAME.match(name):
                continue  # never a candidate nor reported (checkpoint-100-merged)
            try:
                entry_st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            self._inspect_into(delta, path, name, entry_st, snapshot)
        delta.stamp = stamp if self._now() - st.st_mtime_ns / 1e9 > self.RACY_SECONDS else None
        return delta

    def _inspect_into(self, delta: Delta, path: Path, name: str, st: os.stat_result, snapshot: Snapshot) -> None:
        ident = (st.st_ino, st.st_ctime_ns)
        if snapshot.idents.get(name) == ident and name not in snapshot.recheck:
            return  # unchanged
        delta.inspected.append((name, ident, self._outcome(path, name, ident, stat.S_ISDIR(st.st_mode))))

    def apply(self, delta: Delta | None) -> None:
        """Apply a :meth:`compute` result of a :meth:`snapshot`, except to the names changed here since.

        ``None`` (or a delta of another directory) only releases the snapshot.
        """
        with self._lock:
            if delta is not None and delta.run_dir == self._dir:
                self._apply(delta)
            self._release(delta)

    def abandon(self) -> None:
        """Forget every snapshot handed out (their deltas must not be applied any more)."""
        with self._lock:
            self._out.clear()
            self._touched.clear()

    def _release(self, delta: Delta | None) -> None:
        if delta is not None and delta.generation in self._out:
            self._out.remove(delta.generation)
        if self._touched:
            oldest = min(self._out, default=self._generation)
            # what no snapshot still out predates needs no protection any more
            self._touched = {n: g for n, g in self._touched.items() if g > oldest}

    def _apply(self, delta: Delta) -> None:
        if delta.missing:
            self._reset(self._dir, self._path)
            return
        # names inspected or forgotten here after the snapshot: what was found then is older
        newer = {n for n, g in self._touched.items() if g > delta.generation}
        for name in delta.gone:
            if name not in newer:
                self._forget(name)
        for name, ident, outcome in delta.inspected:
            if name not in newer:
                self._record(name, ident, outcome)
        self._stamp = delta.stamp

    # ---- looking at named entries only -----------------------------------------------------------
    def inspect(self, run_dir: str | os.PathLike[str], names: Iterable[str]) -> None:
        """Look at these entries now: an ``lstat`` each, and a listing of a new, changed or incomplete folder."""
        with self._lock:
            self._select(run_dir)
            self._generation += 1
            for name in names:
                self._touched[name] = self._generation
                if not LOOSE_NAME.match(name):
                    continue
                try:
                    st = os.lstat(os.path.join(self._path, name))
                except FileNotFoundError:
                    self._forget(name)
                    continue
                except OSError:
                    continue
                ident = (st.st_ino, st.st_ctime_ns)
                if self._idents.get(name) == ident and name not in self._recheck:
                    continue  # unchanged
                self._record(name, ident, self._outcome(Path(self._path), name, ident, stat.S_ISDIR(st.st_mode)))

    def forget(self, names: Iterable[str]) -> None:
        """These entries are gone (renamed aside by the pruner)."""
        with self._lock:
            self._generation += 1
            for name in names:
                self._touched[name] = self._generation
                self._forget(name)

    # ---- the index itself --------------------------------------------------------------------------
    def _outcome(self, run_dir: Path, name: str, ident: Ident, is_dir: bool) -> Outcome:
        match = CHECKPOINT_NAME.match(name)
        if match is None or not is_dir:
            return "foreign"
        step = int(match.group(1))
        path = run_dir / name
        if (name, ident) in self._complete:
            return Found(path, step, ident[0], True)
        try:
            with os.scandir(path) as it:
                complete = is_complete(list(it))
        except FileNotFoundError:  # deleted under us (another process pruned it): look again next time
            return "vanished"
        except OSError:
            return "unreadable"
        return Found(path, step, ident[0], complete)

    def _record(self, name: str, ident: Ident, outcome: Outcome) -> None:
        old = self._found.get(name)
        was_foreign, was_unreadable = name in self._foreign, name in self._unreadable
        self._forget(name, report=False)
        self._idents[name] = ident
        if self._now() - ident[1] / 1e9 <= self.RACY_SECONDS:
            self._recheck.add(name)  # changed within a timestamp tick of now: its identity proves nothing yet
        if outcome == "foreign":
            if not was_foreign:
                self._changes.foreign.add(name)
            self._foreign.add(name)
        elif outcome == "unreadable":
            if not was_unreadable:
                self._changes.unreadable.add(name)
            self._unreadable.add(name)
            self._recheck.add(name)
        elif outcome == "vanished":
            self._recheck.add(name)
        else:
            assert isinstance(outcome, Found)
            if outcome.complete:
                self._complete.add((name, ident))
            else:
                self._recheck.add(name)
            self._found[name] = outcome
            bisect.insort(self._steps, (outcome.step, name))
        new = self._found.get(name)
        if old != new or name in self._changes.found:
            self._changes.found[name] = new

    def _forget(self, name: str, *, report: bool = True) -> None:
        self._idents.pop(name, None)
        self._foreign.discard(name)
        self._recheck.discard(name)
        self._unreadable.discard(name)
        found = self._found.pop(name, None)
        if found is not None:
            i = bisect.bisect_left(self._steps, (found.step, name))
            if i < len(self._steps) and self._steps[i] == (found.step, name):
                del self._steps[i]
            if report:
                self._changes.found[name] = None

    def _result(self, global_step: int) -> ScanResult:
        split = bisect.bisect_right(self._steps, (global_step, "\uffff"))
        found = self._found
        return ScanResult(
            candidates=[found[n] for _, n in self._steps[:split]],
            newer=[found[n] for _, n in self._steps[split:]],
            foreign=sorted(self._foreign),
            unreadable=sorted(self._unreadable),
        )


def _key(run_dir: str | os.PathLike[str]) -> str:
    return os.path.normpath(os.path.abspath(run_dir))


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

    def __call__(
        self, found: Found, log_history: Sequence[Mapping[str, Any]], *, files: bool = True
    ) -> dict[str, float]:
        """``files=False``: from ``log_history`` only (when nothing reads the metrics, the files need not be opened)."""
        self._index(log_history)
        metrics = self._by_step.get(found.step)
        if metrics or not found.complete or not files:
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
