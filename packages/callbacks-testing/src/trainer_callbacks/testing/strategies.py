"""Hypothesis strategies for callback tests: ``TrainingArguments`` and metric streams.

Needs ``hypothesis`` (a dependency of ``trainer-callbacks-testing``).

* :func:`training_args_kwargs` / :func:`training_args`: valid ``TrainingArguments``
  configurations within the space the simulator reproduces (epochs or ``max_steps``,
  gradient accumulation, every logging / eval / save strategy with integer or
  fractional steps, ``eval_delay``, ``logging_first_step``, ``eval_on_start``,
  ``load_best_model_at_end`` with ``metric_for_best_model``/``greater_is_better``,
  ``save_strategy="best"``, ``save_total_limit``, warm-up and LR schedules) together with
  the size of the training set (:func:`training_setups`).
* :func:`metric_streams`: per-evaluation metric dicts of a given kind (see :data:`KINDS`).

Example::

    from hypothesis import given
    from trainer_callbacks.testing import simulate, strategies as tcst

    @given(tcst.training_setups(output_dir="/tmp/x", require_eval=True), tcst.metric_streams())
    def test_never_crashes(setup, stream):
        simulate(setup.args, [MyCallback()], stream, train_dataset_len=setup.train_dataset_len)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

KINDS = ("improving", "plateauing", "noisy", "diverging", "nonfinite", "negative")
"""Metric stream kinds:

* ``improving``: strictly better every evaluation (towards ``greater_is_better``);
* ``plateauing``: improves for a few evaluations, then repeats values within a tiny band
  (and exact repeats);
