"""The conformance kit: properties every callback, first- or third-party, must hold.

Modelled on scikit-learn's ``check_estimator`` / ``parametrize_with_checks``:

* :func:`check_callback(factory) <check_callback>` runs every check and raises one
  :class:`CallbackCheckError` (an ``AssertionError``) listing each failure with what to fix;
* :func:`checks(factory) <checks>` yields ``(check_name, check_fn)`` pairs to run one by one;
* :func:`parametrize_with_checks(factories) <parametrize_with_checks>` is a
  ``pytest.mark.parametrize`` decorator with one test per callback and check, with ids like
  ``EarlyStopping(monitor='eval_loss')-check_state_round_trip``.

A *factory* is anything that returns a fresh callback when called with no argument: the
class, a ``functools.partial``, a lambda; an instance is accepted too (it is deep-copied).
The checks run the callback in :func:`~.simulator.simulate`, so they take milliseconds.

The checks (each docstring says what it asserts and how to fix a failure):
``check_state_is_json``, ``check_state_round_trip``, ``check_reuse_across_train_calls``,
``check_unrelated_metrics``, ``check_side_effects_only_on_main_process``,
``check_deepcopy_and_pickle``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments
from transformers.trainer_callback import ExportableState, TrainerCallback

from trainer_callbacks.core.testing.metric_source import MetricsSource
from trainer_callbacks.core.testing.recording import WALL_CLOCK_SUFFIXES, Event
from trainer_callbacks.core.testing.simulator import Simulation

Factory = Callable[[], TrainerCallback]

# Keys the Trainer itself logs; everything else in log_history comes from callbacks.
_TRAINER_KEYS = frozenset(
    {"loss", "grad_norm", "learning_rate", "epoch", "step", "total_flos", "train_loss", "num_input_tokens_seen"}
)

_LOSSES = [1.0, 0.8, 0.82, 0.7, 0.72, 0.73, 0.74, 0.69, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75, 0.76, 0.77]
DEFAULT_METRICS: list[dict[str, float]] = [{"eval_loss": v, "eval_accuracy": round(1.5 - v, 4)} for v in _LOSSES]
"""Improves, stalls for 1 then 3 evaluations, improves once more, then degrades for good:
monitors get to improve, wait across checkpoints, reset their wait, and (maybe) stop."""


class CallbackCheckError(AssertionError):
    """One or more conformance checks failed; the message lists each with what to fix."""


@dataclass
class CheckSetup:
    """How the checks run the callback: arguments, metrics and epoch size (see :func:`check_callback`)."""

    args: Mapping[str, Any] | None = None
    metrics: MetricsSource = None
    train_dataset_len: int = 64
    simulate_options: dict[str, Any] = field(default_factory=dict)

    def training_args(self, output_dir: str, **overrides: Any) -> TrainingArguments:
        kw: dict[str, Any] = dict(
            max_steps=16,
            per_device_train_batch_size=8,
            logging_steps=1,
            eval_strategy="steps",
            eval_steps=2,
            save_strategy="steps",
            save_steps=2,
            metric_for_best_model="eval_loss",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
        )
        kw.update(self.args or {})
        kw.update(overrides)
        kw["output_dir"] = output_dir
        return TrainingArguments(**kw)

    def run(
        self,
        callbacks: Sequence[Any],
        output_dir: str,
        *,
        metrics: MetricsSource = None,
        resume_from_checkpoint: Any = None,
        simulation: Simulation | None = None,
        **overrides: Any,
    ) -> Simulation:
        options = {"train_dataset_len": self.train_dataset_len, **self.simulate_options}
        for key in ("process_index", "world_size", "save_checkpoints"):
            if key in overrides:
                options[key] = overrides.pop(key)
        if simulation is None:
            simulation = Simulation(
                self.training_args(output_dir, **overrides),
                callbacks,
                self.metrics if metrics is None else metrics,
                **options,
            )
        simulation.train(resume_from_checkpoint=resume_from_checkpoint)
        return simulation


def as_factory(callback: Any) -> Factory:
    """A zero-argument factory for ``callback`` (a class, a factory, or an instance to deep-copy)."""
    if isinstance(callback, TrainerCallback):
        return functools.partial(copy.deepcopy, callback)
    if callable(callback):
        return callback
    raise TypeError(f"expected a callback class, a factory or an instance, got {callback!r}")


def describe(factory: Factory) -> str:
    """A readable id: ``ClassName(option=value, ...)`` from the instance's options."""
    cb = factory()
    options = getattr(cb, "_options", None)
    if options is None and isinstance(cb, ExportableState):
        try:
            options = cb.state().get("args", {})
        except Exception:  # the state checks will report it
            options = {}
    inner = ", ".join(f"{k}={v!r}" for k, v in (options or {}).items())
    return f"{type(cb).__name__}({inner})"


