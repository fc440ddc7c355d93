"""Fixtures of the earlystop tests: an independent reference model of the rule, a driver that
feeds evaluations to a callback the way the Trainer does, and a tiny real Trainer.

The reference model (:func:`reference_trajectory`) is written from the issue's numbered list,
deliberately simple and structured differently from ``rule.py``: for every evaluation it
recomputes every metric's best and wait FROM SCRATCH over the whole history so far (no
incremental state), and the Pareto wait as "evaluations since the last undominated one".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest


# ---------------------------------------------------------------------------------------------
# The reference model
# ---------------------------------------------------------------------------------------------
@dataclass
class RefMetric:
    name: str
    mode: str = "min"
    patience: int = 3
    threshold: float = 0.0
    threshold_mode: str = "abs"
    baseline: float | None = None
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None


def ref_improves(m: RefMetric, v: float, best: float | None) -> bool:
    """Issue line 4 (NaN never improves; no best: the first value improves)."""
    if v != v:  # NaN
        return False
    if best is None:
        return True
    if m.threshold_mode == "abs":
        return v < best - m.threshold if m.mode == "min" else v > best + m.threshold
    return v < best - abs(best) * m.threshold if m.mode == "min" else v > best + abs(best) * m.threshold


def ref_metric_state(m: RefMetric, history: Sequence[tuple[int, Mapping[str, float]]]) -> tuple[Any, Any, int, bool]:
    """(best, best_step, wait, latest_improved) of ``m`` after ``history`` (counted evaluations only)."""
    best, best_step, wait, improved = m.baseline, None, 0, False
    for step, values in history:
        if m.name not in values:
            continue
        if ref_improves(m, values[m.name], best):
            best, best_step, wait, improved = values[m.name], step, 0, True
        else:
            wait, improved = wait + 1, False
    return best, best_step, wait, improved


def ref_pareto_wait(metrics: Sequence[RefMetric], history: Sequence[tuple[int, Mapping[str, float]]]) -> int:
    names = [m.name for m in metrics]
    complete = [values for _, values in history if all(n in values for n in names)]
    baseline_point = None
    if any(m.baseline is not None for m in metrics):
        baseline_point = {m.name: m.baseline for m in metrics}  # None: cannot be beaten

    def dominated(p: Mapping[str, float], q: Mapping[str, Any]) -> bool:
        return all(q[m.name] is None or not ref_improves(m, p[m.name], q[m.name]) for m in metrics)

    last_free = None
    for j, p in enumerate(complete):
        earlier = list(complete[:j]) + ([baseline_point] if baseline_point else [])
        if not any(dominated(p, q) for q in earlier):
            last_free = j
    return len(complete) if last_free is None else len(complete) - 1 - last_free


def reference_trajectory(
    metrics: Sequence[RefMetric],
    evaluations: Sequence[tuple[int, Mapping[str, float]]],
    *,
    combine: str = "all",
    patience: int = 3,
    check_finite: bool = True,
    min_steps: int = 0,
) -> list[dict[str, Any] | None]:
    """Per evaluation: ``None`` (ignored: before min_steps or no monitored metric) or a dict with
    ``stop`` (``None`` or ``(kind, frozenset(metrics))``), ``waits``, ``best``, ``best_step``."""
    out: list[dict[str, Any] | None] = []
    counted: list[tuple[int, Mapping[str, float]]] = []
    for step, values in evaluations:
        present = {m.name: values[m.name] for m in metrics if m.name in values}
        if step < min_steps or not present:
            out.append(None)
            continue
        counted.append((step, present))
        states = {m.name: ref_metric_state(m, counted) for m in metrics}
        stop = None
        # lines 1-3, in this order; the first line with any hit decides
        tests = [
            ("nonfinite", lambda m, v: check_finite and (math.isnan(v) or math.isinf(v))),
            (
                "divergence",
                lambda m, v: (
                    m.divergence_threshold is not None
                    and (v > m.divergence_threshold if m.mode == "min" else v < m.divergence_threshold)
                ),
            ),
            (
                "goal",
                lambda m, v: (
                    m.stopping_threshold is not None
                    and (v <= m.stopping_threshold if m.mode == "min" else v >= m.stopping_threshold)
                ),
            ),
        ]
        for kind, test in tests:
            hits = frozenset(m.name for m in metrics if m.name in present and test(m, present[m.name]))
            if hits:
                stop = (kind, hits)
                break
        if stop is None:
            if combine == "pareto":
                if ref_pareto_wait(metrics, counted) >= max(patience, 1):
                    stop = ("patience", frozenset(m.name for m in metrics))
            else:
                stalled = frozenset(
                    m.name for m in metrics if not states[m.name][3] and states[m.name][2] >= max(m.patience, 1)
                )
                if stalled and (combine == "any" or len(stalled) == len(metrics)):
                    stop = ("patience", stalled)
        out.append(
            {
                "stop": stop,
                "waits": {n: s[2] for n, s in states.items()},
                "best": {n: s[0] for n, s in states.items()},
                "best_step": {n: s[1] for n, s in states.items()},
                "pareto_wait": ref_pareto_wait(metrics, counted) if combine == "pareto" else None,
            }
        )
    return out


def reference_stop(
    metrics: Sequence[RefMetric], evaluations: Sequence[tuple[int, Mapping[str, float]]], **kwargs: Any
) -> tuple[int, str, frozenset[str]] | None:
    """(index of the stopping evaluation, kind, metrics) of the first stop, or ``None``."""
    for i, item in enumerate(reference_trajectory(metrics, evaluations, **kwargs)):
        if item is not None and item["stop"] is not None:
            return i, item["stop"][0], item["stop"][1]
    return None


@pytest.fixture(scope="session")
def reference() -> Any:
    """The reference model's functions, for tests in other files."""
    return type(
        "Reference",
        (),
        {
            "Metric": RefMetric,
            "trajectory": staticmethod(reference_trajectory),
            "stop": staticmethod(reference_stop),
        },
    )


