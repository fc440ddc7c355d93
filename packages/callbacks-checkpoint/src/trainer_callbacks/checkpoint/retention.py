"""The retention policy kept up to date save by save: :func:`.policy.decide`'s answer without re-ranking.

A pure module (no file system access, no clock), like :mod:`.policy`, whose full rule it
maintains. Why it exists: :func:`.policy.decide` looks at every candidate, so with thousands of
milestone checkpoints each prune costs time in their number (issue 18 §2: ~50 ms of a 10,000-folder
prune was ``decide``). Between two saves only a few candidates change (the one just saved, the one
the pruner deletes, a late metric, the best checkpoint moving), and each rule's answer moves
only at a boundary:

* ``last``, ``best:<metric>``, ``newest_complete``: the top of a sorted list (steps; the
  complete steps; ``(value, step)`` per metric, better last). An insertion or removal moves the
  top-k set by at most one element in and one out;
* ``milestone``: the first step in each window ``[k*n, (k+1)*n)``, found by bisection in the
  sorted steps; a change touches only its own window;
* ``pareto``: the front is kept as a set. A new point joins it unless a front point dominates it
  (a point any point dominates is dominated by a front point: dominance is a strict partial
  order on finitely many points), and evicts the front points it dominates. A front point that
  leaves (deleted by someone else, or its metrics changed) is the one case that looks at every
  point: the points it dominated are checked again (never caused by the pruner itself, which
  keeps the front);
* ``resume``: follows the newest complete step; ``best_model_checkpoint``, ``unranked`` and
  ``keep`` depend on the candidate alone.

So each change marks dirty the steps whose rule sets it moved (before vs after, per rule), and
:meth:`RetentionIndex.decide` recomputes the reasons of the dirty steps only: O(k + log n) per
change, with k the ``keep_last``/``keep_best`` sizes (the Python lists' insertions are a
``memmove`` of the tail). The ``keep`` callable is asked once per candidate and per version of
its :class:`~.policy.CheckpointInfo` (when no rule keeps it), not at every prune; its answer is
assumed to depend on the info only. What the returned :class:`~.policy.Decision` holds is the
same as ``decide(list(index.infos.values()), policy, resume_step=..., keep=...)``, which the
tests check after any sequence of changes (``tests/test_retention.py``).

:meth:`RetentionIndex.witnesses` says which kept steps make a deletion right: as long as those
checkpoints exist, a fresh scan (which may know more checkpoints, never fewer of these) would not
keep the deleted ones either, since every rule keeps fewer candidates when there are more (a
newer, a better, an earlier-in-its-window or a dominating one). The pruner checks them on disk
before renaming anything, so an index that has not yet noticed an outside deletion never costs a
checkpoint a fresh scan would keep.
"""

from __future__ import annotations

import bisect
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from trainer_callbacks.checkpoint.policy import (
    CheckpointInfo,
    Decision,
    KeepFn,
    RetentionPolicy,
    metric_value,
    unranked,
)

Point = tuple[float, ...]


def _dominates(a: Point, b: Point) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