# ---- helpers ---------------------------------------------------------------------------------


def _find(sim: Simulation, cls: type) -> Any:
    found = [cb for cb in sim.callbacks if type(cb) is cls]
    return found[-1] if found else None


def _callback_scalars(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in _TRAINER_KEYS and not k.startswith(("eval_", "train_"))}


def _behaviour(events: Iterable[Event]) -> list[tuple[Any, ...]]:
    """What a callback decides, as seen in the event stream: the events, steps and the values callbacks log."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        row: tuple[Any, ...] = (e.name, e.global_step)
        if e.payload:
            row += (
                tuple(
                    sorted(
                        (k, _norm(v))
                        for k, v in e.payload.items()
                        if not k.endswith(WALL_CLOCK_SUFFIXES) and k not in ("loss", "train_loss")
                    )
                ),
            )
        out.append(row)
    return out


def _scalars(sim: Simulation) -> list[tuple[Any, ...]]:
    return [
        (e.get("step"), tuple(sorted((k, _norm(v)) for k, v in _callback_scalars(e).items())))
        for e in sim.state.log_history
        if _callback_scalars(e)
    ]


def _norm(v: Any) -> Any:
    return "nan" if isinstance(v, float) and v != v else v


def _first_difference(expected: Sequence[Any], got: Sequence[Any]) -> str:
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return f"first difference at item {i}: expected {a!r}, got {b!r}"
    n = min(len(expected), len(got))
    extra = expected[n] if len(expected) > n else got[n] if len(got) > n else None
    return f"expected {len(expected)} items, got {len(got)} (first unmatched: {extra!r})"


def _tail(events: Sequence[Event], step: int) -> list[Event]:
    """Events from the first ``on_step_begin`` at ``global_step == step`` on (the first step after a checkpoint)."""
    for i, e in enumerate(events):
        if e.name == "on_step_begin" and e.global_step == step:
            return list(events[i:])
    return []


class _TempDir:
    def __enter__(self) -> str:
        self.path = tempfile.mkdtemp(prefix="tc-check-")
        return self.path

    def __exit__(self, *exc: Any) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _files_under(root: str) -> set[str]:
    out = set()
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


# ---- the checks ------------------------------------------------------------------------------


def check_state_is_json(factory: Factory, setup: CheckSetup) -> None:
    """``state()`` is JSON-serialisable, before and after a run, and rebuilds the callback the Trainer's way.

    The Trainer writes ``state()`` into ``trainer_state.json`` and restores it with
    ``type(cb)(**state["args"])`` followed by ``setattr(cb, name, value)`` for each of
    ``state["attributes"]``. Fix: keep only JSON types (no tuples that must stay tuples, no
    numpy/tensor scalars, no NaN-sensitive structures) in ``state()``; make every key of
    ``state["args"]`` a constructor argument. Callbacks that are not ``ExportableState`` pass
    (nothing is saved for them; ``check_state_round_trip`` catches progress they lose).
    """
    cb = factory()
    if not isinstance(cb, ExportableState):
        return
    with _TempDir() as out:
        for moment, instance in (("before training", cb), ("after a run", None)):
            if instance is None:
                sim = setup.run([factory()], out)
                instance = _find(sim, type(cb))
            try:
                text = json.dumps(instance.state(), allow_nan=True)
            except (TypeError, ValueError) as exc:
                raise AssertionError(
                    f"state() {moment} is not JSON-serialisable ({exc}): return only str, int, "
                    "float, bool, None, lists and dicts with str keys"
                ) from None
            data = json.loads(text)
            if not {"args", "attributes"} <= set(data):
                raise AssertionError(f"state() must return {{'args': ..., 'attributes': ...}}, got keys {sorted(data)}")
            try:
                rebuilt = type(instance)(**data["args"])
            except Exception as exc:
                raise AssertionError(
                    f"type(cb)(**state()['args']) failed {moment}: {type(exc).__name__}: {exc}. "
                    "Every key of state()['args'] must be a constructor argument"
                ) from None
            for key, value in data["attributes"].items():
                setattr(rebuilt, key, value)
            again = json.loads(json.dumps(rebuilt.state(), allow_nan=True))
            if _norm_tree(again) != _norm_tree(data):
                raise AssertionError(
                    f"a callback rebuilt from its state() {moment} reports a different state(): "
                    f"saved {data}, rebuilt {again}. setattr of each attribute must restore it"
                )


def _norm_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _norm_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm_tree(v) for v in value]
    return _norm(value)


def check_state_round_trip(factory: Factory, setup: CheckSetup) -> None:
    """Interrupted at ANY checkpoint and resumed, the callback decides exactly as in an uninterrupted run.

    For every checkpoint of a simulated run, a fresh instance resumes from it (with
    ``restore_callback_states_from_checkpoint=True``, the Trainer's own restore; and, for
    a ``PluginCallback``, also with ``False``, which core restores itself). The events
    after the checkpoint (so every control flag the callback set), the scalars it logged,
    and its final ``state()`` must equal the uninterrupted run's. Fix: put every attribute
    that influences a future decision into ``state()`` (``PluginCallback``: into
    ``state_dict()``, restored by ``load_state_dict()``), and derive nothing at
    ``on_train_begin`` that a resumed run cannot recompute.
    """
    from trainer_callbacks.core.callback import PluginCallback

    probe = factory()
    modes = [True] + ([False] if isinstance(probe, PluginCallback) else [])
    with _TempDir() as out:
        for restore in modes:
            full = setup.run([factory()], out, restore_callback_states_from_checkpoint=restore)
            final = _find(full, type(probe))
            for saved in full.checkpoints:
                if saved.trainer_state is None or saved.global_step >= full.state.global_step:
                    continue
                resumed = setup.run(
                    [factory()], out, resume_from_checkpoint=saved, restore_callback_states_from_checkpoint=restore
                )
                expected = _behaviour(_tail(full.events, saved.global_step))
                got = _behaviour(_tail(resumed.events, saved.global_step))
                where = f"resumed from {saved.name} (restore_callback_states_from_checkpoint={restore})"
                if expected != got:
                    raise AssertionError(
                        f"{where}, the run went differently: {_first_difference(expected, got)}. "
                        "Save every attribute that affects later decisions in state()"
                    )
                after = [s for s in _scalars(full) if s[0] is not None and s[0] > saved.global_step]
                after_resumed = [s for s in _scalars(resumed) if s[0] is not None and s[0] > saved.global_step]
                if after != after_resumed:
                    raise AssertionError(
                        f"{where}, the scalars it reported differ: {_first_difference(after, after_resumed)}"
                    )
                if isinstance(final, ExportableState):
                    mine = _find(resumed, type(probe))
                    if _norm_tree(json.loads(json.dumps(mine.state()))) != _norm_tree(
                        json.loads(json.dumps(final.state()))
                    ):
                        raise AssertionError(f"{where}, its final state() differs: {mine.state()} != {final.state()}")


def check_reuse_across_train_calls(factory: Factory, setup: CheckSetup) -> None:
    """One instance serves several ``train()`` calls: the second run equals a fresh instance's run.

    This is how ``Trainer.hyperparameter_search`` and notebooks use callbacks. Fix: reset
    every per-run attribute at ``on_train_begin`` (``PluginCallback``: in ``reset()``, which
    the base class calls there; do not override ``on_train_begin``).
    """
    with _TempDir() as out:
        first = factory()
        setup.run([first], out, save_strategy="no")
        again = setup.run([first], out, save_strategy="no")
        fresh = setup.run([factory()], out, save_strategy="no")
        expected, got = _behaviour(fresh.events), _behaviour(again.events)
        if expected != got:
            raise AssertionError(
                f"a second train() with the same instance differs from a fresh instance's run: "
                f"{_first_difference(expected, got)}. Reset per-run state at on_train_begin "
                "(PluginCallback: reset())"
            )
        if _scalars(again) != _scalars(fresh):
            raise AssertionError(
                "a second train() with the same instance reports other scalars than a fresh "
                f"instance: {_first_difference(_scalars(fresh), _scalars(again))}. Reset per-run "
                "state at on_train_begin (PluginCallback: reset())"
            )


def _exported_args(callback: Any) -> Any:
    """The constructor options a callback exports (``state()["args"]``), or ``{}``."""
    if isinstance(callback, ExportableState):
        try:
            return callback.state().get("args", {})
        except Exception:
            return {}
    return {}


def check_unrelated_metrics(factory: Factory, setup: CheckSetup) -> None:
    """Extra metrics, and evaluations carrying only ``metric_for_best_model``, raise nothing and change nothing.

    Evaluations may carry any other metrics (``compute_metrics``, several eval sets), and a
    callback must not require a metric it does not monitor. Fix: read only the metrics you
    were configured to watch; ignore the rest; warn (once) if yours is missing.
    """
    with _TempDir() as out:
        base = setup.run([factory()], out, save_strategy="no")
        source = base.metrics

        def extra(i: int, step: int) -> dict[str, Any]:
            return {**source(i, step), "eval_unrelated_score": 0.5 + 0.01 * i, "eval_other_set_loss": 3.0}

        try:
            widened = setup.run([factory()], out, metrics=extra, save_strategy="no")
        except Exception as exc:
            raise AssertionError(f"extra unrelated metrics made it raise {type(exc).__name__}: {exc}") from None
        added = ("eval_unrelated_score", "eval_other_set_loss")

        def strip(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
            return [(*r[:2], *(tuple(kv for kv in p if kv[0] not in added) for p in r[2:3])) for r in rows]

        if strip(_behaviour(widened.events)) != strip(_behaviour(base.events)):
            raise AssertionError(
                "extra unrelated metrics changed its decisions: "
                f"{_first_difference(strip(_behaviour(base.events)), strip(_behaviour(widened.events)))}"
            )
        # Related metrics: metric_for_best_model and every metric the callback's own options name
        # (a strict callback may rightly refuse to run without a metric it was told to monitor).
        named_in_options = json.dumps(_exported_args(factory()), sort_keys=True)
        monitored = base.args.metric_for_best_model

        def related(key: str) -> bool:
            bare = key[len("eval_") :] if key.startswith("eval_") else key
            if monitored and bare == (monitored[len("eval_") :] if monitored.startswith("eval_") else monitored):
                return True
            return f'"{key}"' in named_in_options or f'"{bare}"' in named_in_options

        def only_related(i: int, step: int) -> dict[str, Any]:
            values = {k if k.startswith("eval_") else f"eval_{k}": v for k, v in source(i, step).items()}
            return {k: v for k, v in values.items() if related(k)}

        try:
            setup.run([factory()], out, metrics=only_related, save_strategy="no")
        except Exception as exc:
            kept = sorted(only_related(0, 0))
            raise AssertionError(
                f"evaluations carrying only the metrics it is configured for ({', '.join(kept) or 'none'}) made it "
                f"raise {type(exc).__name__}: {exc}. Do not require metrics you were not configured to monitor"
            ) from None


def check_side_effects_only_on_main_process(factory: Factory, setup: CheckSetup) -> None:
    """On a process that is not the main one, it writes no file (checkpoints, logs, trackers).

    The run is simulated as process 1 of 2 (``args.should_save`` and
    ``state.is_world_process_zero`` are false there). Fix: guard file writes with
    ``args.should_save`` and tracker/log writes with ``state.is_world_process_zero``
    (``PluginCallback.report`` already does).
    """
    with _TempDir() as out:
        cwd_before = set(os.listdir(os.getcwd()))
        run_dir = os.path.join(out, "run")
        args_logging = getattr(setup.training_args(run_dir), "logging_dir", None) or "(under output_dir)"
        setup.run([factory()], run_dir, process_index=1, world_size=2, save_checkpoints=True)
        written = sorted(_files_under(out))
        new_in_cwd = sorted(set(os.listdir(os.getcwd())) - cwd_before)
        if written or new_in_cwd:
            raise AssertionError(
                f"it wrote files on process 1 of 2: {written + new_in_cwd} (output_dir={run_dir}, "
                f"logging_dir={args_logging}). Guard file writes with `if args.should_save:` and tracker or log "
                "writes with `if state.is_world_process_zero:`"
            )


def check_deepcopy_and_pickle(factory: Factory, setup: CheckSetup) -> None:
    """``copy.deepcopy`` and ``pickle`` work, before and after a run, and the copies behave like the original.

    Needed by hyperparameter search backends (Ray pickles the Trainer's callbacks) and
    ``TrainingArguments``-driven tooling. Fix: do not hold the Trainer, locks, open files,
    writers or lambdas as attributes (or drop them in ``__getstate__`` and recreate them at
    ``on_train_begin``).
    """
    with _TempDir() as out:
        cb = factory()
        for moment in ("before training", "after a run"):
            if moment == "after a run":
                setup.run([cb], out, save_strategy="no")
            try:
                copies = {"deepcopy": copy.deepcopy(cb), "pickle": pickle.loads(pickle.dumps(cb))}
            except Exception as exc:
                raise AssertionError(
                    f"copying it {moment} failed: {type(exc).__name__}: {exc}. Do not keep the "
                    "Trainer, locks, open files, writers or lambdas as attributes"
                ) from None
            reference = _behaviour(setup.run([cb], out, save_strategy="no").events)
            for how, clone in copies.items():
                got = _behaviour(setup.run([clone], out, save_strategy="no").events)
                if got != reference:
                    raise AssertionError(
                        f"a {how} made {moment} behaves differently from the original: "
                        f"{_first_difference(reference, got)}. Copy every attribute that "
                        "matters (check __getstate__/__setstate__/__deepcopy__)"
                    )


ALL_CHECKS: dict[str, Callable[[Factory, CheckSetup], None]] = {
    "check_state_is_json": check_state_is_json,
    "check_state_round_trip": check_state_round_trip,
    "check_reuse_across_train_calls": check_reuse_across_train_calls,
    "check_unrelated_metrics": check_unrelated_metrics,
    "check_side_effects_only_on_main_process": check_side_effects_only_on_main_process,
    "check_deepcopy_and_pickle": check_deepcopy_and_pickle,
}


# ---- public entry points ---------------------------------------------------------------------


def checks(
    factory: Any,
    *,
    args: Mapping[str, Any] | None = None,
    metrics: MetricsSource = None,
    train_dataset_len: int = 64,
    **simulate_options: Any,
) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yield ``(check_name, check_fn)`` for every check; ``check_fn()`` raises ``AssertionError`` on failure.

    ``args`` are ``TrainingArguments`` keyword overrides for the runs (defaults: 16 steps,
    evaluation and checkpoint every 2 steps, ``metric_for_best_model="eval_loss"``);
    ``metrics`` the evaluation metrics (default :data:`DEFAULT_METRICS`); other keywords
    go to :class:`~.simulator.Simulation`.
    """
    make = as_factory(factory)
    setup = CheckSetup(
        args=args,
        metrics=DEFAULT_METRICS if metrics is None else metrics,
        train_dataset_len=train_dataset_len,
        simulate_options=simulate_options,
    )
    for name, fn in ALL_CHECKS.items():
        yield name, functools.partial(fn, make, setup)


def check_callback(
    factory: Any,
    *,
    args: Mapping[str, Any] | None = None,
    metrics: MetricsSource = None,
    expected_failures: Mapping[str, str] | None = None,
    **options: Any,
) -> None:
    """Run every check; raise :class:`CallbackCheckError` listing every failure (and what to fix).

    ``expected_failures`` maps check names to the reason they are expected to fail; those
    are run but do not count. Other keywords as in :func:`checks`.
    """
    expected = dict(expected_failures or {})
    unknown = set(expected) - set(ALL_CHECKS)
    if unknown:
        raise ValueError(f"expected_failures names unknown checks {sorted(unknown)}; checks are {list(ALL_CHECKS)}")
    failures = []
    for name, fn in checks(factory, args=args, metrics=metrics, **options):
        try:
            fn()
        except AssertionError as exc:
            if name not in expected:
                failures.append(f"{name}: {exc}")
        except Exception as exc:
            if name not in expected:
                failures.append(f"{name}: raised {type(exc).__name__}: {exc}")
    if failures:
        title = describe(as_factory(factory))
        listed = "\n".join(f"  - {f}" for f in failures)
        raise CallbackCheckError(f"{title} failed {len(failures)} conformance check(s):\n{listed}")


def parametrize_with_checks(
    factories: Iterable[Any],
    *,
    expected_failures: Mapping[str, str] | None = None,
    args: Mapping[str, Any] | None = None,
    metrics: MetricsSource = None,
    **options: Any,
) -> Any:
    """A ``pytest.mark.parametrize("callback, check", ...)`` over every factory and check.

    Use it like scikit-learn's::

        @parametrize_with_checks([EarlyStopping, functools.partial(EarlyStopping, patience=3)])
        def test_conformance(callback, check):
            check()

    Ids read ``EarlyStopping(patience=3)-check_state_round_trip``. ``expected_failures`` maps
    a check name to the reason it is expected to fail: that test is marked ``xfail`` with the
    reason shown. It may also be a function of the callback instance returning such a mapping
    (like scikit-learn's ``expected_failed_checks``), to excuse checks for some callbacks only.
    """
    import pytest

    params = []
    for factory in factories:
        label = describe(as_factory(factory))
        if callable(expected_failures):
            expected = dict(expected_failures(as_factory(factory)()) or {})
        else:
            expected = dict(expected_failures or {})
        for name, fn in checks(factory, args=args, metrics=metrics, **options):
            marks = [pytest.mark.xfail(reason=expected[name], strict=False)] if name in expected else []
            params.append(pytest.param(label, fn, id=f"{label}-{name}", marks=marks))
    return pytest.mark.parametrize("callback, check", params)
