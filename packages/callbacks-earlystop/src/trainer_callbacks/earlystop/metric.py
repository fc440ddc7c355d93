"""What to monitor: :class:`Metric`, the ``EarlyStopping`` options, and their validation.

Every problem is a :class:`~trainer_callbacks.core.errors.ConfigurationError` (a
``ValueError``) raised at construction that names the field and the fix; the one thing
that needs the ``TrainingArguments`` (the mode of a bare-string monitor) is resolved at
train begin by :meth:`StoppingConfig.resolve`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from trainer_callbacks.core import ConfigurationError, Flag, check_value, eval_key, infer_mode, monitor_keys
from trainer_callbacks.core import mode_problem as _mode_problem
from trainer_callbacks.earlystop.options import COMBINE, MIN_STEPS, PATIENCE, THRESHOLD, THRESHOLD_MODE, VALUE
from trainer_callbacks.earlystop.rule import MODES, EarlyStoppingRule, MetricRule

PER_METRIC_FIELDS = (
    "patience",
    "threshold",
    "threshold_mode",
    "baseline",
    "stopping_threshold",
    "divergence_threshold",
)


# The value checks are core's (trainer_callbacks.core.options), configured in .options: the same
# rule for a constructor option, a per-metric mapping entry and a Metric(...) override.
def _check_patience(field: str, value: Any) -> int:
    return check_value("", field, value, PATIENCE)  # type: ignore[no-any-return]


def _check_threshold(field: str, value: Any) -> float:
    return check_value("", field, value, THRESHOLD)  # type: ignore[no-any-return]


def _check_threshold_mode(field: str, value: Any) -> str:
    return check_value("", field, value, THRESHOLD_MODE)  # type: ignore[no-any-return]


def _check_value(field: str, value: Any) -> float:
    return check_value("", field, value, VALUE)  # type: ignore[no-any-return]


def _check_mode(field: str, value: Any) -> str:
    if value not in MODES:
        raise ConfigurationError(
            f"{field}={value!r}: mode is 'min' (lower is better, e.g. a loss) or 'max' (e.g. accuracy)"
        )
    return str(value)


_CHECKS = {
    "patience": _check_patience,
    "threshold": _check_threshold,
    "threshold_mode": _check_threshold_mode,
    "baseline": _check_value,
    "stopping_threshold": _check_value,
    "divergence_threshold": _check_value,
}


@dataclass(frozen=True)
class Metric:
    """A monitored metric with optional per-metric overrides of the ``EarlyStopping`` settings.

    Args:
        name (str): the evaluation metric; ``eval_`` is prepended when absent ("accuracy" is "eval_accuracy").
        mode (str): "min" or "max".
        patience (int | None): evaluations without improvement before this metric counts as stalled.
        threshold (float | None): minimum change that counts as improvement.
        threshold_mode (str | None): "abs" or "rel".
        baseline (float | None): value that must be beaten to count as improvement.
        stopping_threshold (float | None): reaching it stops training at once (goal).
        divergence_threshold (float | None): crossing it stops training at once (divergence).
    """

    name: str
    mode: str = "min"
    patience: int | None = None
    threshold: float | None = None
    threshold_mode: str | None = None
    baseline: float | None = None
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None

    def __post_init__(self) -> None:
        (key,) = monitor_keys([self.name], callback="Metric", field="name")
        object.__setattr__(self, "name", key)
        _check_mode(f"Metric({self.name!r}).mode", self.mode)
        for name in PER_METRIC_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _CHECKS[name](f"Metric({self.name!r}).{name}", value))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``Metric(**d)`` accepts): name, mode and the overrides that are set."""
        data: dict[str, Any] = {"name": self.name, "mode": self.mode}
        for f in fields(self)[2:]:
            if getattr(self, f.name) is not None:
                data[f.name] = getattr(self, f.name)
        return data


@dataclass(frozen=True)
class _Entry:
    metric: Metric
    explicit_mode: bool
    """False for a bare-string monitor, whose mode is inferred (``trainer_callbacks.core.infer_mode``)."""