class RetentionIndex:
    """The candidates of one run directory and what :func:`.policy.decide` says about them, kept incrementally.

    :meth:`upsert` and :meth:`remove` record a change; :meth:`decide` brings the answer up to date
    (only the steps a change can have moved are looked at) and returns it.
    """

    def __init__(self, policy: RetentionPolicy, *, resume_step: int | None = None, keep: KeepFn | None = None) -> None:
        self.policy = policy
        self.resume_step = resume_step
        self.keep = keep
        self._infos: dict[int, CheckpointInfo] = {}
        self._steps: list[int] = []
        self._complete: list[int] = []
        self._ranked: dict[str, list[tuple[float, int]]] = {name: [] for name in self._ranking()}
        """Per metric with a ``best:`` rule: ``(key, step)`` sorted ascending, the best last (ties: newer last)."""
        self._keys: dict[str, dict[int, float]] = {name: {} for name in self._ranking()}
        self._pareto = policy.keep_pareto and len(policy.monitor) > 1
        self._points: dict[int, Point] = {}
        self._front: set[int] = set()
        self._best_model: set[int] = set()
        self._unranked: set[int] = set()
        self._keep_answers: dict[int, tuple[bool, str | None]] = {}
        self._kept: dict[int, frozenset[str]] = {}
        self._version = 0
        """How many decisions were taken (each :class:`KeptView` reads the kept map as of its own)."""
        self._views: dict[int, weakref.ref[KeptView]] = {}
        """Version -> the decision's kept map handed out then, while someone holds it."""
        self._history: dict[int, list[tuple[int, frozenset[str] | None]]] = {}
        """Step -> ``(version, value before)`` of each change of its kept reasons since the oldest live view."""
        self._log: deque[tuple[int, int]] = deque()
        """``(version, step)`` of those changes, oldest first (to drop them in order)."""
        self._doomed: set[int] = set()
        self._dirty: set[int] = set()
        self._new_errors: list[tuple[int, str]] = []

    def _ranking(self) -> list[str]:
        return list(self.policy.monitor) if self.policy.keep_best > 0 else []

    # ---- reading -------------------------------------------------------------------------------
    @property
    def infos(self) -> Mapping[int, CheckpointInfo]:
        """Step -> the candidate's info (read-only view)."""
        return MappingProxyType(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def __contains__(self, step: object) -> bool:
        return step in self._infos

    # ---- changes -------------------------------------------------------------------------------
    def upsert(self, info: CheckpointInfo) -> None:
        """Add a candidate, or replace the info of the one with the same step."""
        old = self._infos.get(info.step)
        if old == info:
            return
        before = self._boundaries(info.step)
        changed: set[int] = set()
        if old is not None:
            changed |= self._drop(old)
        changed |= self._add(info)
        self._keep_answers.pop(info.step, None)
        self._mark(before, self._boundaries(info.step), changed | {info.step})

    def remove(self, step: int) -> None:
        """Forget the candidate of ``step`` (deleted, by the pruner or by someone else); unknown steps are ignored."""
        old = self._infos.get(step)
        if old is None:
            return
        before = self._boundaries(step)
        changed = self._drop(old)
        self._keep_answers.pop(step, None)
        self._mark(before, self._boundaries(step), changed | {step})

    def _mark(self, before: dict[str, frozenset[int]], after: dict[str, frozenset[int]], changed: set[int]) -> None:
        for rule, steps in before.items():
            changed |= steps ^ after[rule]
        self._dirty |= changed

    def _boundaries(self, step: int) -> dict[str, frozenset[int]]:
        """Each top-k / first-of-window rule's kept steps that a change at ``step`` can move (O(k + log n))."""
        p = self.policy
        out = {
            "last": frozenset(self._steps[-p.keep_last :] if p.keep_last > 0 else ()),
            "newest_complete": frozenset(self._complete[-1:]),
            "resume": frozenset(self._resume_kept()),
        }
        for name, ranked in self._ranked.items():
            out[f"best:{name}"] = frozenset(s for _, s in ranked[-p.keep_best :])
        if p.keep_every_n_steps:
            first = self._first_in_window(step // p.keep_every_n_steps)
            out["milestone"] = frozenset(() if first is None else (first,))
        return out

    def _add(self, info: CheckpointInfo) -> set[int]:
        s = info.step
        self._infos[s] = info
        bisect.insort(self._steps, s)
        if info.complete:
            bisect.insort(self._complete, s)
        for name, ranked in self._ranked.items():
            value = metric_value(info.metrics, name)
            if value is not None:
                key = value if self.policy.monitor[name] == "max" else -value
                self._keys[name][s] = key
                bisect.insort(ranked, (key, s))
        if info.is_best_model_checkpoint:
            self._best_model.add(s)
        if unranked(info, self.policy):
            self._unranked.add(s)
        return self._add_point(info) if self._pareto else set()

    def _drop(self, info: CheckpointInfo) -> set[int]:
        s = info.step
        del self._infos[s]
        _remove_sorted(self._steps, s)
        if info.complete:
            _remove_sorted(self._complete, s)
        for name, ranked in self._ranked.items():
            key = self._keys[name].pop(s, None)
            if key is not None:
                _remove_sorted(ranked, (key, s))
        self._best_model.discard(s)
        self._unranked.discard(s)
        return self._drop_point(s) if self._pareto else set()

    def _add_point(self, info: CheckpointInfo) -> set[int]:
        monitor = self.policy.monitor
        oriented: list[float] = []
        for name, mode in monitor.items():
            value = metric_value(info.metrics, name)
            if value is None:
                return set()
            oriented.append(value if mode == "max" else -value)  # every metric: larger is better
        point = tuple(oriented)
        self._points[info.step] = point
        if any(_dominates(self._points[t], point) for t in self._front):
            return set()
        evicted = {t for t in self._front if _dominates(point, self._points[t])}
        self._front -= evicted
        self._front.add(info.step)
        return evicted | {info.step}

    def _drop_point(self, step: int) -> set[int]:
        point = self._points.pop(step, None)
        if point is None or step not in self._front:
            return set()
        self._front.discard(step)
        # only the points ``point`` dominated can join the front now (each, if nothing else dominates it)
        freed = [t for t, q in self._points.items() if _dominates(point, q)]
        joined = {
            t
            for t in freed
            if not any(_dominates(self._points[u], self._points[t]) for u in self._front)
            and not any(_dominates(self._points[u], self._points[t]) for u in freed if u != t)
        }
        self._front |= joined
        return joined | {step}

    # ---- the rules, per step -------------------------------------------------------------------
    def _first_in_window(self, window: int) -> int | None:
        every = self.policy.keep_every_n_steps
        if not every or window < 1:
            return None
        i = bisect.bisect_left(self._steps, window * every)
        if i < len(self._steps) and self._steps[i] < (window + 1) * every:
            return self._steps[i]
        return None

    def _resume_kept(self) -> tuple[int, ...]:
        r = self.resume_step
        if r is None or r not in self._infos or (self._complete and self._complete[-1] > r):
            return ()
        return (r,)

    def _rule_reasons(self, s: int) -> set[str]:
        """What :func:`.policy.decide` says keeps ``s``, from the rules alone (not ``keep``)."""
        p = self.policy
        reasons: set[str] = set()
        if p.keep_last > 0 and (len(self._steps) <= p.keep_last or s >= self._steps[-p.keep_last]):
            reasons.add("last")
        if self._complete and self._complete[-1] == s:
            reasons.add("newest_complete")
        for name, ranked in self._ranked.items():
            key = self._keys[name].get(s)
            if key is not None and len(ranked) - bisect.bisect_left(ranked, (key, s)) <= p.keep_best:
                reasons.add(f"best:{name}")
        if self._pareto and s in self._front:
            reasons.add("pareto")
        if p.keep_every_n_steps and self._first_in_window(s // p.keep_every_n_steps) == s:
            reasons.add("milestone")
        if s in self._best_model:
            reasons.add("best_model_checkpoint")
        if s in self._resume_kept():
            reasons.add("resume")
        if s in self._unranked:
            reasons.add("unranked")
        return reasons

    def _keep_answer(self, s: int) -> tuple[bool, str | None]:
        answer = self._keep_answers.get(s)
        if answer is None:
            assert self.keep is not None
            info = self._infos[s]
            info = replace(info, is_resume_point=info.is_resume_point or s == self.resume_step)
            try:
                answer = (bool(self.keep(info)), None)
            except Exception as exc:  # a bug in the user's callable must never cost a checkpoint
                answer = (True, f"{type(exc).__name__}: {exc}")
                self._new_errors.append((s, answer[1]))
            self._keep_answers[s] = answer
        return answer

    # ---- the answer ----------------------------------------------------------------------------
    def decide(self) -> Decision:
        """The decision for the candidates now: equal to :func:`.policy.decide` of them.

        ``keep_errors`` holds only the calls of ``keep`` made by this call that raised (each
        checkpoint's error is reported once); :meth:`keep_errors` has all that still apply.
        """
        self._new_errors = []
        self._trim_history()
        for s in sorted(self._dirty):
            if s not in self._infos:
                self._set_kept(s, None)
                self._doomed.discard(s)
                continue
            reasons = self._rule_reasons(s)
            if not reasons and self.keep is not None and self._keep_answer(s)[0]:
                reasons.add("keep")
            if reasons:
                self._set_kept(s, frozenset(reasons))
                self._doomed.discard(s)
            else:
                self._set_kept(s, None)
                self._doomed.add(s)
        self._dirty.clear()
        self._version += 1
        view = KeptView(self, self._version, len(self._kept))
        self._views[self._version] = weakref.ref(view)
        return Decision(kept=view, deleted=tuple(sorted(self._doomed)), keep_errors=tuple(self._new_errors))

    # ---- the kept map of past decisions, without copying it ------------------------------------
    def _set_kept(self, step: int, value: frozenset[str] | None) -> None:
        old = self._kept.get(step)
        if old == value:
            return
        if self._views:  # some decision handed out may still be read: remember what it saw
            self._history.setdefault(step, []).append((self._version, old))
            self._log.append((self._version, step))
        if value is None:
            del self._kept[step]
        else:
            self._kept[step] = value

    def _kept_at(self, step: int, version: int) -> frozenset[str] | None:
        """What the decision of ``version`` kept ``step`` for (``None``: not kept)."""
        history = self._history.get(step) if version < self._version else None
        if history:
            # the first change made after that decision holds the value it saw
            i = bisect.bisect_left(history, version, key=lambda change: change[0])
            if i < len(history):
                return history[i][1]
        return self._kept.get(step)

    def _kept_keys_at(self, version: int) -> list[int]:
        steps = self._kept.keys() | self._history.keys() if version < self._version else self._kept.keys()
        return sorted(s for s in steps if self._kept_at(s, version) is not None)

    def _trim_history(self) -> None:
        """Drop what no decision still referenced can ask for."""
        for version in [v for v, ref in self._views.items() if ref() is None]:
            del self._views[version]
        oldest = min(self._views, default=None)
        if oldest is None:
            self._history.clear()
            self._log.clear()
            return
        while self._log and self._log[0][0] < oldest:
            _, step = self._log.popleft()
            changes = self._history[step]
            del changes[0]
            if not changes:
                del self._history[step]

    def keep_errors(self) -> tuple[tuple[int, str], ...]:
        """``(step, error)`` of every candidate kept only because ``keep`` raised on it (as ``decide`` reports)."""
        out = []
        for s, (_, error) in sorted(self._keep_answers.items()):
            if error is not None and self._kept.get(s) == frozenset({"keep"}):
                out.append((s, error))
        return tuple(out)

    def first_unranked(self) -> int | None:
        """The oldest candidate kept as ``unranked``, if any."""
        return min(self._unranked, default=None)

    def witnesses(self, deleted: Iterable[int]) -> set[int]:
        """Kept steps whose existence makes deleting each of ``deleted`` right (see the module docstring).

        The newest ``keep_last``, the newest complete, the ``keep_best`` best per metric, and for each
        deleted step the first of its milestone window and one front point that dominates it.
        """
        p = self.policy
        out: set[int] = set(self._steps[-p.keep_last :] if p.keep_last > 0 else ())
        out.update(self._complete[-1:])
        for ranked in self._ranked.values():
            out.update(s for _, s in ranked[-p.keep_best :])
        for d in deleted:
            if p.keep_every_n_steps:
                first = self._first_in_window(d // p.keep_every_n_steps)
                if first is not None and first != d:
                    out.add(first)
            point = self._points.get(d)
            if point is not None:
                out.update(next(([t] for t in self._front if _dominates(self._points[t], point)), []))
        out.difference_update(deleted)
        return out


class KeptView(Mapping[int, frozenset[str]]):
    """:attr:`Decision.kept` of a :class:`RetentionIndex`: the kept map as of that decision, read in place.

    A copy per decision would cost time in the number of kept checkpoints; instead the index
    remembers, while a view is alive, the value each changed step had before (O(1) per change),
    and a lookup in an older view finds it by bisection. Iterating materialises it once.
    """

    __slots__ = ("__weakref__", "_items", "_len", "_owner", "version")

    def __init__(self, owner: RetentionIndex, version: int, size: int) -> None:
        self._owner = owner
        self.version = version
        self._len = size
        self._items: dict[int, frozenset[str]] | None = None

    def __getitem__(self, step: int) -> frozenset[str]:
        if self._items is not None:
            return self._items[step]
        value = self._owner._kept_at(step, self.version)
        if value is None:
            raise KeyError(step)
        return value

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        if self._items is None:
            owner, version = self._owner, self.version
            self._items = {s: owner._kept_at(s, version) for s in owner._kept_keys_at(version)}  # type: ignore[misc]
        return iter(self._items)

    def __repr__(self) -> str:
        return f"KeptView({dict(self.items())!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self.items()),))


def _remove_sorted(items: list[Any], value: object) -> None:
    i = bisect.bisect_left(items, value)
    if i < len(items) and items[i] == value:
        del items[i]
