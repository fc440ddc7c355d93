"""``trainer-callbacks plot``, added by the app's ``register_commands`` hook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer_callbacks.core.cli import main


def test_plot_draws_the_curves_from_trainer_state(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    history = [{"loss": 1.0 / (s + 1), "learning_rate": 1e-3 * (1 - s / 20), "step": s} for s in range(1, 20)]
    history += [{"eval_loss": 0.5 + 0.01 * s, "step": s} for s in range(5, 20, 5)]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "plots")]) == 0
    png = tmp_path / "plots" / "curves.png"
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 500
    assert pixels.std() > 0.01  # not a blank canvas


def test_plot_without_a_trainer_state_says_what_to_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", str(tmp_path)]) == 2
    assert "no trainer_state.json" in capsys.readouterr().err


def test_frequent_events_become_ticks_and_rare_ones_stay_lines() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from trainer_callbacks.app.plotting import FREQUENT, _mark_events
    from trainer_callbacks.core import PlotEvent

    prunes = [PlotEvent(step=10 * i, label="pruned", kind="prune") for i in range(1, FREQUENT + 3)]
    stop = PlotEvent(step=75, label="early stop", kind="early_stop")
    fig, ax = plt.subplots()
    _mark_events(ax, [*prunes, stop], {"prune": "red", "early_stop": "blue"})
    lines = {line.get_label(): line for line in ax.get_lines()}
    plt.close(fig)
    ticks = lines[f"prune ({len(prunes)})"]
    # get_xdata is annotated ArrayLike (a scalar too): as an array, then a list
    assert np.asarray(ticks.get_xdata()).tolist() == [e.step for e in prunes] and ticks.get_marker() == "|"
    assert np.asarray(lines["early stop"].get_xdata()).tolist() == [75, 75]  # a full-height vertical line


def test_the_apps_entry_point_is_light() -> None:
    """``trainer-callbacks list`` imports every plugin module: the app's must import neither torch nor transformers
    (its commands import matplotlib, torch and datasets only when they run)."""
    from trainer_callbacks.testing import check_plugin_module_is_light

    check_plugin_module_is_light("trainer_callbacks.app.plugin")
