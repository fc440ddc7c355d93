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
from trainer_callbacks.core.testing import CallbackCheckError, check_callback, checks, parametrize_with_checks


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
    # the plugin is loaded from core's pytest11 entry point as in any pytest session.
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
    assert "11 passed" in out and "1 failed" in out, out
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
