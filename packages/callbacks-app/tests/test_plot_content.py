"""What ``curves.png`` shows, read from the matplotlib objects (titles, lines, markers), not from pixels.

The run below is written by hand: its history, the options its callbacks saved, its
checkpoint folders and best checkpoint are chosen here, so every expected panel, point and
marker is known without the plotting code.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

from trainer_callbacks.app.plotting import Checkpoints, checkpoint_marks, curves_figure, monitored_metrics, plot_run
from trainer_callbacks.core import PlotEvent, PlotPanel, hookimpl, plugins

pytest.importorskip("matplotlib")

EVAL_STEPS = [10, 20, 30, 40]
ACCURACY = [0.6, 0.7, 0.75, 0.72]
EVAL_LOSS = [0.9, 0.7, 0.65, 0.66]
F1 = [0.5, 0.55, 0.6, 0.58]


def history() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for i, step in enumerate(EVAL_STEPS):
        entries.append({"loss": 1.0 - 0.1 * i, "learning_rate": 1e-3, "grad_norm": 2.0, "step": step - 5})
        entries.append(
            {
                "eval_loss": EVAL_LOSS[i],
                "eval_accuracy": ACCURACY[i],
                "eval_f1": F1[i],
                "eval_runtime": 0.1,
                "step": step,
            }
        )
        entries.append({"speed/samples_per_s": 100.0 + i, "step": step})
    return entries


def state(best: str | None = "/elsewhere/run/checkpoint-30") -> dict[str, Any]:
    return {
        "log_history": history(),
        "best_model_checkpoint": best,
        "stateful_callbacks": {
            # monitored metrics, named the ways callbacks save them: a mapping, a list of records, a bare name
            "Stopper": {"args": {"monitor": {"eval_loss": "min", "accuracy": "max"}}, "attributes": {}},
            "Recorder": [{"args": {"metrics": [{"name": "eval_f1", "mode": "max"}]}, "attributes": {}}],
            "TrainerControl": {"args": {"should_save": False}, "attributes": {}},
            "Unrelated": {"args": {"mode": "min", "note": "eval_missing"}, "attributes": {}},
        },
    }


def write_run(root: Path, kept: list[int], best: str | None = "/elsewhere/run/checkpoint-30") -> Path:
    run = root / "run"
    run.mkdir()
    (run / "trainer_state.json").write_text(json.dumps(state(best)))
    for step in kept:
        (run / f"checkpoint-{step}").mkdir()
    (run / "checkpoint-notes.txt").write_text("not a checkpoint")
    return run / "trainer_state.json"


@pytest.fixture
def panel_plugin(fresh_plugin_registry: None, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A code-registered plugin that adds a panel and an event (no other plugin loaded)."""
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reload()
    module = types.ModuleType("speedplug")

    @hookimpl
    def plot_panels(log_history: list[dict[str, Any]]) -> list[PlotPanel]:  # declares only what it uses
        return [PlotPanel(("speed/samples_per_s",), title="throughput", ylabel="samples/s", log_scale=True)]

    @hookimpl
    def plot_events(log_history: list[dict[str, Any]]) -> list[PlotEvent]:
        return [PlotEvent(step=35, label="slowdown", kind="speed")]

    module.plot_panels = plot_panels  # type: ignore[attr-defined]
    module.plot_events = plot_events  # type: ignore[attr-defined]
    plugins.register_plugin(module, name="speedplug")
    return module


def line(ax: Any, label: str) -> Any:
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, [ln.get_label() for ln in ax.get_lines()]
    return found[0]


def test_monitored_metrics_come_from_the_saved_callback_options() -> None:
    # eval_loss has its own panel; 'accuracy' is the Trainer's eval_accuracy; eval_missing was never logged
    assert monitored_metrics(state(), history()) == ["eval_accuracy", "eval_f1"]
    assert monitored_metrics({}, history()) == []
    assert monitored_metrics({"stateful_callbacks": "broken"}, history()) == []


def test_checkpoint_marks_read_the_folder_and_the_best_checkpoint(tmp_path: Path) -> None:
    state_file = write_run(tmp_path, kept=[30, 40])
    assert checkpoint_marks(state_file, state()) == Checkpoints(kept=(30, 40), best=30)
    # a checkpoint's own trainer_state.json: the output folder is its parent
    (state_file.parent / "checkpoint-40" / "trainer_state.json").write_text("{}")
    marks = checkpoint_marks(state_file.parent / "checkpoint-40" / "trainer_state.json", state(best=None))
    assert marks == Checkpoints(kept=(30, 40), best=None)


