"""What a plugin declares on its ``CallbackSpec`` for the demo and the summary; core names no plugin.

A third-party plugin registered in code gets the same treatment as a first-party one: its
``demo_options`` in the demo's config, its ``summary_order`` in the summary and in ``plot``.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

from trainer_callbacks.core import CallbackSpec, hookimpl, plugins


class Needy:
    """A callback with a required option.

    Args:
        monitor (str): what to watch.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor


def plugin_module(
    name: str,
    *,
    spec: dict[str, Any] | None = None,
    summary: list[str] | None = None,
    figure: bool = False,
    events_raise: bool = False,
) -> types.ModuleType:
    module = types.ModuleType(f"plugin_{name}")
    if spec is not None:

        @hookimpl
        def register_callbacks(register):  # type: ignore[no-untyped-def]
            register(CallbackSpec(name=name, summary=name, factory=Needy, **spec))

        module.register_callbacks = register_callbacks  # type: ignore[attr-defined]
    if summary is not None:

        @hookimpl
        def summarize_run(log_history, output_dir):  # type: ignore[no-untyped-def]
            if summary == ["raise"]:
                raise RuntimeError("broken summary")
            return summary

        module.summarize_run = summarize_run  # type: ignore[attr-defined]
    if figure:

        @hookimpl
        def plot_figures(log_history, output_dir):  # type: ignore[no-untyped-def]
            path = Path(output_dir) / f"{name}.png"
            path.write_bytes(b"\x89PNG\r\n\x1a\n")
            return [path]

        module.plot_figures = plot_figures  # type: ignore[attr-defined]
    if events_raise:

        @hookimpl
        def plot_events(log_history):  # type: ignore[no-untyped-def]
            raise KeyError("no such key")

        module.plot_events = plot_events  # type: ignore[attr-defined]
    return module


@pytest.fixture
def no_autoload(fresh_plugin_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reload()


@pytest.mark.parametrize(
    ("field", "value"),
    [("demo_options", ["monitor"]), ("demo_options", {1: "x"}), ("summary_order", "1"), ("summary_order", True)],
)
def test_spec_fields_are_checked(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"CallbackSpec\('x'\).{field}="):
        CallbackSpec(name="x", summary="", factory="m:C", **{field: value})


def test_the_demo_config_comes_from_each_spec(no_autoload: None) -> None:
    from trainer_callbacks.app.demo import default_config

    plugins.register_plugin(plugin_module("third", spec={"demo_options": {"monitor": "eval_accuracy"}}), name="third")
    plugins.register_plugin(plugin_module("needy", spec={}), name="needy")
    notes: list[str] = []
    config = default_config(notes)
    assert config == {"third": {"monitor": "eval_accuracy"}}
    assert notes == [
        "note: callback 'needy' needs option(s) monitor; left out (give them in a --config TOML table [needy])"
    ]
    config["third"]["monitor"] = "changed"  # the demo's copy, not the plugin's declaration
    assert plugins.callback_specs()["third"].demo_options == {"monitor": "eval_accuracy"}


def test_the_summary_follows_summary_order_then_the_name(no_autoload: None, tmp_path: Path) -> None:
    from trainer_callbacks.app.summary import plugin_summaries

    # registered in an order that is neither the rank nor the alphabet
    plugins.register_plugin(plugin_module("zz_last", summary=["z"]), name="zz_last")  # no callback: rank 100
    plugins.register_plugin(plugin_module("b_second", spec={"summary_order": 50}, summary=["b"]), name="b_second")
    plugins.register_plugin(plugin_module("a_tied", spec={}, summary=["a"]), name="a_tied")  # default rank 100
    plugins.register_plugin(plugin_module("y_first", spec={"summary_order": 5}, summary=["y"]), name="y_first")
    plugins.register_plugin(plugin_module("broken", spec={"summary_order": 7}, summary=["raise"]), name="broken")
    lines = plugin_summaries([], tmp_path)
    assert list(lines) == ["y_first", "broken", "b_second", "a_tied", "zz_last"]
    assert lines["broken"] == ["(its summary failed: RuntimeError: broken summary)"]


def test_plot_calls_every_plugin_in_order_and_survives_a_broken_one(
    no_autoload: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    from trainer_callbacks.app.plotting import plot_run

    plugins.register_plugin(plugin_module("late", spec={"summary_order": 90}, figure=True), name="late")
    plugins.register_plugin(plugin_module("early", spec={"summary_order": 1}, figure=True), name="early")
    plugins.register_plugin(plugin_module("faulty", spec={}, events_raise=True), name="faulty")
    history = [{"loss": 1.0 / s, "step": s} for s in range(1, 6)]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    written = plot_run(tmp_path, tmp_path / "plots")
    assert [p.name for p in written] == ["curves.png", "early.png", "late.png"]
    assert "plugin faulty: no events (KeyError: 'no such key')" in capsys.readouterr().err


def test_installed_plugins_declare_demo_options_their_callbacks_accept(fresh_plugin_registry: None) -> None:
    """Each installed plugin's ``demo_options`` name real options (checked the way ``create`` checks them)."""
    from trainer_callbacks.core.factory import check_options

    specs = plugins.callback_specs()
    if not specs:
        pytest.skip("no plugin installed")
    assert any(spec.demo_options is not None for spec in specs.values())
    for spec in specs.values():
        if spec.demo_options is not None:
            check_options(spec, spec.demo_options)
