"""Crash-safe deletion of checkpoint folders.

Deleting ``checkpoint-12`` takes two steps:

1. :func:`claim`: an atomic ``os.rename`` to ``.checkpoint-12.deleting-<uuid>`` in the same
   directory. From that instant no loader sees it: the name starts with a dot, so neither
   ``get_last_checkpoint`` (``^checkpoint-(\\d+)$``) nor the Trainer's rotation (glob
   ``checkpoint-*``) matches it, and a crash at any later point leaves either the intact
   checkpoint or a hidden folder, never a half-deleted ``checkpoint-12``. The rename is also
   the lock between processes pruning the same shared directory: only one rename of a path
   can succeed; the other gets ``FileNotFoundError`` and skips it.
2. :func:`free_files` then :func:`remove_tree`, in a child process when asked
   (:class:`Deleter`, :mod:`.deleter_process`; on background threads of this process where no
   child can run): large files are truncated a chunk (64 MiB) at a time with pauses between
   chunks, at the pace :mod:`.pacing` sets from the time left until the next save is expected
   and the free disk space; then ``rmtree`` removes what is left. Its size is measured just
   before, for ``checkpoint/bytes_freed``. A crash mid-truncation leaves a hidden folder of
   partly truncated files, which the next start removes like any other leftover.

What the pruner logs must not depend on when that thread runs: the decision and the renames
(:func:`claim_all`) are known in ``on_save``; what only the removal learns (bytes freed,
folders that could not be removed) is collected in :class:`Removal` batches and reported
once, at ``on_train_end``, after waiting for them.

Hidden folders left by a crash are found by :func:`leftovers` and removed at the next start.

**Out of process; there, nice 19 while on time and a normal-priority thread once behind** (issue
18 §1). The work runs in a child process so that it never holds the training process's GIL (see
:mod:`.deleter_process` for the priority inversion a low-priority thread there causes). Inside
the child (or here, where no child can run), the deleter thread runs at nice 19, so that the
kernel work of its ``unlink``/``truncate`` calls yields to other work: measured interleaved on
the 2-core test machine (4 GiB, the size bench's loop, 1-min load 2-3), the same paced deletion
cost the loop +1.6 and +5.2 s (one step 120x the median) at normal priority against -0.4 and
-0.3 s at nice 19. But nice 19 alone starves under load (CFS gives it ~1.5% of a busy nice-0
thread's share: the trash was not gone by the next save), and an unprivileged thread can never
lower its nice value again (``RLIMIT_NICE`` is 0 by default), so it cannot speed itself up.
Hence the hand-off: when the drain is behind (its target, half-way to the next expected save,
has passed; or free disk space is short; or someone waits for it, as ``on_train_end`` does),
the niced thread raises :class:`HandOff` at its next chunk and the rest of the batch is freed,
without pauses, by a second thread at normal priority (created on first need), while the niced
one just waits for it. The training thread never takes that work over: it would block the loop
for exactly the kernel work that chunking keeps off it. The rule is tested with an injected
clock (no sleeps): paced before the target, on the normal-priority thread after it, gone before
the next save.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer_callbacks.checkpoint import pacing

logger = logging.getLogger(__name__)

TRASH_NAME = re.compile(r"\A\.checkpoint-(0|[1-9][0-9]*)\.deleting-[0-9a-f]{32}\Z", re.ASCII)


def trash_name(name: str) -> str:
    """The hidden name ``name`` is renamed to before removal."""
    return f".{name}.deleting-{uuid.uuid4().hex}"


def claim(path: Path) -> Path | None:
    """Atomically rename ``path`` to a hidden trash name; ``None`` if it is gone or cannot be renamed.

    ``None`` with no log when another process renamed it first (``FileNotFoundError``); a warning
    for any other failure (the checkpoint then stays where it is, intact).
    """
    result = _claim(path)
    return result if isinstance(result, Path) else None


def _claim(path: Path) -> Path | bool:
    """The hidden path on success; ``False`` when another process took it first; ``True`` when it stays."""
    target = path.with_name(trash_name(path.name))
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return False
    except OSError as exc:
        logger.warning("CheckpointPruner: could not move %s aside for deletion (%s); it is kept.", path, exc)
        return True
    return target


@dataclass
class Claims:
    """What :func:`claim_all` did with each folder."""

    moved: list[tuple[Path, Path]] = field(default_factory=list)
    """``(checkpoint, hidden name)`` for each folder renamed aside: no loader sees it any more."""
    failed: list[Path] = field(default_factory=list)
    """Folders whose rename failed: still on disk, intact, kept."""
    gone: list[Path] = field(default_factory=list)
    """Folders another process renamed first (neither ours to count nor on disk)."""


def claim_all(paths: Sequence[Path]) -> Claims:
    """:func:`claim` each of ``paths``, sorting the outcomes (a failed rename is counted as kept)."""
    claims = Claims()
    for path in paths:
        result = _claim(path)
        if isinstance(result, Path):
            claims.moved.append((path, result))
        elif result:
            claims.failed.append(path)
        else:
            claims.gone.append(path)
    return claims


def _regular_files(path: Path) -> Iterator[tuple[str, os.stat_result]]:
    """``(path, stat)`` of each regular file under ``path`` (symlinks not followed; what vanishes is skipped)."""
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            yield entry.path, entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
        except OSError:
            continue


def tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed, hard links counted once)."""
    sizes = {(st.st_dev, st.st_ino): st.st_size for _, st in _regular_files(path)}
    return sum(sizes.values())


