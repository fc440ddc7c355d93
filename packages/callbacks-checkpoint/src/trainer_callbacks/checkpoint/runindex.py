"""The pruner's live view of one run directory, kept up to date save by save (issue 18 §2).

What a prune does on the training thread must not grow with the number of checkpoints (long runs
keep hundreds or thousands of milestones). So the run directory is scanned once, at train begin
(:meth:`RunIndex.begin`: a full listing, each candidate's :class:`~.policy.CheckpointInfo`, the
:class:`~.retention.RetentionIndex`), and at each save (:meth:`RunIndex.refresh`) only what
changed is looked at:

1. the reconciliation computed on a background thread since the last save (a listing of the
   directory compared with the index: what someone else added, deleted or replaced, the Trainer's
   own rotation), if it has finished, is applied; if not, the index stays as it is;
2. the folder the Trainer just saved is inspected (an ``lstat`` and a listing of that folder);
3. the infos whose inputs changed are rebuilt: metrics newly logged for a step, the Trainer's
   ``best_model_checkpoint`` moving; folders from a later step become candidates once the run
   reaches it.

With ``background=False`` (everything on the training thread, by request) step 1 is a
reconciliation done there and then, so the index is exactly a fresh scan at every prune.

**Why a stale index is safe.** The index can miss folders someone else wrote since the last
reconciliation, and still hold folders someone else deleted. A missed folder is never deleted
(only indexed folders are), and every rule keeps *fewer* checkpoints when there are *more*
candidates, so what the index decides to delete a fresh scan would delete too. A folder deleted
behind the index's back is the dangerous case (it may be the newer, better or earlier-in-its-window
checkpoint that makes deleting another one right), so :meth:`RunIndex.decide` ``lstat``s the
*witnesses* of its decision (:meth:`~.retention.RetentionIndex.witnesses`: the newest
``keep_last``, the best per metric, the newest complete, the first of each deleted step's milestone
window, a dominating Pareto point) and each folder it deletes: all present with the identity the
index recorded, the decision stands; otherwise those names are inspected and the decision is taken
again (a full listing on the training thread only after :attr:`RunIndex.MAX_ROUNDS` such rounds).
The checks cost O(``keep_last`` + metrics x ``keep_best`` + deletions) ``lstat`` calls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from trainer_callbacks.checkpoint.policy import CheckpointInfo, Decision, KeepFn, RetentionPolicy, ranking_metrics
from trainer_callbacks.checkpoint.retention import RetentionIndex
from trainer_callbacks.checkpoint.scan import (
    CHECKPOINT_NAME,
    Changes,
    Delta,
    Found,
    MetricsReader,
    Scanner,
    ScanResult,
    same_path,
)

logger = logging.getLogger(__name__)


class Submitter(Protocol):
    """Where reconciliations run: ``submit(fn, *args)`` returning a future (a ``ThreadPoolExecutor``, or a test's)."""

    def submit(self, fn: Callable[..., Delta | None], /, *args: Any) -> Future[Delta | None]: ...


def _reconcile(scanner: Scanner, run_dir: str) -> Delta | None:
    """On the background thread: copy what is needed of the index (under its lock), list and compare."""
    snapshot = scanner.snapshot(run_dir)
    if snapshot is None:
        return None
    try:
        return scanner.compute(snapshot)
    except Exception as exc:  # a listing that failed: an empty delta releases the snapshot, the next one lists again
        logger.debug("CheckpointPruner: reconciling %s failed (%s)", run_dir, exc)
        return Delta(snapshot.run_dir, snapshot.generation)


class RunIndex:
    """Scan index + candidates' infos + retention answer of one run directory (see the module docstring)."""

    MAX_ROUNDS = 3
    """Rounds of targeted checks before :meth:`decide` falls back to a full listing on the training thread."""

    def __init__(self, *, background: bool = True, submitter: Submitter | None = None) -> None:
        self.background = background
        self._submitter = submitter
        self._executor: ThreadPoolExecutor | None = None
        self._future: Future[Delta | None] | None = None
        self.scanner = Scanner()
        self.retention: RetentionIndex | None = None
        self._path = ""
        self._candidates: dict[int, Found] = {}
        self._newer: dict[int, Found] = {}
        self._metrics = MetricsReader()
        self._global_step = 0
        self._log_history: Sequence[Mapping[str, Any]] = []
        self._best: str | None = None
        self._resume: str | None = None
        self._warnings = ScanResult()
        self._metrics_matter = True
        self.checked = 0
        """Folders ``lstat``-ed to confirm decisions (for tests and benchmarks)."""
        self.stale_rounds = 0
        """Decisions taken again because a checked folder had changed behind the index's back."""
        self.full_listings = 0
        """Listings on the training thread after :attr:`MAX_ROUNDS` stale rounds."""

    # A RunIndex travels with a pickled or copied callback as a fresh, empty one.
    def __getstate__(self) -> dict[str, Any]:
        return {"background": self.background}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(background=state["background"])  # type: ignore[misc]

    # ---- building and updating -------------------------------------------------------------------
    def matches(self, run_dir: str | os.PathLike[str], policy: RetentionPolicy, keep: KeepFn | None) -> bool:
        """Whether this index was built for ``run_dir`` with these settings (else :meth:`begin` again)."""
        return (
            self.retention is not None
            and self.scanner.run_dir == os.path.normpath(os.path.abspath(run_dir))
            and self.retention.policy == policy
            and self.retention.keep is keep
        )

    def begin(
        self,
        run_dir: str | os.PathLike[str],
        *,
        global_step: int,
        log_history: Sequence[Mapping[str, Any]],
        best: str | None,
        resume: str | None,
        policy: RetentionPolicy,
        keep: KeepFn | None,
    ) -> None:
        """Scan ``run_dir`` from scratch and build every candidate's info (train begin: linear in the count)."""
        self._drop_reconciliation()
        self.scanner = Scanner()
        self._path = os.fspath(run_dir)
        self._candidates, self._newer = {}, {}
        self._metrics = MetricsReader()
        self._global_step, self._log_history, self._best, self._resume = global_step, log_history, best, resume
        self._metrics.changed_steps(log_history)
        self.scanner.update(run_dir)
        self.retention = RetentionIndex(policy, resume_step=self._step_of(resume), keep=keep)
        # with no rule ranking by a metric and no keep callable, nothing reads a checkpoint's metrics: those not in
        # log_history are not read from each checkpoint's trainer_state.json (thousands of files at train begin)
        self._metrics_matter = bool(ranking_metrics(policy)) or keep is not None
        self._take(self.scanner.changes())
        self.retention.decide()  # every candidate's reasons now, so that the first prune has only its changes

    def refresh(
        self,
        *,
        global_step: int,
        log_history: Sequence[Mapping[str, Any]],
        best: str | None,
        saved: str | None,
        reconcile_now: bool = False,
    ) -> None:
        """Bring the index up to date for a prune at ``global_step`` (``saved``: the folder just written).

        ``reconcile_now``: reconcile on this thread (as ``background=False`` always does).
        """
        self._global_step = global_step
        changed = self._metrics.changed_steps(log_history)
        self._log_history = log_history
        if not self.background or reconcile_now:
            self.scanner.update(self._path)
        elif self._future is not None and self._future.done():
            self._apply_reconciliation()
        if saved is not None:
            self.scanner.inspect(self._path, [saved])
        self._take(self.scanner.changes())
        rebuild: set[int] = set(self._candidates) if changed is None else changed & self._candidates.keys()
        if best != self._best:
            rebuild.update(s for s in (self._step_of(self._best), self._step_of(best)) if s in self._candidates)
            self._best = best
        for newer in sorted(s for s in self._newer if s <= global_step) if self._newer else ():
            self._candidates[newer] = self._newer.pop(newer)
            rebuild.add(newer)
        for step in sorted(rebuild):
            self._upsert(self._candidates[step])

    def removed(self, names: Sequence[str]) -> None:
        """The pruner renamed these folders aside (or another process did first)."""
        if names:
            self.scanner.forget(names)
            self._take(self.scanner.changes())

    def take_warnings(self) -> ScanResult:
        """Folders newly found since the last call that the pruner warns about (newer, foreign, unreadable)."""
        out, self._warnings = self._warnings, ScanResult()
        return out

    def _take(self, changes: Changes) -> None:
        assert self.retention is not None
        for name, found in changes.found.items():
            match = CHECKPOINT_NAME.match(name)
            if match is None:
                continue
            step = int(match.group(1))
            self._newer.pop(step, None)
            if self._candidates.pop(step, None) is not None and (found is None or found.step > self._global_step):
                self.retention.remove(step)
            if found is None:
                continue
            if found.step <= self._global_step:
                self._candidates[step] = found
                self._upsert(found)
            else:
                self._newer[step] = found
                self._warnings.newer.append(found)
        self._warnings.foreign.extend(sorted(changes.foreign))
        self._warnings.unreadable.extend(sorted(changes.unreadable))

    def _upsert(self, found: Found) -> None:
        assert self.retention is not None
        self.retention.upsert(
            CheckpointInfo(
                path=found.path,
                step=found.step,
                metrics=MappingProxyType(self._metrics(found, self._log_history, files=self._metrics_matter)),
                complete=found.complete,
                is_best_model_checkpoint=same_path(self._best, found.path),
                is_resume_point=same_path(self._resume, found.path),
            )
        )

    def _step_of(self, path: str | os.PathLike[str] | None) -> int | None:
        """The step of ``path`` if it names a ``checkpoint-N`` folder of this run directory."""
        if path is None:
            return None
        name = os.path.basename(os.path.normpath(os.fspath(path)))
        match = CHECKPOINT_NAME.match(name)
        if match is None or not same_path(path, os.path.join(self._path, name)):
            return None
        return int(match.group(1))

    # ---- deciding ----------------------------------------------------------------------------------
    def path(self, step: int) -> Path:
        """The folder of candidate ``step``."""
        return self._candidates[step].path

    def decide(self) -> Decision:
        """The retention decision, confirmed on disk (see the module docstring)."""
        assert self.retention is not None
        for _ in range(self.MAX_ROUNDS):
            decision = self.retention.decide()
            steps = sorted(self.retention.witnesses(decision.deleted) | set(decision.deleted))
            self.checked += len(steps)
            stale = [self._candidates[s].path.name for s in steps if not self._unchanged(s)]
            if not stale:
                return decision
            self.stale_rounds += 1
            self.scanner.inspect(self._path, stale)
            self._take(self.scanner.changes())
        self.full_listings += 1
        self.scanner.update(self._path, force=True)
        self._take(self.scanner.changes())
        return self.retention.decide()

    def _unchanged(self, step: int) -> bool:
        found = self._candidates[step]
        try:
            st = os.lstat(found.path)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode) and (st.st_ino, st.st_ctime_ns) == self.scanner.ident(found.path.name)

    def first_unranked(self) -> CheckpointInfo | None:
        """The oldest candidate kept because its evaluation lacks a ranking metric (``None`` if none)."""
        assert self.retention is not None
        step = self.retention.first_unranked()
        return None if step is None else self.retention.infos[step]

    # ---- reconciling in the background -------------------------------------------------------------
    def reconcile_soon(self) -> None:
        """Start a reconciliation on the background thread, unless one is running (a finished one is applied)."""
        if not self.background or self.retention is None:
            return
        if self._future is not None:
            if not self._future.done():
                return
            self._apply_reconciliation()
        submitter = self._submitter
        if submitter is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-index")
            submitter = self._executor
        self._future = submitter.submit(_reconcile, self.scanner, self._path)

    def _apply_reconciliation(self) -> None:
        future, self._future = self._future, None
        if future is None:
            return
        try:
            delta = future.result()
        except Exception as exc:  # never raised by _reconcile; the index then stays as it was
            logger.debug("CheckpointPruner: reconciling %s failed (%s)", self._path, exc)
            return
        self.scanner.apply(delta)
        self._take(self.scanner.changes())

    def _drop_reconciliation(self) -> None:
        if self._future is not None:
            self._future.cancel()
            with contextlib.suppress(CancelledError):
                self._future.exception()  # waits for a running one: its result is not applied
        self._future = None
        self.scanner.abandon()

    def close(self) -> None:
        """Wait for a running reconciliation (dropped) and stop the background thread."""
        self._drop_reconciliation()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