# ---------------------------------------------------------------------------------------------
# Driving a callback like the Trainer does (without training)
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def training_args(tmp_path: Any) -> Callable[..., Any]:
    def build(**overrides: Any) -> Any:
        from transformers import TrainingArguments

        options: dict[str, Any] = dict(
            output_dir=str(tmp_path / "args"), eval_strategy="steps", eval_steps=1, report_to="none", use_cpu=True
        )
        options.update(overrides)
        return TrainingArguments(**options)

    return build


class Driver:
    """Feeds ``on_train_begin`` then one ``on_evaluate`` per evaluation; records where it stopped."""

    def __init__(self, callback: Any, args: Any, eval_datasets: Sequence[str] | None = None):
        from unittest import mock

        from transformers import TrainerControl, TrainerState

        self.callback, self.args = callback, args
        self.state, self.control = TrainerState(), TrainerControl()
        # What a callback reads from the running Trainer's eval_dataset (None: no Trainer found).
        with mock.patch("trainer_callbacks.core.metrics.running_eval_datasets", lambda: eval_datasets):
            callback.on_train_begin(args, self.state, self.control)

    def end(self) -> None:
        """``on_train_end``, as the Trainer sends it after the last step."""
        self.callback.on_train_end(self.args, self.state, self.control)

    def evaluate(self, step: int, metrics: Mapping[str, float]) -> bool:
        self.state.global_step = step
        self.callback.on_evaluate(self.args, self.state, self.control, metrics=dict(metrics))
        return bool(self.control.should_training_stop)

    def run(self, values: Sequence[Mapping[str, float]], steps: Sequence[int] | None = None) -> int | None:
        """Index of the evaluation at which training would stop, or ``None``."""
        steps = list(steps) if steps is not None else list(range(1, len(values) + 1))
        for i, (step, metrics) in enumerate(zip(steps, values)):
            if self.evaluate(step, metrics):
                return i
        return None


@pytest.fixture
def drive(training_args: Callable[..., Any]) -> Callable[..., Driver]:
    def start(callback: Any, eval_datasets: Sequence[str] | None = None, **arg_overrides: Any) -> Driver:
        return Driver(callback, training_args(**arg_overrides), eval_datasets)

    return start


# ---------------------------------------------------------------------------------------------
# A tiny real Trainer
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_trainer(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``tiny_trainer(callbacks, compute_metrics=None, eval_dataset=None, **args)``: a tiny random-init BERT."""
    from trainer_callbacks.testing import TokenTask, build_tiny_trainer, local_mlflow_env

    for name, value in local_mlflow_env(tmp_path, "earlystop-tests").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DISABLE_MLFLOW_INTEGRATION", "FALSE")
    defaults: dict[str, Any] = dict(
        max_steps=12,
        per_device_eval_batch_size=16,
        eval_strategy="steps",
        eval_steps=1,
        seed=0,
        data_seed=0,
        learning_rate=1e-3,
    )

    def build(callbacks: list[Any], *, compute_metrics: Any = None, eval_dataset: Any = None, **overrides: Any) -> Any:
        return build_tiny_trainer(
            callbacks=callbacks,
            compute_metrics=compute_metrics,
            eval_dataset=eval_dataset,
            **{"output_dir": tmp_path / "out", **defaults, **overrides},
        )

    build.dataset = TokenTask  # type: ignore[attr-defined]
    return build