def _parse_monitor(monitor: Any) -> list[_Entry]:
    if isinstance(monitor, str):
        items: list[Any] = [monitor]
    elif isinstance(monitor, Metric):
        items = [monitor]
    elif isinstance(monitor, Mapping):
        items = []
        for name, mode in monitor.items():
            if not isinstance(name, str):
                raise ConfigurationError(f"monitor: key {name!r} must be a metric name (str)")
            items.append(Metric(name, _check_mode(f"monitor[{name!r}]", mode)))
    elif isinstance(monitor, Sequence):
        items = list(monitor)
    else:
        raise ConfigurationError(
            f"monitor={monitor!r}: give a metric name ('eval_loss'), a mapping of names to modes "
            "({'eval_loss': 'min', 'eval_accuracy': 'max'}) or a list of Metric(...)"
        )
    entries = []
    for item in items:
        if isinstance(item, Metric):
            entries.append(_Entry(item, True))
        elif isinstance(item, str):
            if not item.strip():
                raise ConfigurationError("monitor: an empty metric name; give e.g. 'eval_loss'")
            entries.append(_Entry(Metric(item), False))
        elif isinstance(item, Mapping):
            unknown = sorted(set(item) - {f.name for f in fields(Metric)})
            if unknown:
                raise ConfigurationError(
                    f"monitor: a metric table has unknown field(s) {', '.join(unknown)}; "
                    f"valid: {', '.join(f.name for f in fields(Metric))}"
                )
            if "name" not in item:
                raise ConfigurationError(f"monitor: the metric table {dict(item)!r} needs a 'name'")
            entries.append(_Entry(Metric(**item), "mode" in item))
        else:
            raise ConfigurationError(f"monitor: {item!r} is not a metric name, a Metric or a table of Metric fields")
    if not entries:
        raise ConfigurationError("monitor is empty: name at least one evaluation metric, e.g. monitor='eval_loss'")
    names = [e.metric.name for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigurationError(f"monitor names {', '.join(duplicates)} more than once; list each metric once")
    return entries


def monitor_to_json(monitor: Any) -> Any:
    """``monitor`` in the JSON form the constructor also accepts.

    A name stays a string; anything else becomes a LIST of tables, because the order of the
    metrics is part of the configuration (it orders ``stop_reason.metrics`` and the logs) and
    ``trainer_state.json`` is written with sorted keys, which would reorder a mapping.
    """
    if isinstance(monitor, str):
        return monitor
    if isinstance(monitor, Metric):
        return [monitor.to_dict()]
    if isinstance(monitor, Mapping):
        return [{"name": name, "mode": mode} for name, mode in monitor.items()]
    if isinstance(monitor, Sequence):
        return [item.to_dict() if isinstance(item, Metric) else item for item in monitor]
    return monitor


@dataclass(frozen=True)
class StoppingConfig:
    """The validated options of an ``EarlyStopping``; :meth:`resolve` turns them into a rule."""

    entries: tuple[_Entry, ...]
    settings: dict[str, dict[str, Any]]
    """Per metric name: the fields of :data:`PER_METRIC_FIELDS` after scalar/mapping/override merging."""
    combine: str
    patience: int
    check_finite: bool
    min_steps: int
    strict: bool

    @property
    def names(self) -> list[str]:
        return [e.metric.name for e in self.entries]

    def unresolved(self, args: Any = None) -> list[str]:
        """Bare-string monitors whose mode cannot be known (with ``args`` if given)."""
        return [e.metric.name for e in self.entries if not e.explicit_mode and infer_mode(e.metric.name, args) is None]

    def resolve(self, args: Any = None) -> EarlyStoppingRule:
        """The rule; a bare-string monitor takes its mode from ``args`` (see :func:`infer_mode`)."""
        missing = self.unresolved(args)
        if missing:
            raise ConfigurationError(mode_problem(missing, args))
        rules = []
        for entry in self.entries:
            name = entry.metric.name
            mode = entry.metric.mode if entry.explicit_mode else infer_mode(name, args)
            rules.append(MetricRule(name=name, mode=str(mode), **self.settings[name]))
        checked = {r.name: r for r in rules}
        for rule in checked.values():
            s, d = rule.stopping_threshold, rule.divergence_threshold
            if s is not None and d is not None and (s >= d if rule.mode == "min" else s <= d):
                raise ConfigurationError(
                    f"{rule.name}: stopping_threshold={s} and divergence_threshold={d} overlap for mode "
                    f"{rule.mode!r}; the goal must lie on the good side of the divergence limit "
                    f"({'stopping < divergence' if rule.mode == 'min' else 'stopping > divergence'})"
                )
        return EarlyStoppingRule(
            rules,
            combine=self.combine,
            patience=self.patience,
            check_finite=self.check_finite,
            min_steps=self.min_steps,
        )


def mode_problem(names: Sequence[str], args: Any = None) -> str:
    """Core's message for bare-string monitors of unknown mode, with EarlyStopping's way to pass it."""
    example = ", ".join(f"{n!r}: 'max'" for n in names)
    return _mode_problem(
        "EarlyStopping", names, args, fix=f"monitor={{{example}}} (or 'min'), or Metric(name, mode='max')"
    )


def _per_metric(field: str, value: Any, names: Sequence[str]) -> dict[str, Any]:
    """A scalar applies to every metric; a mapping sets it per metric (names get ``eval_``)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            name = eval_key(str(key))
            if name not in names:
                raise ConfigurationError(
                    f"{field}: {key!r} is not monitored (monitored: {', '.join(names)}); add it to monitor or "
                    f"remove it from {field}"
                )
            if item is not None:
                out[name] = _CHECKS[field](f"{field}[{key!r}]", item)
        return out
    checked = _CHECKS[field](field, value)
    return dict.fromkeys(names, checked)


def build_config(
    monitor: Any,
    *,
    patience: Any = 3,
    threshold: Any = 0.0,
    threshold_mode: Any = "abs",
    combine: str = "all",
    baseline: Any = None,
    stopping_threshold: Any = None,
    divergence_threshold: Any = None,
    check_finite: bool = True,
    min_steps: int = 0,
    strict: bool = True,
) -> StoppingConfig:
    """Validate the ``EarlyStopping`` options (every error names its field)."""
    entries = _parse_monitor(monitor)
    names = [e.metric.name for e in entries]
    combine = check_value("", "combine", combine, COMBINE)
    check_finite = check_value("", "check_finite", check_finite, Flag())
    strict = check_value("", "strict", strict, Flag())
    min_steps = check_value("", "min_steps", min_steps, MIN_STEPS)
    if patience is None or threshold is None or threshold_mode is None:
        none = next(
            n
            for n, v in (("patience", patience), ("threshold", threshold), ("threshold_mode", threshold_mode))
            if v is None
        )
        raise ConfigurationError(f"{none}=None: give a value (per-metric values go in a mapping or Metric(...))")
    given = {
        "patience": patience,
        "threshold": threshold,
        "threshold_mode": threshold_mode,
        "baseline": baseline,
        "stopping_threshold": stopping_threshold,
        "divergence_threshold": divergence_threshold,
    }
    per_field = {name: _per_metric(name, value, names) for name, value in given.items()}
    if combine == "pareto":
        if len(names) < 2:
            raise ConfigurationError(
                f"combine='pareto' needs at least two metrics (monitor has {names[0]!r} only); "
                "use combine='all' for a single metric"
            )
        per_metric_patience = isinstance(patience, Mapping) or any(e.metric.patience is not None for e in entries)
        if per_metric_patience:
            raise ConfigurationError(
                "patience: combine='pareto' uses one shared patience; per-metric patience (a mapping or "
                "Metric(patience=...)) has no meaning there. Give patience as an int"
            )
    defaults = {"patience": 3, "threshold": 0.0, "threshold_mode": "abs"}
    settings: dict[str, dict[str, Any]] = {}
    for entry in entries:
        name = entry.metric.name
        merged: dict[str, Any] = {}
        for f in PER_METRIC_FIELDS:
            override = getattr(entry.metric, f)
            if override is not None:
                merged[f] = override
            elif name in per_field[f]:
                merged[f] = per_field[f][name]
            elif f in defaults:
                merged[f] = defaults[f]
            else:
                merged[f] = None
        settings[name] = merged
    shared_patience = patience if isinstance(patience, int) else 3
    config = StoppingConfig(
        entries=tuple(entries),
        settings=settings,
        combine=combine,
        patience=shared_patience,
        check_finite=check_finite,
        min_steps=min_steps,
        strict=strict,
    )
    # Everything but the mode of a bare string is checkable now (thresholds that overlap...).
    if not config.unresolved():
        config.resolve()
    return config
