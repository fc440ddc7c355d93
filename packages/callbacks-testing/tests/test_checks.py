"""The conformance kit catches what it promises to catch, and passes a correct callback.

Each deliberately broken callback below has exactly one defect; the matching check must
fail with a message that says what to fix, and (for the single-defect ones) the other
checks must pass, so a failure points at the right place.
"""

from __future__ import annotations

import functools
import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from transformers.trainer_callback import ExportableState, TrainerCallback

from trainer_callbacks.core.callback import PluginCallback
from trainer_callbacks.testing import CallbackCheckError, check_callback, checks, parametrize_with_checks


class PatienceStop(PluginCallback):
    """Stops after ``patience`` evaluations without a new lowest ``monitor`` (a correct callback).

    Args:
        monitor (str): the metric to watch.
        patience (int): evaluations without improvement before stopping.
    """

    def __init__(self, monitor: str = "eval_loss", patience: int = 2) -> None:
        self.monitor = monitor
        self.patience = patience
        super().__init__(monitor=monitor, patience=patience)

    def reset(self) -> None:
        self.best: float | None = None
        self.wait = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.wait = state["best"], state["wait"]

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        value = (metrics or {}).get(self.monitor)
        if value is None:
            return
        if self.best is None or value < self.best:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        self.report(args, state, {f"patience_stop/wait/{self.monitor}": self.wait})
        if self.wait >= self.patience:
            control.should_training_stop = True


class ForgetsToReset(PatienceStop):
    """Defect: sets ``best``/``wait`` up once in ``__init__``, so a second train() call inherits them."""

    def __init__(self, monitor: str = "eval_loss", patience: int = 2) -> None:
        super().__init__(monitor=monitor, patience=patience)
        self.best, self.wait = None, 0

    def reset(self) -> None:
        pass


class StateDoesNotRoundTrip(PatienceStop):
    """Defect: ``wait`` is not saved, so a resumed run starts counting again."""

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = state["best"]


class WritesOnEveryRank(PatienceStop):
    """Defect: writes a file at every save, on every process."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        os.makedirs(args.output_dir, exist_ok=True)
        Path(args.output_dir, f"patience-{state.global_step}.txt").write_text(str(self.wait))


class HoldsALambda(PatienceStop):
    """Defect: an unpicklable attribute."""

    def reset(self) -> None:
        super().reset()
        self.better = lambda a, b: a < b


class NeedsEveryMetricKnown(PatienceStop):
    """Defect: fails on metrics it does not know."""

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        for key in metrics:
            if key not in ("eval_loss", "eval_accuracy", "epoch") and not key.endswith(("_runtime", "_per_second")):
                raise KeyError(f"unexpected metric {key}")
        super().on_evaluate(args, state, control, metrics=metrics, **kwargs)


class PlainExportable(TrainerCallback, ExportableState):
    """A correct plain transformers-style callback (no PluginCallback), restored only the Trainer's way."""

    def __init__(self, patience: int = 2) -> None:
        self.patience = patience
        self.wait = 0
        self.best: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 0:
            self.wait, self.best = 0, None

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        value = metrics["eval_loss"]
        if self.best is None or value < self.best:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        if self.wait >= self.patience:
            control.should_training_stop = True

    def state(self) -> dict[str, Any]:
        return {"args": {"patience": self.patience}, "attributes": {"wait": self.wait, "best": self.best}}


def _failures(factory: Any) -> str:
    with pytest.raises(CallbackCheckError) as info:
        check_callback(factory)
    return str(info.value)


@pytest.mark.parametrize("factory", [PatienceStop, functools.partial(PatienceStop, patience=1), PlainExportable])
def test_a_correct_callback_passes_every_check(factory: Any) -> None:
    check_callback(factory)


@pytest.mark.parametrize(
    ("broken", "check", "fix"),
    [
        (ForgetsToReset, "check_reuse_across_train_calls", "Reset per-run state at on_train_begin"),
        (StateDoesNotRoundTrip, "check_state_round_trip", "Save every attribute that affects later decisions"),
        (WritesOnEveryRank, "check_side_effects_only_on_main_process", "Guard file writes with `if args.should_save:`"),
        (HoldsALambda, "check_deepcopy_and_pickle", "Do not keep the Trainer, locks, open files, writers or lambdas"),
        (NeedsEveryMetricKnown, "check_unrelated_metrics", "extra unrelated metrics made it raise KeyError"),
    ],
)
def test_a_broken_callback_fails_exactly_the_matching_check(broken: type, check: str, fix: str) -> None:
    message = _failures(broken)
    failed = [line.split(":")[0].strip(" -") for line in message.splitlines()[1:]]
    assert failed == [check], message
    assert fix in message
    assert message.startswith(f"{broken.__name__}(monitor='eval_loss', patience=2) failed 1 conformance check")