def remove_tree(path: Path) -> bool:
    """``rmtree(path)``, tolerating files another process removes concurrently; True if it is gone."""

    def on_error(func: Any, failed: str, exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            logger.warning("CheckpointPruner: could not remove %s (%s)", failed, exc)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=on_error)
    else:  # pragma: no cover - depends on the interpreter
        shutil.rmtree(path, onerror=lambda func, failed, info: on_error(func, failed, info[1]))
    return not os.path.lexists(path)


Clock = Callable[[], float]
Sleep = Callable[[float], None]
FreeSpace = Callable[[Path], "int | None"]


def disk_free(path: Path) -> int | None:
    """Free bytes on the file system holding ``path`` (``None`` if it cannot be told)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


@dataclass
class Pacer:
    """Waits between chunks as :func:`pacing.pause` says; the clock, sleep and free-space probe are injectable."""

    deadline: float | None = None
    """Clock time by which the trash should be gone (:func:`pacing.target`), ``None`` if unknown."""
    clock: Clock = time.monotonic
    sleep: Sleep = time.sleep
    free_space: FreeSpace = disk_free
    chunk: int = pacing.CHUNK
    slept: float = 0.0
    hurry: threading.Event | None = None
    """Set when someone waits for the removals (train end): no more pauses."""
    hand_off: bool = False
    """On the low-priority thread: when the drain is behind (target passed, disk short, someone waiting), raise
    :class:`HandOff` so that a normal-priority thread frees the rest."""

    def wait(self, pending: int, where: Path) -> None:
        if self.hurry is not None and self.hurry.is_set():
            if self.hand_off and pending > 0:
                raise HandOff
            return
        left = None if self.deadline is None else self.deadline - self.clock()
        free = self.free_space(where) if pending > 0 else None
        if self.hand_off and pending > 0 and ((left is not None and left <= 0) or pacing.short_on_disk(pending, free)):
            raise HandOff
        seconds = pacing.pause(pending, left, free, self.chunk)
        if seconds > 0:
            self.slept += seconds
            self.sleep(seconds)


class HandOff(Exception):
    """The low-priority deleter fell behind: the rest of its batch goes to the normal-priority thread."""


def _files(path: Path) -> list[tuple[str, int, int]]:
    """``(path, size, links)`` of the regular files under ``path`` (symlinks not followed)."""
    return [(name, st.st_size, st.st_nlink) for name, st in _regular_files(path)]


def free_files(root: Path, files: Sequence[tuple[str, int, int]], pacer: Pacer, later: int = 0) -> None:
    """Free ``files`` (:func:`_files` of ``root``) a chunk at a time, pausing as ``pacer`` says.

    A file larger than a chunk is truncated down by ``pacer.chunk`` bytes per call, then
    unlinked; smaller files are unlinked, with a pause after every chunk's worth of them. A file
    with other hard links is only unlinked (truncating would empty the other names too).
    Directories and anything that fails are left to :func:`remove_tree`. The pause is asked
    for after every chunk, with the bytes still pending (``later``: those of the folders freed
    after this one).
    """
    pending = later + freeable(files)
    since_pause = 0
    for name, size, links in files:
        own = links == 1
        try:
            if own:
                while size > pacer.chunk:
                    size -= pacer.chunk
                    os.truncate(name, size)
                    pending -= pacer.chunk
                    pacer.wait(pending, root)
            os.unlink(name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.debug("CheckpointPruner: could not free %s (%s); rmtree tries again", name, exc)
            continue
        if own:
            pending -= size
            since_pause += size
            if since_pause >= pacer.chunk:
                since_pause = 0
                pacer.wait(pending, root)


def freeable(files: Sequence[tuple[str, int, int]]) -> int:
    """Bytes that unlinking ``files`` gives back (files with other hard links give nothing)."""
    return sum(size for _, size, links in files if links == 1)


def leftovers(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Hidden trash folders in ``run_dir`` (left by a crash, or being removed by another process)."""
    try:
        with os.scandir(run_dir) as it:
            return sorted(Path(e.path) for e in it if TRASH_NAME.match(e.name) and e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def lower_thread_priority() -> bool:
    """Give the calling thread the lowest CPU priority (nice 19), where the OS allows it per thread.

    Linux schedules threads separately, so this slows only the deleter: the kernel's work of
    freeing a large checkpoint's blocks, done in its system calls, then yields to the training
    threads instead of competing with them. Irreversible for an unprivileged thread (hence the
    hand-off to another thread when behind). Returns whether it took effect (False elsewhere).
    """
    native_id = getattr(threading, "get_native_id", None)
    if native_id is None or not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, native_id(), 19)
    except OSError:
        return False
    return True