* ``noisy``: a slow trend plus noise larger than the trend;
* ``diverging``: gets worse every evaluation, eventually by orders of magnitude;
* ``nonfinite``: any of the above with NaN, +inf or -inf values mixed in;
* ``negative``: values below zero crossing zero (log-likelihoods, rewards, relative gains).
"""

_SCHEDULERS = ("linear", "constant", "constant_with_warmup", "cosine")


@dataclass(frozen=True)
class TrainingSetup:
    """One generated configuration: ``TrainingArguments`` keyword arguments and the training-set size."""

    kwargs: dict[str, Any]
    train_dataset_len: int
    output_dir: str

    @property
    def args(self) -> Any:
        """A fresh ``TrainingArguments`` (built on every access: they are mutable)."""
        return build_args(self.kwargs, self.output_dir)


def build_args(kwargs: dict[str, Any], output_dir: str) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=output_dir, **kwargs)


def _steps(draw: Any, *, max_int: int, allow_fraction: bool) -> float | int:
    if allow_fraction and draw(st.booleans()):
        return draw(st.sampled_from([0.1, 0.2, 0.25, 0.3, 0.5, 0.75]))
    return draw(st.integers(1, max_int))


@st.composite
def training_args_kwargs(
    draw: Any,
    *,
    max_steps: int = 12,
    max_dataset_len: int = 12,
    require_eval: bool = False,
    allow_epochs: bool = True,
    allow_fractional_steps: bool = True,
    allow_best_model: bool = True,
    metric_for_best_model: Sequence[str | None] = (None, "loss", "eval_loss"),
    greater_is_better: Sequence[bool | None] = (None,),
    lr_scheduler_types: Sequence[str] = _SCHEDULERS,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of a valid ``TrainingArguments`` (without ``output_dir``).

    Args:
        max_steps: the largest ``max_steps`` drawn (epoch-based runs stay about that short too).
        max_dataset_len: unused here; see :func:`training_setups`.
        require_eval: only configurations that evaluate (``eval_strategy`` is ``"steps"`` or ``"epoch"``).
        allow_epochs: also draw epoch-based runs (``max_steps=-1``, possibly fractional epochs).
        allow_fractional_steps: also draw ``logging_steps``/``eval_steps``/``save_steps`` < 1 (ratios).
        allow_best_model: also draw ``load_best_model_at_end`` and ``save_strategy="best"``.
        metric_for_best_model: the choices for ``metric_for_best_model``.
        greater_is_better: the choices for ``greater_is_better`` (``None``: derived from the name).
        lr_scheduler_types: the choices for ``lr_scheduler_type``.
        extra: fixed keyword arguments added to every draw (they win).
    """
    kw: dict[str, Any] = {
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
        "per_device_train_batch_size": draw(st.integers(1, 3)),
        "per_device_eval_batch_size": 4,
        "gradient_accumulation_steps": draw(st.integers(1, 3)),
        "dataloader_drop_last": draw(st.booleans()),
        "lr_scheduler_type": draw(st.sampled_from(list(lr_scheduler_types))),
        "warmup_steps": draw(st.sampled_from([0, 0, 1, 2, 0.2])),
        "max_grad_norm": draw(st.sampled_from([1.0, 0.0])),
        "logging_first_step": draw(st.booleans()),
    }
    if allow_epochs and draw(st.booleans()):
        kw["max_steps"] = -1
        kw["num_train_epochs"] = draw(st.sampled_from([1, 2, 3, 0.5, 1.5, 2.5]))
    else:
        kw["max_steps"] = draw(st.integers(1, max_steps))

    kw["logging_strategy"] = draw(st.sampled_from(["steps", "epoch", "no"]))
    kw["logging_steps"] = _steps(draw, max_int=5, allow_fraction=allow_fractional_steps)

    eval_choices = ["steps", "epoch"] if require_eval else ["no", "steps", "epoch"]
    kw["eval_strategy"] = draw(st.sampled_from(eval_choices))
    evaluating = kw["eval_strategy"] != "no"
    if kw["eval_strategy"] == "steps":
        kw["eval_steps"] = (
            None if draw(st.booleans()) else _steps(draw, max_int=5, allow_fraction=allow_fractional_steps)
        )
        kw["eval_delay"] = draw(st.sampled_from([0, 0, 2, 5]))
    elif kw["eval_strategy"] == "epoch":
        kw["eval_delay"] = draw(st.sampled_from([0, 0, 1]))
    if evaluating:
        kw["eval_on_start"] = draw(st.booleans())

    save_choices = ["no", "steps", "epoch"] + (["best"] if evaluating and allow_best_model else [])
    kw["save_strategy"] = draw(st.sampled_from(save_choices))
    best_model = allow_best_model and evaluating and kw["save_strategy"] != "no" and draw(st.booleans())
    if best_model:
        kw["load_best_model_at_end"] = True
        if kw["save_strategy"] != "best":
            kw["save_strategy"] = kw["eval_strategy"]
    if kw["save_strategy"] == "steps":
        if best_model:
            eval_steps = kw.get("eval_steps") or kw["logging_steps"]
            if eval_steps < 1:
                kw["eval_steps"] = eval_steps
                kw["save_steps"] = draw(
                    st.sampled_from(
                        [v for v in (0.25, 0.5, 0.75) if v >= eval_steps and round(v / eval_steps, 6).is_integer()]
                        or [eval_steps]
                    )
                )
            else:
                kw["save_steps"] = int(eval_steps) * draw(st.integers(1, 2))
        else:
            kw["save_steps"] = _steps(draw, max_int=5, allow_fraction=allow_fractional_steps)
    if kw["save_strategy"] != "no":
        kw["save_total_limit"] = draw(st.sampled_from([None, 1, 2, 3]))
    if evaluating and (best_model or kw["save_strategy"] == "best" or draw(st.booleans())):
        metric = draw(st.sampled_from(list(metric_for_best_model)))
        if metric is None and (best_model or kw["save_strategy"] == "best"):
            metric = "loss"
        if metric is not None:
            kw["metric_for_best_model"] = metric
            gib = draw(st.sampled_from(list(greater_is_better)))
            if gib is not None:
                kw["greater_is_better"] = gib
    if extra:
        kw.update(extra)
    return kw


@st.composite
def training_setups(
    draw: Any, *, output_dir: str, min_dataset_len: int = 1, max_dataset_len: int = 12, **kwargs: Any
) -> TrainingSetup:
    """A :class:`TrainingSetup`: arguments from :func:`training_args_kwargs` (same keyword options) and a dataset size.

    An empty training set is never drawn (the Trainer's sampler refuses it), but an empty epoch
    is: ``dataloader_drop_last=True`` with fewer examples than a batch (with ``max_steps``).
    """
    kw = draw(training_args_kwargs(**kwargs))
    low = max(min_dataset_len, 1)
    n = draw(st.integers(low, max(low, max_dataset_len)))
    if kw["max_steps"] < 0 and kw.get("dataloader_drop_last") and n < kw["per_device_train_batch_size"]:
        kw["dataloader_drop_last"] = False  # an epoch-based run needs a dataloader with a length > 0
    return TrainingSetup(kw, n, output_dir)


