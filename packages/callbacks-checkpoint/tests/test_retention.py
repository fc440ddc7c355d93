"""The incremental retention rule (retention.RetentionIndex) against the full rule (policy.decide).

After any sequence of saves, metric updates, outside deletions and prunes, the index's decision
equals ``decide`` of its candidates; an earlier decision reads as it was; and what it deletes a
fresh scan (which may know more candidates, and fewer of those that are not witnesses) deletes too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from checkpoint_reference import reference_kept  # tests/checkpoint_reference.py (on pytest's pythonpath)
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer_callbacks.checkpoint.policy import CheckpointInfo, Decision, RetentionPolicy, decide
from trainer_callbacks.checkpoint.retention import RetentionIndex

metric_values = st.one_of(st.none(), st.integers(0, 4).map(float), st.just(math.nan), st.just(math.inf))

policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(1, 3),
    keep_best=st.integers(0, 2),
    monitor=st.sampled_from([{}, {"eval_loss": "min"}, {"eval_acc": "max"}, {"eval_loss": "min", "eval_acc": "max"}]),
    keep_pareto=st.booleans(),
    keep_every_n_steps=st.one_of(st.none(), st.integers(1, 6)),
)


@st.composite
def infos(draw: Any, step: int | None = None) -> CheckpointInfo:
    s = draw(st.integers(1, 24)) if step is None else step
    metrics = {}
    for name in ("eval_loss", "eval_acc"):
        v = draw(metric_values)
        if v is not None:
            metrics[name] = v
    return CheckpointInfo(
        path=Path(f"/run/checkpoint-{s}"),
        step=s,
        metrics=metrics,
        complete=draw(st.booleans()),
        is_best_model_checkpoint=draw(st.integers(0, 5)) == 0,
    )


operations = st.one_of(
    st.tuples(st.just("upsert"), infos()),  # a save, a late metric, a replaced folder, the best moving
    st.tuples(st.just("remove"), st.integers(1, 24)),  # deleted by someone else
    st.tuples(st.just("prune"), st.just(0)),  # the pruner deletes what the decision says
    st.tuples(st.just("forget_old"), st.just(0)),  # drop the references to earlier decisions
)


def keep_some(info: CheckpointInfo) -> bool:
    """A pure ``keep``: keeps multiples of 5, raises on multiples of 7."""
    if info.step % 7 == 0:
        raise RuntimeError("boom")
    return info.step % 5 == 0


def as_dict(decision: Decision) -> dict[int, frozenset[str]]:
    return {s: frozenset(r) for s, r in decision.kept.items()}


@settings(max_examples=300)  # pure and fast: afford more than the profile's default
@given(
    policy=policies,
    ops=st.lists(operations, max_size=40),
    resume=st.one_of(st.none(), st.integers(1, 24)),
    use_keep=st.booleans(),
)
def test_the_incremental_rule_equals_the_full_rule_after_any_changes(
    policy: RetentionPolicy, ops: list[tuple[str, Any]], resume: int | None, use_keep: bool
) -> None:
    keep = keep_some if use_keep else None
    index = RetentionIndex(policy, resume_step=resume, keep=keep)
    earlier: list[tuple[Decision, dict[int, frozenset[str]], tuple[int, ...]]] = []
    for op, arg in ops:
        if op == "upsert":
            index.upsert(arg)
        elif op == "remove":
            index.remove(arg)
        elif op == "forget_old":
            earlier.clear()
        got = index.decide()
        candidates = list(index.infos.values())
        full = decide(candidates, policy, resume_step=resume, keep=keep)
        assert as_dict(got) == as_dict(full), (op, arg)
        assert got.deleted == full.deleted
        assert index.keep_errors() == full.keep_errors
        assert len(got.kept) == len(full.kept)
        # the independent reference model agrees on what is kept
        assert set(got.kept) == reference_kept(candidates, policy, resume, keep)
        earlier.append((got, as_dict(full), full.deleted))
        if op == "prune":
            for step in got.deleted:
                index.remove(step)
    # every decision handed out still reads as it was when it was taken
    for decision, kept, deleted in earlier:
        assert as_dict(decision) == kept
        assert all(decision.kept.get(s) == r for s, r in kept.items())
        assert all(s not in decision.kept for s in deleted)
        assert decision.deleted == deleted


@settings(max_examples=300)
@given(
    policy=policies,
    known=st.lists(infos(), max_size=14, unique_by=lambda i: i.step),
    resume=st.one_of(st.none(), st.integers(1, 24)),
    data=st.data(),
)
def test_what_the_index_deletes_a_fresh_scan_deletes_while_its_witnesses_exist(
    policy: RetentionPolicy, known: list[CheckpointInfo], resume: int | None, data: Any
) -> None:
    """The safety argument of RunIndex.decide: missing outside additions and gone non-witnesses change nothing."""
    index = RetentionIndex(policy, resume_step=resume, keep=keep_some)
    for info in known:
        index.upsert(info)
    decision = index.decide()
    witnesses = index.witnesses(decision.deleted)
    assert witnesses <= set(decision.kept)
    others = sorted(set(index.infos) - witnesses - set(decision.deleted))
    gone = set(data.draw(st.lists(st.sampled_from(others), unique=True) if others else st.just([])))
    taken = {i.step for i in known}
    added = data.draw(st.lists(infos().filter(lambda i: i.step not in taken), max_size=6, unique_by=lambda i: i.step))
    fresh = [i for i in known if i.step not in gone] + added
    kept_by_fresh = decide(fresh, policy, resume_step=resume, keep=keep_some).kept
    assert not set(decision.deleted) & set(kept_by_fresh)


def test_keep_is_asked_once_per_version_of_a_checkpoint() -> None:
    asked: list[int] = []

    def keep(info: CheckpointInfo) -> bool:
        asked.append(info.step)
        return False

    index = RetentionIndex(RetentionPolicy(keep_last=1, keep_best=0), keep=keep)
    for step in (1, 2, 3):
        index.upsert(CheckpointInfo(path=Path(f"/run/checkpoint-{step}"), step=step))
        index.decide()
    assert asked == [1, 2]  # each when it stopped being the newest, once
    index.decide()
    assert asked == [1, 2]
    # new information about checkpoint-1 (a late metric): it is asked again
    index.upsert(CheckpointInfo(path=Path("/run/checkpoint-1"), step=1, metrics={"eval_loss": 0.5}))
    assert index.decide().deleted == (1, 2)
    assert asked == [1, 2, 1]


def test_a_prune_looks_at_what_changed_only() -> None:
    # 2,000 milestones: a save between two of them changes the reasons of a handful of steps
    policy = RetentionPolicy(keep_last=2, keep_best=0, keep_every_n_steps=100)
    index = RetentionIndex(policy)
    for k in range(1, 2001):
        index.upsert(CheckpointInfo(path=Path(f"/run/checkpoint-{100 * k}"), step=100 * k))
    index.decide()
    looked: list[int] = []
    real = index._rule_reasons

    def counted(step: int) -> set[str]:
        looked.append(step)
        return real(step)

    index._rule_reasons = counted  # type: ignore[method-assign,assignment]
    index.upsert(CheckpointInfo(path=Path("/run/checkpoint-200050"), step=200_050))
    decision = index.decide()
    assert decision.deleted == ()
    assert set(decision.kept[200_050]) == {"last", "newest_complete"} and set(decision.kept[200_000]) == {
        "last",
        "milestone",
    }
    assert "last" not in decision.kept[199_900]
    assert 0 < len(looked) <= 4
