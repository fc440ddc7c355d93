"""Property tests: the rule (``rule.py``) against the reference model in ``conftest.py``.

Streams are drawn from a small grid of values so that ties, plateaus, thresholds landing
exactly on a value, NaN/inf, negative values (relative mode) and missing metrics all occur.
Every evaluation of every stream is compared: stop (kind and metrics), waits, bests, best steps.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from trainer_callbacks.earlystop.rule import EarlyStoppingRule, MetricRule

GRID = [-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
SPECIAL = [math.nan, math.inf, -math.inf]
NAMES = ["eval_a", "eval_b", "eval_c"]

optional_grid = st.none() | st.sampled_from(GRID)


@st.composite
def metric_configs(draw: Any, name: str, pareto: bool) -> dict[str, Any]:
    mode = draw(st.sampled_from(["min", "max"]))
    m = dict(
        name=name,
        mode=mode,
        patience=3 if pareto else draw(st.integers(0, 4)),
        threshold=draw(st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5])),
        threshold_mode=draw(st.sampled_from(["abs", "rel"])),
        baseline=draw(optional_grid),
        stopping_threshold=draw(st.none() | st.none() | st.sampled_from(GRID)),
        divergence_threshold=draw(st.none() | st.none() | st.sampled_from(GRID)),
    )
    s, d = m["stopping_threshold"], m["divergence_threshold"]
    if s is not None and d is not None and (s >= d if mode == "min" else s <= d):
        m["divergence_threshold"] = None  # the config layer rejects overlapping goal/divergence
    return m


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    combine = draw(st.sampled_from(["all", "any", "pareto"]))
    n = draw(st.integers(2 if combine == "pareto" else 1, 3))
    metrics = [draw(metric_configs(NAMES[i], combine == "pareto")) for i in range(n)]
    allow_missing = draw(st.booleans())
    allow_special = draw(st.booleans())
    values = st.sampled_from(GRID + SPECIAL) if allow_special else st.sampled_from(GRID)
    length = draw(st.integers(1, 14))
    steps = sorted(draw(st.lists(st.integers(1, 60), min_size=length, max_size=length, unique=True)))
    evaluations = []
    for step in steps:
        point = {}
        for m in metrics:
            if allow_missing and draw(st.integers(0, 5)) == 0:
                continue
            point[m["name"]] = draw(values)
        point["eval_other"] = 123.0  # extra keys are ignored
        evaluations.append((step, point))
    return {
        "metrics": metrics,
        "evaluations": evaluations,
        "combine": combine,
        "patience": draw(st.integers(0, 4)),
        "check_finite": draw(st.booleans()),
        "min_steps": draw(st.sampled_from([0, 0, 5, 20])),
    }


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def _one(evals: list[float], **metric: Any) -> dict[str, Any]:
    """An explicit single-metric scenario (pinned examples that must always run)."""
    m = dict(
        name="eval_a",
        mode="min",
        patience=1,
        threshold=0.0,
        threshold_mode="abs",
        baseline=None,
        stopping_threshold=None,
        divergence_threshold=None,
    )
    m.update(metric)
    return {
        "metrics": [m],
        "evaluations": [(i + 1, {"eval_a": v}) for i, v in enumerate(evals)],
        "combine": "all",
        "patience": 1,
        "check_finite": False,
        "min_steps": 0,
    }


@given(sc=scenarios())
# relative mode is sign-safe: best -1, t 0.5 -> only v < -1.5 improves (torch's best*(1-t) would take -1.25)
@example(sc=_one([-1.0, -1.25, -1.6], threshold=0.5, threshold_mode="rel", patience=3))
@example(sc=_one([1.0, 1.25, 1.6], mode="max", threshold=0.5, threshold_mode="rel", patience=3))
# NaN never improves, not even as the first value; with check_finite=False it just counts as a bad evaluation
@example(sc=_one([math.nan, 1.0, math.nan, math.nan], patience=2))
# a value exactly at the stopping threshold reaches the goal (<=), one exactly at the divergence does not (>)
@example(sc=_one([2.0, 1.0, 0.5], stopping_threshold=0.5, divergence_threshold=2.0, patience=5))
def test_rule_matches_reference_at_every_evaluation(reference: Any, sc: dict[str, Any]) -> None:
    rules = [MetricRule(**m) for m in sc["metrics"]]
    rule = EarlyStoppingRule(
        rules,
        combine=sc["combine"],
        patience=sc["patience"],
        check_finite=sc["check_finite"],
        min_steps=sc["min_steps"],
    )
    expected = reference.trajectory(
        [reference.Metric(**m) for m in sc["metrics"]],
        sc["evaluations"],
        combine=sc["combine"],
        patience=sc["patience"],
        check_finite=sc["check_finite"],
        min_steps=sc["min_steps"],
    )
    first_stop = None
    for i, ((step, values), exp) in enumerate(zip(sc["evaluations"], expected)):
        before = rule.state_dict()
        reason = rule.update(step, values)
        if exp is None:
            assert reason is None
            assert rule.state_dict() == before, "an ignored evaluation must not change the state"
            continue
        got_stop = None if reason is None else (reason.kind, frozenset(reason.metrics))
        assert got_stop == exp["stop"], f"evaluation {i} at step {step}: {values}"
        assert rule.waits == exp["waits"]
        for name, best in rule.best.items():
            assert _same(best.value, exp["best"][name]), name
            assert best.step == exp["best_step"][name], name
        if sc["combine"] == "pareto":
            assert rule.shared_wait == exp["pareto_wait"]
        if reason is not None:
            assert reason.step == step
            first_stop = first_stop or reason
    # the first stop is the one remembered
    assert rule.stop_reason == first_stop


@given(scenarios(), st.integers(0, 14))
def test_state_dict_round_trip_continues_identically(sc: dict[str, Any], cut: int) -> None:
    """Stopping at any evaluation, saving through JSON and loading into a new rule changes nothing."""
    import json

    def build() -> EarlyStoppingRule:
        return EarlyStoppingRule(
            [MetricRule(**m) for m in sc["metrics"]],
            combine=sc["combine"],
            patience=sc["patience"],
            check_finite=sc["check_finite"],
            min_steps=sc["min_steps"],
        )

    whole, first = build(), build()
    evaluations = sc["evaluations"]
    cut = min(cut, len(evaluations))
    for step, values in evaluations[:cut]:
        whole.update(step, values)
        first.update(step, values)
    second = build()
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for step, values in evaluations[cut:]:
        a, b = whole.update(step, values), second.update(step, values)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert (a.kind, a.metrics, a.step) == (b.kind, b.metrics, b.step)
    assert json.dumps(whole.state_dict()) == json.dumps(second.state_dict())


@given(st.lists(st.sampled_from(GRID), min_size=1, max_size=12), st.integers(0, 4))
def test_patience_zero_and_one_agree(values: list[float], other: int) -> None:
    """Clarification 1: patience=0 behaves exactly like patience=1."""

    def stops(patience: int) -> list[bool]:
        rule = EarlyStoppingRule([MetricRule("eval_a", patience=patience)])
        return [rule.update(i, {"eval_a": v}) is not None for i, v in enumerate(values)]

    assert stops(0) == stops(1)


@given(st.lists(st.sampled_from(GRID), min_size=1, max_size=12))
def test_a_metric_that_just_improved_is_never_stalled(values: list[float]) -> None:
    rule = EarlyStoppingRule([MetricRule("eval_a", patience=0)], combine="any")
    for i, v in enumerate(values):
        reason = rule.update(i, {"eval_a": v})
        if rule.progress["eval_a"].improved:
            assert reason is None
