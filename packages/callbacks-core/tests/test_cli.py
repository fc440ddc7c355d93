"""The ``trainer-callbacks`` command."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from trainer_callbacks.core import CallbackSpec, hookimpl, plugins
from trainer_callbacks.core.cli import main


def test_list_imports_neither_torch_nor_transformers() -> None:
    """With every installed plugin loaded, listing must stay light (see bench/ for the timing)."""
    code = (
        "import sys; from trainer_callbacks.core.cli import main; rc = main(['list']); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'numpy', 'datasets') if m in sys.modules); "
        "print('HEAVY', heavy); raise SystemExit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


@pytest.fixture
def documented_plugin(fresh_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reload()

    class Documented:
        """Says hello.

        Args:
            greeting (str): what to say.
            times (int): how often.
        """

        def __init__(self, greeting: str, times: int = 2) -> None:
            pass

    module = types.ModuleType("documented")

    @hookimpl
    def register_callbacks(register):  # type: ignore[no-untyped-def]
        register(CallbackSpec(name="hello", summary="greets", factory=Documented))

    module.register_callbacks = register_callbacks  # type: ignore[attr-defined]
    plugins.register_plugin(module, name="hello_plugin")


def test_show_prints_options_types_defaults_and_docs(
    documented_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", "hello"]) == 0
    out = capsys.readouterr().out
    assert "hello: greets" in out and "plugin: hello_plugin" in out
    assert "greeting: str (required)" in out and "what to say." in out
    assert "times: int = 2" in out and "how often." in out


def test_list_shows_code_registered_plugins(documented_plugin: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("hello_plugin"))
    assert "loaded" in row and "hello" in row and "greets" in row


def test_errors_are_one_clear_line_and_exit_2(documented_plugin: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "helo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trainer-callbacks: error: ") and "Did you mean 'hello'" in err


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

    from trainer_callbacks.core.plotting import FREQUENT, PlotEvent, _mark_events

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