def test_curves_show_every_monitored_metric_plugin_panels_and_the_checkpoints(
    tmp_path: Path, panel_plugin: types.ModuleType
) -> None:
    import matplotlib.pyplot as plt

    state_file = write_run(tmp_path, kept=[30, 40])
    drawn = curves_figure(history(), state(), state_file)
    try:
        axes = drawn.figure.axes
        assert [ax.get_title() for ax in axes] == [
            "training loss",
            "eval loss",
            "learning rate",
            "eval_accuracy (monitored)",
            "eval_f1 (monitored)",
            "throughput",
        ]
        by_title = {ax.get_title(): ax for ax in axes}
        accuracy = by_title["eval_accuracy (monitored)"]
        assert list(line(accuracy, "eval_accuracy").get_xdata()) == EVAL_STEPS
        assert list(line(accuracy, "eval_accuracy").get_ydata()) == ACCURACY
        # kept checkpoints 30 and 40 (hollow squares), the best (step 30) a star, on each evaluation panel
        for title, values in (
            ("eval loss", EVAL_LOSS),
            ("eval_accuracy (monitored)", ACCURACY),
            ("eval_f1 (monitored)", F1),
        ):
            ax = by_title[title]
            kept = line(ax, "kept checkpoints (2)")
            assert list(kept.get_xdata()) == [30, 40]
            assert list(kept.get_ydata()) == [values[2], values[3]]
            best = line(ax, "best checkpoint (step 30)")
            assert (list(best.get_xdata()), list(best.get_ydata())) == ([30], [values[2]])
            assert best.get_marker() == "*" and kept.get_marker() == "s"
            assert "best checkpoint (step 30)" in [t.get_text() for t in ax.get_legend().get_texts()]
        # not on the training panels
        assert all("checkpoint" not in ln.get_label() for ln in by_title["training loss"].get_lines())
        # the plugin's panel: its key, its y label and log scale, and the plugin's event on every panel
        speed = by_title["throughput"]
        assert list(line(speed, "speed/samples_per_s").get_ydata()) == [100.0, 101.0, 102.0, 103.0]
        assert speed.get_ylabel() == "samples/s" and speed.get_yscale() == "log"
        for ax in axes:
            assert list(line(ax, "slowdown").get_xdata()) == [35, 35]
        assert drawn.monitored == ["eval_accuracy", "eval_f1"]
        assert drawn.checkpoints == Checkpoints(kept=(30, 40), best=30)
    finally:
        plt.close(drawn.figure)


def test_a_run_without_checkpoints_or_monitors_draws_the_base_panels(
    tmp_path: Path, fresh_plugin_registry: None
) -> None:
    import matplotlib.pyplot as plt

    drawn = curves_figure([{"loss": 1.0, "step": 1}, {"loss": 0.5, "step": 2}], {}, None)
    try:
        assert [ax.get_title() for ax in drawn.figure.axes] == ["training loss"]
        assert drawn.checkpoints == Checkpoints()
    finally:
        plt.close(drawn.figure)


def test_a_panel_with_nothing_logged_is_left_out_and_a_bad_return_is_skipped(
    tmp_path: Path, fresh_plugin_registry: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import matplotlib.pyplot as plt

    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reload()
    module = types.ModuleType("oddplug")

    @hookimpl
    def plot_panels(log_history: list[dict[str, Any]], trainer_state: dict[str, Any]) -> list[Any]:
        assert trainer_state["best_model_checkpoint"] == "/elsewhere/run/checkpoint-30"
        return [PlotPanel(("never/logged",), title="empty"), "not a panel"]

    module.plot_panels = plot_panels  # type: ignore[attr-defined]
    plugins.register_plugin(module, name="oddplug")
    drawn = curves_figure(history(), state(), None)
    try:
        assert "empty" not in [ax.get_title() for ax in drawn.figure.axes]
        assert "oddplug: plot_panels returned 'not a panel', not a PlotPanel; skipped" in capsys.readouterr().err
    finally:
        plt.close(drawn.figure)
    with pytest.raises(ValueError, match="PlotPanel keys must be non-empty"):
        PlotPanel((), title="x")


def test_plot_run_writes_curves_png(tmp_path: Path, panel_plugin: types.ModuleType) -> None:
    state_file = write_run(tmp_path, kept=[40])
    written = plot_run(state_file.parent, tmp_path / "plots")
    assert written[0] == tmp_path / "plots" / "curves.png"
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
