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
``check_deepcopy_and_pickle``, ``check_entry_point_is_light``.

**Values that depend on the wall clock** (samples per second, step time) differ between any two
runs, so the checks cannot compare them exactly. Declare them, like scikit-learn's estimator
tags, as a class attribute of the callback, ``non_deterministic_keys = ("throughput/*",)``, or
per call, ``check_callback(..., non_deterministic_keys=[...])`` (also
``parametrize_with_checks``, ``checks`` and ``--trainer-callbacks-check-option``). Each entry is
a key or an ``fnmatch`` pattern; a matching key, wherever it appears (reported scalars, event
payloads, ``state()``), is compared by presence and by whether its value is a finite number,
not by value. A callback that reads the time through an injectable clock (see
:class:`FakeClock`) can instead be checked exactly, with a fake clock in its factory.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments
from transformers.trainer_callback import ExportableState, TrainerCallback

from trainer_callbacks.testing.metric_source import MetricsSource
from trainer_callbacks.testing.recording import WALL_CLOCK_SUFFIXES, Event
from trainer_callbacks.testing.simulator import Simulation

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


TAG = "non_deterministic_keys"
"""The class attribute (a tuple of keys or ``fnmatch`` patterns) declaring wall-clock-dependent values."""


def declared_non_deterministic_keys(callback: Any, extra: Iterable[str] | None = None) -> tuple[str, ...]:
    """The callback's declared ``non_deterministic_keys`` (class tag) plus ``extra``, checked to be strings."""
    declared = getattr(type(callback) if not isinstance(callback, type) else callback, TAG, ())
    keys: list[str] = []
    for source, values in ((f"{TAG} of {type(callback).__name__}", declared), (f"{TAG}=", extra or ())):
        if isinstance(values, str) or not isinstance(values, Iterable):
            raise TypeError(f"{source} must be a tuple of keys or fnmatch patterns, got {values!r}")
        for value in values:
            if not isinstance(value, str) or not value:
                raise TypeError(f"{source} must hold non-empty strings, got {value!r}")
            keys.append(value)
    return tuple(dict.fromkeys(keys))


class FakeClock:
    """A clock for tests: each call returns the previous time plus ``tick`` seconds (from ``start``).

    The injectable-clock pattern: the callback reads the time through an attribute,
    ``clock = staticmethod(time.perf_counter)`` on the class, and a test replaces it on the
    instance, ``callback.clock = FakeClock(tick=0.5)``, so wall-clock values become exact and can
    be asserted. It deep-copies and pickles (the conformance kit copies callbacks).
    """

    def __init__(self, tick: float = 1.0, start: float = 0.0) -> None:
        self.tick = float(tick)
        self.now = float(start)

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def __repr__(self) -> str:
        return f"FakeClock(tick={self.tick}, now={self.now})"