def test_expected_failures_are_excused_with_a_reason() -> None:
    check_callback(ForgetsToReset, expected_failures={"check_reuse_across_train_calls": "keeps history on purpose"})
    with pytest.raises(ValueError, match="unknown checks"):
        check_callback(PatienceStop, expected_failures={"check_nonsense": "x"})


def test_checks_yields_every_check_by_name() -> None:
    names = [name for name, _ in checks(PatienceStop)]
    assert names == [
        "check_state_is_json",
        "check_state_round_trip",
        "check_reuse_across_train_calls",
        "check_unrelated_metrics",
        "check_side_effects_only_on_main_process",
        "check_deepcopy_and_pickle",
        "check_entry_point_is_light",
    ]


@parametrize_with_checks(
    [PatienceStop, ForgetsToReset(patience=3)],
    expected_failures=lambda cb: (
        {"check_reuse_across_train_calls": "ForgetsToReset keeps its history on purpose"}
        if isinstance(cb, ForgetsToReset)
        else {}
    ),
)
def test_parametrize_with_checks(callback: str, check: Any, request: pytest.FixtureRequest) -> None:
    if callback.startswith("PatienceStop"):
        assert request.node.callspec.id.startswith("PatienceStop(monitor='eval_loss', patience=2)-check_")
    check()


def test_parametrize_ids_and_xfail_reasons() -> None:
    mark = parametrize_with_checks([ForgetsToReset], expected_failures={"check_reuse_across_train_calls": "why"})
    params = mark.args[1]
    ids = [p.id for p in params]
    assert "ForgetsToReset(monitor='eval_loss', patience=2)-check_state_round_trip" in ids
    xfails = {p.id: m.kwargs["reason"] for p in params for m in p.marks if m.name == "xfail"}
    assert xfails == {"ForgetsToReset(monitor='eval_loss', patience=2)-check_reuse_across_train_calls": "why"}


def test_callback_checks_fixture(callback_checks: Any) -> None:
    callback_checks(PatienceStop, args={"eval_steps": 3, "save_steps": 3})
    with pytest.raises(AssertionError, match="check_state_round_trip"):
        callback_checks(StateDoesNotRoundTrip)