def training_args(output_dir: str, **kwargs: Any) -> st.SearchStrategy[Any]:
    """Valid ``TrainingArguments`` writing under ``output_dir`` (options of :func:`training_args_kwargs`)."""
    return training_args_kwargs(**kwargs).map(lambda kw: build_args(kw, output_dir))


# ---- metric streams ---------------------------------------------------------------------------


def _finite(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


@st.composite
def _values(draw: Any, kind: str, length: int, greater_is_better: bool) -> list[float]:
    sign = 1.0 if greater_is_better else -1.0  # direction of "better"
    start = draw(_finite(0.05, 10.0))
    if kind == "improving":
        steps = draw(st.lists(_finite(1e-3, 1.0), min_size=length, max_size=length))
        values, v = [], start
        for s in steps:
            values.append(v)
            v = v + sign * s * (abs(v) * 0.5 + 0.01)
        return values
    if kind == "plateauing":
        n_improve = draw(st.integers(0, max(0, length - 2)))
        values, v = [], start
        for _ in range(n_improve):
            values.append(v)
            v = v + sign * draw(_finite(0.01, 0.5))
        band = draw(st.sampled_from([0.0, 1e-9, 1e-4]))
        while len(values) < length:
            values.append(v + draw(_finite(-band, band)) if band else v)
        return values
    if kind == "noisy":
        trend = draw(_finite(0.0, 0.05))
        noise = draw(st.lists(_finite(-0.5, 0.5), min_size=length, max_size=length))
        return [start + sign * trend * i + n for i, n in enumerate(noise)]
    if kind == "diverging":
        factor = draw(_finite(1.1, 10.0))
        values, v = [], start
        for _ in range(length):
            values.append(v)
            v = v - sign * abs(v) * (factor - 1.0) - sign * 0.01
        return values
    if kind == "negative":
        offset = draw(_finite(-20.0, -0.1))
        base = draw(_values(draw(st.sampled_from(["improving", "noisy", "plateauing"])), length, greater_is_better))
        return [v + offset for v in base]
    if kind == "nonfinite":
        base = draw(
            _values(draw(st.sampled_from(["improving", "plateauing", "noisy", "diverging"])), length, greater_is_better)
        )
        specials = draw(
            st.lists(
                st.tuples(st.integers(0, length - 1), st.sampled_from([math.nan, math.inf, -math.inf])),
                min_size=1,
                max_size=max(1, length // 2),
            )
        )
        for i, value in specials:
            base[i] = value
        return base
    raise ValueError(f"unknown metric stream kind {kind!r}; choose from {KINDS}")


@st.composite
def metric_streams(
    draw: Any,
    names: Sequence[str] = ("eval_loss",),
    kind: str | Sequence[str] | None = None,
    *,
    min_size: int = 1,
    max_size: int = 12,
    greater_is_better: bool | None = None,
) -> list[dict[str, float]]:
    """A list of per-evaluation metric dicts (pass it as ``simulate(metrics=...)``).

    Args:
        names: the metric names in every dict; each gets its own stream of the same kind.
        kind: one of :data:`KINDS`, several (one is drawn per name), or ``None`` (any).
        min_size, max_size: the number of evaluations.
        greater_is_better: the direction "improving"/"diverging" refer to; ``None``: derived from
            each name like ``TrainingArguments`` does (names ending in ``loss`` are better lower).
    """
    kinds = list(KINDS) if kind is None else [kind] if isinstance(kind, str) else list(kind)
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown metric stream kind {k!r}; choose from {KINDS}")
    length = draw(st.integers(min_size, max_size))
    columns = {}
    for name in names:
        better_up = (not name.endswith("loss")) if greater_is_better is None else greater_is_better
        columns[name] = draw(_values(draw(st.sampled_from(kinds)), length, better_up))
    return [{name: columns[name][i] for name in names} for i in range(length)]