@dataclass
class CheckSetup:
    """How the checks run the callback: arguments, metrics and epoch size (see :func:`check_callback`)."""

    args: Mapping[str, Any] | None = None
    metrics: MetricsSource = None
    train_dataset_len: int = 64
    simulate_options: dict[str, Any] = field(default_factory=dict)
    non_deterministic_keys: tuple[str, ...] = ()
    """Keys compared by presence and finiteness only (see the module documentation)."""

    def loose(self, key: Any) -> bool:
        return isinstance(key, str) and any(fnmatch.fnmatchcase(key, p) for p in self.non_deterministic_keys)

    def value(self, key: Any, value: Any) -> Any:
        """``value`` as the checks compare it: a declared non-deterministic key by kind only."""
        if not self.loose(key):
            return _norm(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return "<finite number>" if math.isfinite(value) else "<non-finite number>"
        return f"<{type(value).__name__}>"

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


_EXACT = CheckSetup()


def _behaviour(events: Iterable[Event], setup: CheckSetup = _EXACT) -> list[tuple[Any, ...]]:
    """What a callback decides, as seen in the event stream: the events, steps and the values callbacks log."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        row: tuple[Any, ...] = (e.name, e.global_step)
        if e.payload:
            row += (
                tuple(
                    sorted(
                        (k, setup.value(k, v))
                        for k, v in e.payload.items()
                        if not k.endswith(WALL_CLOCK_SUFFIXES) and k not in ("loss", "train_loss")
                    )
                ),
            )
        out.append(row)
    return out


def _scalars(sim: Simulation, setup: CheckSetup = _EXACT) -> list[tuple[Any, ...]]:
    return [
        (e.get("step"), tuple(sorted((k, setup.value(k, v)) for k, v in _callback_scalars(e).items())))
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


def _norm_tree(value: Any, setup: CheckSetup = _EXACT) -> Any:
    if isinstance(value, dict):
        return {k: setup.value(k, v) if setup.loose(k) else _norm_tree(v, setup) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm_tree(v, setup) for v in value]
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
    from trainer_callbacks.core import PluginCallback

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
                expected = _behaviour(_tail(full.events, saved.global_step), setup)
                got = _behaviour(_tail(resumed.events, saved.global_step), setup)
                where = f"resumed from {saved.name} (restore_callback_states_from_checkpoint={restore})"
                if expected != got:
                    raise AssertionError(
                        f"{where}, the run went differently: {_first_difference(expected, got)}. "
                        "Save every attribute that affects later decisions in state()"
                    )
                after = [s for s in _scalars(full, setup) if s[0] is not None and s[0] > saved.global_step]
                after_resumed = [s for s in _scalars(resumed, setup) if s[0] is not None and s[0] > saved.global_step]
                if after != after_resumed:
                    raise AssertionError(
                        f"{where}, the scalars it reported differ: {_first_difference(after, after_resumed)}"
                    )
                if isinstance(final, ExportableState):
                    mine = _find(resumed, type(probe))
                    if _norm_tree(json.loads(json.dumps(mine.state())), setup) != _norm_tree(
                        json.loads(json.dumps(final.state())), setup
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
        expected, got = _behaviour(fresh.events, setup), _behaviour(again.events, setup)
        if expected != got:
            raise AssertionError(
                f"a second train() with the same instance differs from a fresh instance's run: "
                f"{_first_difference(expected, got)}. Reset per-run state at on_train_begin "
                "(PluginCallback: reset())"
            )
        if _scalars(again, setup) != _scalars(fresh, setup):
            raise AssertionError(
                "a second train() with the same instance reports other scalars than a fresh "
                f"instance: {_first_difference(_scalars(fresh, setup), _scalars(again, setup))}. Reset per-run "
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

        before, after = strip(_behaviour(base.events, setup)), strip(_behaviour(widened.events, setup))
        if before != after:
            raise AssertionError(f"extra unrelated metrics changed its decisions: {_first_difference(before, after)}")
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
            reference = _behaviour(setup.run([cb], out, save_strategy="no").events, setup)
            for how, clone in copies.items():
                got = _behaviour(setup.run([clone], out, save_strategy="no").events, setup)
                if got != reference:
                    raise AssertionError(
                        f"a {how} made {moment} behaves differently from the original: "
                        f"{_first_difference(reference, got)}. Copy every attribute that "
                        "matters (check __getstate__/__setstate__/__deepcopy__)"
                    )


HEAVY_MODULES = ("torch", "transformers")

_PROBE = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
specs = []
register = getattr(module, "register_callbacks", None)
if callable(register):
    register(specs.append)
print(json.dumps(sorted(m for m in sys.argv[2:] if m in sys.modules)))
"""


@functools.cache
def heavy_imports_of(module: str) -> tuple[str, ...]:
    """Which of :data:`HEAVY_MODULES` a fresh interpreter has imported after importing ``module`` and
    calling its ``register_callbacks`` (what ``trainer-callbacks list`` does). Raises ``AssertionError``
    if that fails."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, module, *HEAVY_MODULES],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TRAINER_CALLBACKS_DISABLE_AUTOLOAD": "1"},
    )
    if result.returncode != 0:
        raise AssertionError(f"importing the plugin module {module!r} failed: {result.stderr.strip()[-1500:]}")
    return tuple(json.loads(result.stdout.strip().splitlines()[-1]))


def entry_point_modules(callback_module: str) -> list[str]:
    """The ``trainer_callbacks`` entry points (module names) of the package ``callback_module`` belongs to.

    A callback in ``trainer_callbacks.lossspike.callback`` belongs to the entry points whose module
    is in ``trainer_callbacks.lossspike``; elsewhere, to those sharing its top-level package.
    """
    from importlib import metadata

    parts = callback_module.split(".")
    package = ".".join(parts[:2]) if parts[0] == "trainer_callbacks" else parts[0]
    found = []
    for ep in metadata.entry_points(group="trainer_callbacks"):
        module = ep.value.split(":", 1)[0].strip()
        if module == package or module.startswith(package + "."):
            found.append(module)
    return sorted(set(found))


def check_entry_point_is_light(factory: Factory, setup: CheckSetup) -> None:
    """Importing the plugin's entry point (and calling its ``register_callbacks``) imports no torch/transformers.

    ``trainer-callbacks list``, ``show`` and the discovery of every other plugin import that
    module (and so the package's ``__init__.py``): one torch import there costs every user seconds
    on every command. The module is found from the installed ``trainer_callbacks`` entry points of
    the callback's package; a callback no entry point belongs to passes (nothing to check); run it
    on a module directly with :func:`check_plugin_module_is_light`. Fix: make the package's
    ``__init__.py`` lazy (a module ``__getattr__`` that imports the callback module on first
    access, as the first-party packages and ``docs/_template`` do) and give ``CallbackSpec`` the
    factory as a ``"module:Class"`` string.
    """
    cls = type(factory())
    for module in entry_point_modules(cls.__module__):
        check_plugin_module_is_light(module)


def check_plugin_module_is_light(module: str) -> None:
    """``AssertionError`` if importing ``module`` (a plugin entry point) imports torch or transformers."""
    heavy = heavy_imports_of(module)
    if heavy:
        raise AssertionError(
            f"importing the plugin entry point {module!r} imports {' and '.join(heavy)}, which makes "
            "`trainer-callbacks list` and every plugin discovery take seconds. Make the package __init__.py "
            "lazy (import the callback module in a module-level __getattr__) and name the factory as a "
            "'module:Class' string in CallbackSpec"
        )


ALL_CHECKS: dict[str, Callable[[Factory, CheckSetup], None]] = {
    "check_state_is_json": check_state_is_json,
    "check_state_round_trip": check_state_round_trip,
    "check_reuse_across_train_calls": check_reuse_across_train_calls,
    "check_unrelated_metrics": check_unrelated_metrics,
    "check_side_effects_only_on_main_process": check_side_effects_only_on_main_process,
    "check_deepcopy_and_pickle": check_deepcopy_and_pickle,
    "check_entry_point_is_light": check_entry_point_is_light,
}


# ---- public entry points ---------------------------------------------------------------------


def checks(
    factory: Any,
    *,
    args: Mapping[str, Any] | None = None,
    metrics: MetricsSource = None,
    train_dataset_len: int = 64,
    non_deterministic_keys: Iterable[str] | None = None,
    **simulate_options: Any,
) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yield ``(check_name, check_fn)`` for every check; ``check_fn()`` raises ``AssertionError`` on failure.

    ``args`` are ``TrainingArguments`` keyword overrides for the runs (defaults: 16 steps,
    evaluation and checkpoint every 2 steps, ``metric_for_best_model="eval_loss"``);
    ``metrics`` the evaluation metrics (default :data:`DEFAULT_METRICS`);
    ``non_deterministic_keys`` keys (or ``fnmatch`` patterns) compared by presence and finiteness
    only, added to the callback class's own ``non_deterministic_keys`` tag; other keywords
    go to :class:`~.simulator.Simulation`.
    """
    make = as_factory(factory)
    setup = CheckSetup(
        args=args,
        metrics=DEFAULT_METRICS if metrics is None else metrics,
        train_dataset_len=train_dataset_len,
        simulate_options=simulate_options,
        non_deterministic_keys=declared_non_deterministic_keys(make(), non_deterministic_keys),
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
    expected_failures: Mapping[str, str] | Callable[[Any], Mapping[str, str] | None] | None = None,
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