def test_pytest_plugin_option_adds_one_test_per_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = tmp_path / "third_party_cb.py"
    module.write_text(
        textwrap.dedent(
            """
        from transformers import TrainerCallback

        class Harmless(TrainerCallback):
            pass

        class Leaky(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                import os
                os.makedirs(args.output_dir, exist_ok=True)
                open(os.path.join(args.output_dir, "leak.txt"), "w").close()
        """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    # In-process (as pytester's runpytest_inprocess does) to avoid re-importing torch in a subprocess;
    # the plugin is loaded from the kit's pytest11 entry point as in any pytest session.
    code = pytest.main(
        [
            "-q",
            "-p",
            "no:cacheprovider",
            "--trainer-callbacks-check=third_party_cb:Harmless",
            "--trainer-callbacks-check=third_party_cb:Leaky",
        ]
    )
    out = capsys.readouterr().out
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert "13 passed" in out and "1 failed" in out, out
    assert "Leaky()-check_side_effects_only_on_main_process" in out
    assert "Guard file writes" in out


class StrictOnOwnMetric(PatienceStop):
    """Correct, and strict: an evaluation without the metric it was told to monitor is an error."""

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        if self.monitor not in (metrics or {}):
            raise ValueError(f"monitor={self.monitor!r} is missing from the evaluation; present: {sorted(metrics)}")
        super().on_evaluate(args, state, control, metrics=metrics, **kwargs)


def test_a_strict_callback_may_require_the_metric_its_options_name() -> None:
    # metric_for_best_model stays eval_loss; the monitored metric is another one, named in the options.
    check_callback(functools.partial(StrictOnOwnMetric, monitor="eval_accuracy"))


class WallClockRate(PluginCallback):
    """Reports the steps per second of the last step at every log: correct, but never the same twice."""

    clock = staticmethod(__import__("time").perf_counter)  # the injectable clock

    def __init__(self) -> None:
        super().__init__()

    def reset(self) -> None:
        self.began = 0.0
        self.last: float | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.began = self.clock()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.last = self.clock() - self.began

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if self.last is not None and "loss" in (logs or {}):
            self.report(args, state, {"speed/steps_per_s": 1.0 / self.last if self.last > 0 else 0.0})


class Jittery(WallClockRate):
    """As if the wall clock ran at another speed in every run: the exact comparison must fail."""

    runs = 0

    def reset(self) -> None:
        super().reset()
        type(self).runs += 1
        from trainer_callbacks.testing import FakeClock

        self.clock = FakeClock(tick=1.0 / (1.0 + type(self).runs))  # type: ignore[method-assign]


class TaggedJittery(Jittery):
    non_deterministic_keys = ("speed/*",)


class JitteryWithNaN(TaggedJittery):
    """Tagged, but a reused instance reports NaN (a leftover of its first run): presence and finiteness differ."""

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_train_end(args, state, control, **kwargs)
        self.used = True

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if getattr(self, "used", False) and "loss" in (logs or {}):
            self.report(args, state, {"speed/steps_per_s": float("nan")})
        else:
            super().on_log(args, state, control, logs=logs, **kwargs)


def _wall_clock_failures(factory: Any, **options: Any) -> list[str]:
    failed = []
    for name, fn in checks(factory, **options):
        if name in ("check_state_round_trip", "check_reuse_across_train_calls", "check_deepcopy_and_pickle"):
            try:
                fn()
            except AssertionError:
                failed.append(name)
    return failed


def test_wall_clock_values_fail_exact_checks_unless_declared() -> None:
    """Untagged, values that change with the clock fail the reuse/resume checks; declared, they pass."""
    assert "check_reuse_across_train_calls" in _wall_clock_failures(Jittery)
    assert "check_state_round_trip" in _wall_clock_failures(Jittery)
    assert _wall_clock_failures(TaggedJittery) == []  # the class tag
    assert _wall_clock_failures(Jittery, non_deterministic_keys=["speed/steps_*"]) == []  # per call
    assert _wall_clock_failures(Jittery, non_deterministic_keys=["other/*"]) != []  # only matching keys are loose
    # presence/finiteness is still compared: a NaN where a finite number was is caught
    assert "check_reuse_across_train_calls" in _wall_clock_failures(JitteryWithNaN)


def test_non_deterministic_keys_must_be_strings() -> None:
    with pytest.raises(TypeError, match="must be a tuple of keys or fnmatch patterns"):
        list(checks(PatienceStop, non_deterministic_keys="speed/*"))
    with pytest.raises(TypeError, match="must hold non-empty strings"):
        list(checks(PatienceStop, non_deterministic_keys=[3]))  # type: ignore[list-item]


def test_a_fake_clock_makes_wall_clock_values_exact() -> None:
    from trainer_callbacks.testing import FakeClock, simulate

    def with_clock() -> WallClockRate:
        callback = WallClockRate()
        callback.clock = FakeClock(tick=0.5)  # type: ignore[method-assign]
        return callback

    check_callback(with_clock)  # exact comparisons, no tag needed
    from transformers import TrainingArguments

    args = TrainingArguments("unused", max_steps=4, logging_steps=2, report_to="none", use_cpu=True)
    run = simulate(args, [with_clock()], train_dataset_len=64)
    # each clock read is 0.5 s after the previous one: every step takes 0.5 s, 2 steps per second
    rates = [e["speed/steps_per_s"] for e in run.state.log_history if "speed/steps_per_s" in e]
    assert rates == [2.0, 2.0]


def test_entry_point_check_finds_a_heavy_plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer_callbacks.testing import check_plugin_module_is_light

    package = tmp_path / "heavyplug"
    package.mkdir()
    (package / "__init__.py").write_text("from heavyplug.callback import Thing  # eager: imports torch\n")
    (package / "callback.py").write_text("import torch\n\nThing = torch.nn.Module\n")
    (package / "plugin.py").write_text("def register_callbacks(register):\n    pass\n")
    light = tmp_path / "lightplug"
    light.mkdir()
    (light / "__init__.py").write_text("")
    (light / "plugin.py").write_text("def register_callbacks(register):\n    pass\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    with pytest.raises(AssertionError, match=r"'heavyplug.plugin' imports torch.*lazy"):
        check_plugin_module_is_light("heavyplug.plugin")
    check_plugin_module_is_light("lightplug.plugin")
    with pytest.raises(AssertionError, match=r"importing the plugin module 'nosuchplug\.plugin' failed"):
        check_plugin_module_is_light("nosuchplug.plugin")


def test_entry_point_modules_of_the_first_party_callbacks() -> None:
    from trainer_callbacks.testing.conformance import entry_point_modules

    installed = entry_point_modules("trainer_callbacks.earlystop.callback")
    if not installed:
        pytest.skip("earlystop is not installed")
    assert installed == ["trainer_callbacks.earlystop.plugin"]
    assert entry_point_modules("some_test_module") == []


def test_pytest_option_takes_arguments_expected_failures_and_check_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "third_party_args.py").write_text(
        textwrap.dedent(
            """
        import time

        from trainer_callbacks.core.callback import PluginCallback

        EVALS = [{"eval_loss": 1.0 - 0.01 * i} for i in range(40)]


        class Counts(PluginCallback):
            \"\"\"Counts logs across train() calls on purpose: it never resets.\"\"\"

            def __init__(self, start: int = 0) -> None:
                self.start = start
                self.count = start
                super().__init__(start=start)

            def state_dict(self):
                return {"count": self.count}

            def load_state_dict(self, state):
                self.count = state["count"]

            def on_log(self, args, state, control, logs=None, **kwargs):
                self.count += 1
                self.report(args, state, {"counts/n": self.count})


        class Timer(PluginCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                self.report(args, state, {"speed/now": time.perf_counter()})
        """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    argv = [
        "-q",
        "-rxX",
        "-p",
        "no:cacheprovider",
        "--trainer-callbacks-check=third_party_args:Counts(start=5)",
        "--trainer-callbacks-check=third_party_args:Timer",
        "--trainer-callbacks-check-option=metrics=third_party_args:EVALS",
        "--trainer-callbacks-check-option=args={'eval_steps': 4, 'save_steps': 4}",
    ]
    # without the expected failure and the declared keys, Counts' reuse and Timer's exact comparisons fail
    assert pytest.main(argv) == pytest.ExitCode.TESTS_FAILED
    out = capsys.readouterr().out
    assert "Counts(start=5)-check_reuse_across_train_calls" in out and "Timer()-check_reuse_across_train_calls" in out
    code = pytest.main(
        [
            *argv,
            "--trainer-callbacks-xfail=check_reuse_across_train_calls=keeps its history on purpose",
            "--trainer-callbacks-check-option=non_deterministic_keys=['speed/*']",
        ]
    )
    out = capsys.readouterr().out
    assert code == pytest.ExitCode.OK, out
    # 7 checks x 2 callbacks; the expected failure applies to both: Counts fails it, Timer passes it anyway
    assert "12 passed, 1 xfailed, 1 xpassed" in out, out
    assert "Counts(start=5)-check_reuse_across_train_calls" in out and "keeps its history on purpose" in out


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--trainer-callbacks-xfail=check_nonsense=why",
            "no check 'check_nonsense'; the checks are check_state_is_json",
        ),
        ("--trainer-callbacks-check-option=args", "write it as KEY=VALUE"),
        ("--trainer-callbacks-check-option=metrics=not a literal", "a Python literal or a package.module:attribute"),
    ],
)
def test_pytest_option_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], option: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "cbmod.py").write_text(
        "from transformers import TrainerCallback\n\nclass Harmless(TrainerCallback):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code = pytest.main(["-q", "-p", "no:cacheprovider", "--trainer-callbacks-check=cbmod:Harmless", option])
    captured = capsys.readouterr()
    assert code == pytest.ExitCode.USAGE_ERROR
    assert message in captured.err + captured.out


def test_pytest_option_constructor_arguments_must_be_literal_keywords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "cbmod2.py").write_text(
        "from transformers import TrainerCallback\n\nclass H(TrainerCallback):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code = pytest.main(["-q", "-p", "no:cacheprovider", "--trainer-callbacks-check=cbmod2:H(3)"])
    captured = capsys.readouterr()
    assert code == pytest.ExitCode.USAGE_ERROR
    assert "keywords with Python literal values" in captured.err + captured.out