@dataclass
class Removal:
    """One batch of removals (one prune), filled in by the deleter as it works.

    Only the deleter's thread writes it; read it after :meth:`Deleter.wait` (never mid-run: what
    it holds then depends on how far the thread has got).
    """

    step: int
    names: tuple[str, ...]
    bytes_freed: int = 0
    """Bytes of the folders actually removed (with ``dry_run``: of those that would be)."""
    removed: int = 0
    not_removed: list[str] = field(default_factory=list)
    """Hidden folders whose removal failed (they stay hidden; the next start removes them)."""
    dry_run: bool = False
    report: bool = True
    """False for the removal of a crash's leftovers (not a prune of this run)."""
    paused: float = 0.0
    """Seconds the deleter paused between chunks (pacing)."""


class Deleter:
    """Removes claimed folders: in a child process, on background threads, or inline.

    :meth:`submit` returns at once when ``background`` is true; :meth:`wait` blocks until every
    submitted removal finished; :meth:`finished` hands back the batches done so far (once each).
    With ``background`` and ``process`` (the default), the batches go to a child process
    (:mod:`.deleter_process`: it shares no GIL with training); where one cannot be started, or once
    it died, to this process's threads (a nice-19 one, a normal-priority one when behind). The
    clock, sleep and free-space probe can be injected for tests, with ``process=False`` (a child has
    its own).
    """

    def __init__(
        self,
        background: bool = True,
        *,
        process: bool = True,
        clock: Clock = time.monotonic,
        sleep: Sleep | None = None,
        free_space: FreeSpace = disk_free,
    ) -> None:
        injected = clock is not time.monotonic or sleep is not None or free_space is not disk_free
        if background and process and injected:
            raise ValueError(
                "Deleter(background=True, process=True) frees files in a child process, which cannot use an injected "
                "clock, sleep or free_space: pass process=False to free them on threads of this process"
            )
        self.background = background
        self.process = background and process
        self._hurry = threading.Event()
        # the default pause ends early when someone waits for the removals (see wait)
        self.clock, self.sleep, self.free_space = clock, sleep or self._pause, free_space
        self._executor: ThreadPoolExecutor | None = None
        self._catch_up: ThreadPoolExecutor | None = None
        self._child: Any = None
        """The :class:`.deleter_process.ChildDeleter` once started; ``False`` once it cannot be used."""
        self._release: weakref.finalize[..., Any] | None = None
        self._hand_offs = 0
        self._pending: list[Future[Removal]] = []
        self._lock = threading.Lock()
        self._last: tuple[float, int] | None = None
        self.save_steps: int | None = None

    @property
    def hand_offs(self) -> int:
        """Batches the low-priority thread handed to the normal-priority one (it fell behind), here and in the child."""
        child = self._child
        return self._hand_offs + (child.hand_offs if child else 0)

    @property
    def worker_pid(self) -> int | None:
        """The child process's pid while batches go to it (``None``: they are freed in this process)."""
        child = self._child
        return child.pid if child and child.alive else None

    def _pause(self, seconds: float) -> None:
        self._hurry.wait(seconds)

    def hurry(self, on: bool = True) -> None:
        """Stop pausing (someone waits for the removals) or pace again."""
        if on:
            self._hurry.set()
        else:
            self._hurry.clear()

    def start(self, step: int, save_steps: int | None = None) -> None:
        """Training (re)starts at ``step`` now; the Trainer saves every ``save_steps`` steps (``None``: unknown).

        The reference point for the speed that paces the removals (see :func:`pacing.expected_interval`). With
        ``process``, the child process is started here if it is not running yet.
        """
        self._last = (self.clock(), int(step))
        self.save_steps = save_steps if isinstance(save_steps, int) and save_steps > 0 else None
        self._child_for_work()  # start the child now (train begin), not in the first prune's step

    def deadline(self, step: int) -> float | None:
        """Clock time to be done by (:func:`pacing.target` of the next save expected); notes this save."""
        now = self.clock()
        last_time, last_step = self._last if self._last is not None else (None, None)
        interval = pacing.expected_interval(now, last_time, last_step, step, self.save_steps)
        if last_step is None or step > last_step:
            self._last = (now, step)
        return pacing.target(now, interval)

    def submit(self, removal: Removal, paths: Sequence[Path], *, measure: bool = True) -> Future[Removal]:
        """Remove ``paths`` (claimed), paced to :meth:`deadline` of ``removal.step`` (no target for leftovers)."""
        deadline = self.deadline(removal.step) if removal.report else None
        child = self._child_for_work()
        if child is None:
            return self.submit_paced(removal, paths, measure=measure, deadline=deadline)
        outer: Future[Removal] = Future()
        batch = list(paths)
        left = None if deadline is None else deadline - self.clock()
        sent = child.submit(removal, batch, measure, left)
        sent.add_done_callback(lambda f: self._from_child(f, outer, removal, batch, measure, deadline))
        with self._lock:
            self._pending.append(outer)
        return outer

    def _child_for_work(self) -> Any:
        """The child process to send work to, started on first need; ``None`` to work in this process."""
        if not self.process or self._child is False:
            return None
        if self._child is None:
            from trainer_callbacks.checkpoint.deleter_process import ChildDeleter

            child = ChildDeleter.spawn()
            self._child = child or False
            if child:
                # a deleter dropped without close() (a run that died, a notebook's next cell) lets its child go
                self._release = weakref.finalize(self, child.close)
                if self._hurry.is_set():
                    child.hurry(True)
        if self._child is False or not self._child.alive:
            return None
        return self._child

    def _from_child(
        self,
        sent: Future[Removal],
        outer: Future[Removal],
        removal: Removal,
        paths: list[Path],
        measure: bool,
        deadline: float | None,
    ) -> None:
        """The child's answer; if it died first, the batch is freed here instead (one warning per child)."""
        exc = sent.exception()
        if exc is None:
            outer.set_result(sent.result())
            return
        child = self._child
        with self._lock:
            first = bool(child) and not child.warned
            if first:
                child.warned = True
        if first:
            tail = "; its last output: " + " | ".join(child.tail) if child.tail else ""
            logger.warning(
                "CheckpointPruner: %s before freeing the trash it was given; this process frees it instead%s",
                exc,
                tail,
            )
        local = self.submit_paced(removal, paths, measure=measure, deadline=deadline, track=False)
        local.add_done_callback(lambda f: outer.set_result(f.result()))

    def submit_paced(
        self,
        removal: Removal,
        paths: Sequence[Path],
        *,
        measure: bool = True,
        deadline: float | None = None,
        track: bool = True,
    ) -> Future[Removal]:
        """Remove ``paths`` in this process (threads when ``background``), done by clock time ``deadline``."""
        pacer = Pacer(
            deadline=deadline,
            clock=self.clock,
            sleep=self.sleep,
            free_space=self.free_space,
            hurry=self._hurry,
            hand_off=self.background,
        )
        work: Callable[[], Removal] = lambda: self._run(removal, list(paths), measure, pacer)  # noqa: E731
        if not self.background:
            future: Future[Removal] = Future()
            future.set_result(work())
        else:
            if self._executor is None:
                # nice 19 while on time; behind, the rest goes to self._catch_up (see the module docstring)
                self._executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="checkpoint-pruner", initializer=lower_thread_priority
                )
            if self._catch_up is None:
                # its thread is started here, on the caller's thread: a thread inherits its creator's nice value,
                # so one started by the niced deleter would be niced too
                self._catch_up = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-pruner-catch-up")
                self._catch_up.submit(int).result()
            future = self._executor.submit(work)
        if track:
            with self._lock:
                self._pending.append(future)
        return future

    def _run(
        self,
        removal: Removal,
        paths: list[Path],
        measure: bool,
        pacer: Pacer | None = None,
        sizes: list[int] | None = None,
    ) -> Removal:
        """Free and remove ``paths`` (``sizes``: already measured, when a hand-off resumes a batch)."""
        listings = [] if removal.dry_run else [_files(p) for p in paths]
        later = sum(freeable(files) for files in listings)
        sizes = list(sizes or [])
        try:
            for i, path in enumerate(paths):
                reason = "some files remain"
                try:
                    if i >= len(sizes):
                        sizes.append(tree_size(path) if measure else 0)
                    size = sizes[i]
                    if not removal.dry_run:
                        later -= freeable(listings[i])
                        free_files(path, listings[i], pacer or Pacer(), later)
                    if removal.dry_run or remove_tree(path):
                        removal.bytes_freed += size
                        removal.removed += 1
                        continue
                except HandOff:
                    return self._hand_off(removal, paths[i:], measure, pacer, sizes[i:])
                except Exception as exc:  # never let the deleting thread die silently
                    reason = f"{type(exc).__name__}: {exc}"
                logger.warning(
                    "CheckpointPruner: %s could not be removed (%s); it stays hidden and the next run in this "
                    "folder removes it.",
                    path,
                    reason,
                )
                removal.not_removed.append(path.name)
        finally:
            if pacer is not None:
                removal.paused = pacer.slept
        return removal

    def _hand_off(
        self, removal: Removal, paths: list[Path], measure: bool, pacer: Pacer | None, sizes: list[int]
    ) -> Removal:
        """Behind: the rest of the batch runs on the normal-priority thread, without pauses; this one waits for it."""
        catch_up = self._catch_up
        if catch_up is None:  # closed meanwhile: finish here
            return self._run(removal, paths, measure, None, sizes)
        self._hand_offs += 1
        rest = Pacer(clock=self.clock, sleep=self.sleep, free_space=self.free_space, hurry=self._hurry)
        if pacer is not None:
            rest.deadline, rest.slept = pacer.deadline, pacer.slept
        return catch_up.submit(self._run, removal, paths, measure, rest, sizes).result()

    def finished(self) -> list[Removal]:
        """The batches completed since the last call, in submission order."""
        with self._lock:
            done = [f for f in self._pending if f.done()]
            self._pending = [f for f in self._pending if not f.done()]
        return [f.result() for f in done]

    def wait(self) -> None:
        """Block until every submitted removal is done (their batches stay for :meth:`finished`).

        The removals stop pacing themselves meanwhile: whoever waits (train end) wants them done.
        """
        with self._lock:
            pending = list(self._pending)
        child = self._child
        self._hurry.set()
        if child:
            child.hurry(True)
        try:
            for future in pending:
                future.exception()  # waits; _run never raises
        finally:
            self._hurry.clear()
            if child:
                child.hurry(False)

    def close(self) -> None:
        """Wait for every removal, then let the child go and stop the threads (a later :meth:`start` starts anew)."""
        self.wait()
        child, self._child = self._child, None
        if child:
            child.close()
            if self._release is not None:  # closed: nothing left for the finalizer, which lets the child go
                self._release.detach()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._catch_up is not None:
            self._catch_up.shutdown(wait=True)
            self._catch_up = None

    def pending(self) -> int:
        """How many batches are still running or queued."""
        with self._lock:
            return sum(not f.done() for f in self._pending)

    # A Deleter travels with a pickled or copied callback as a fresh, idle one.
    def __getstate__(self) -> dict[str, Any]:
        # the injected clock/sleep/probe are the defaults again
        return {"background": self.background, "process": self.process}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(background=state["background"], process=state.get("process", True))  # type: ignore[misc]
