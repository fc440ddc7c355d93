"""Discovery, the environment switches, create/create_all and their errors (in process)."""

from __future__ import annotations

import types
from importlib import metadata
from pathlib import Path

import pytest

from trainer_callbacks.core import (
    CallbackSpec,
    ConfigurationError,
    PluginLoadError,
    UnknownCallbackError,
    UnknownOptionError,
    create,
    create_all,
    hookimpl,
    plugins,
)
from trainer_callbacks.core.plugins import load_status


class Probe:
    """A callback stand-in.

    Args:
        monitor (str): what to watch.
        patience (int): how long to wait.
    """

    def __init__(self, monitor: str, patience: int = 3) -> None:
        self.monitor, self.patience = monitor, patience


def make_plugin(name: str = "probe") -> types.ModuleType:
    module = types.ModuleType(f"fake_plugin_{name}")

    @hookimpl
    def register_callbacks(register):  # type: ignore[no-untyped-def]
        register(CallbackSpec(name=name, summary=f"{name} summary", factory=Probe))

    module.register_callbacks = register_callbacks  # type: ignore[attr-defined]
    return module


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch, fresh_plugin_registry: None) -> dict[str, types.ModuleType]:
    """Entry points `good` and `other` (importable modules) and `broken` (raises on import)."""
    import sys

    modules = {"good": make_plugin("good"), "other": make_plugin("other")}
    for module in modules.values():
        monkeypatch.setitem(sys.modules, module.__name__, module)
    broken = types.ModuleType("fake_plugin_broken")
    monkeypatch.setitem(sys.modules, "fake_plugin_broken", None)  # import of it raises ImportError
    del broken
    eps = [
        metadata.EntryPoint("good", "fake_plugin_good", plugins.ENTRY_POINT_GROUP),
        metadata.EntryPoint("other", "fake_plugin_other", plugins.ENTRY_POINT_GROUP),
        metadata.EntryPoint("broken", "fake_plugin_broken", plugins.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(plugins, "_entry_points", lambda: sorted(eps, key=lambda ep: ep.name))
    return modules


def statuses() -> dict[str, str]:
    return {info.name: info.status for info in load_status()}


def test_a_broken_plugin_is_reported_and_the_others_still_load(fake_entry_points: object) -> None:
    assert statuses() == {"broken": "failed", "good": "loaded", "other": "loaded"}
    assert isinstance(create("good", monitor="eval_loss"), Probe)
    with pytest.raises(PluginLoadError) as info:
        create("broken")
    message = str(info.value)
    assert "'broken'" in message and "fake_plugin_broken" in message and "TRAINER_CALLBACKS_BLOCK_PLUGINS" in message
    assert isinstance(info.value.original, ImportError)


def test_block_list(fake_entry_points: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.ENV_BLOCK, "broken, other")
    plugins.reload()
    assert statuses() == {"broken": "blocked", "good": "loaded", "other": "blocked"}
    with pytest.raises(UnknownCallbackError, match="blocked"):
        create("other", monitor="x")


def test_allow_list(fake_entry_points: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.ENV_ALLOW, "other")
    plugins.reload()
    assert statuses() == {"broken": "not allowed", "good": "not allowed", "other": "loaded"}


def test_autoload_off_loads_only_the_named_and_the_registered_in_code(
    fake_entry_points: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reload()
    assert set(statuses().values()) == {"not allowed"}
    plugins.register_plugin(make_plugin("incode"), name="incode")
    assert statuses()["incode"] == "loaded"
    assert isinstance(create("incode", monitor="m"), Probe)

    monkeypatch.setenv(plugins.ENV_ALLOW, "good")
    plugins.reload()
    assert statuses()["good"] == "loaded" and statuses()["other"] == "not allowed"


def test_discover_reads_metadata_without_importing(fake_entry_points: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "fake_plugin_good")  # importing it now would fail
    names = [info.name for info in plugins.discover()]
    assert names == ["broken", "good", "other"]
    assert "fake_plugin_good" not in sys.modules


def test_unknown_option_names_it_suggests_and_lists_the_valid_ones(fake_entry_points: object) -> None:
    with pytest.raises(UnknownOptionError) as info:
        create("good", monitor="eval_loss", patiense=2)
    message = str(info.value)
    assert "'patiense'" in message and "Did you mean 'patience'?" in message and "monitor, patience" in message


def test_missing_required_option(fake_entry_points: object) -> None:
    with pytest.raises(ConfigurationError, match="needs option"):
        create("good")


def test_unknown_callback_lists_the_available_and_suggests_an_install_for_any_name(fake_entry_points: object) -> None:
    """Core knows no plugin by name: the pip line is a suggestion derived from the name asked for."""
    with pytest.raises(UnknownCallbackError) as info:
        create("lossspike")
    message = str(info.value)
    assert "Available: good, other." in message
    assert "pip install trainer-callbacks-lossspike" in message
    with pytest.raises(UnknownCallbackError, match="Did you mean 'good'") as info:
        create("goood")
    assert "pip install" not in str(info.value)  # a near miss of an installed name is a typo, not a missing plugin


def test_create_all_from_mapping_and_toml(fake_entry_points: object, tmp_path: Path) -> None:
    made = create_all({"good": {"monitor": "eval_loss", "patience": 5}, "other": {"monitor": "eval_f1"}})
    assert [(cb.monitor, cb.patience) for cb in made] == [("eval_loss", 5), ("eval_f1", 3)]

    toml = tmp_path / "callbacks.toml"
    toml.write_text('[other]\nmonitor = "eval_acc"\n\n[good]\nmonitor = "eval_loss"\npatience = 1\n')
    made = create_all(toml)
    assert [(cb.monitor, cb.patience) for cb in made] == [("eval_acc", 3), ("eval_loss", 1)]


def test_create_all_checks_everything_before_building_anything(fake_entry_points: object) -> None:
    with pytest.raises(UnknownOptionError, match="'bogus'"):
        create_all({"good": {"monitor": "x"}, "other": {"monitor": "y", "bogus": 1}})


def test_create_all_config_errors(fake_entry_points: object, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        create_all(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[good\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        create_all(bad)
    with pytest.raises(ConfigurationError, match="table of options"):
        create_all({"good": 3})


def test_two_plugins_registering_one_name_is_an_error(
    fresh_plugin_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reload()
    plugins.register_plugin(make_plugin("same"), name="first")
    plugins.register_plugin(make_plugin("same"), name="second")
    with pytest.raises(ValueError, match="registered by both"):
        plugins.callback_specs()


def test_hookimpl_marker_is_required(fresh_plugin_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reload()
    module = types.ModuleType("unmarked")

    def register_callbacks(register):  # type: ignore[no-untyped-def]  # no @hookimpl: ignored
        register(CallbackSpec(name="unmarked", summary="", factory=Probe))

    module.register_callbacks = register_callbacks  # type: ignore[attr-defined]
    plugins.register_plugin(module, name="unmarked")
    assert "unmarked" not in plugins.callback_specs()


def test_a_typo_in_the_allow_list_is_named_with_the_installed_plugins(
    fake_entry_points: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRAINER_CALLBACKS_PLUGINS=goood loads nothing: say that 'goood' is no plugin, not that none is installed."""
    monkeypatch.setenv(plugins.ENV_ALLOW, "goood")
    plugins.reload()
    with pytest.warns(UserWarning) as caught:
        plugins.callback_specs()
    (warning,) = [str(w.message) for w in caught]
    assert "TRAINER_CALLBACKS_PLUGINS names 'goood', which is not an installed plugin" in warning
    assert "Did you mean 'good'?" in warning and "Installed plugins: broken, good, other." in warning
    with pytest.raises(UnknownCallbackError) as info:
        create("good", monitor="x")
    message = str(info.value)
    assert "No trainer-callbacks plugin is installed" not in message
    assert "Plugin 'good' is installed but not allowed: not in TRAINER_CALLBACKS_PLUGINS=goood" in message
    assert "names 'goood'" in message and "Did you mean 'good'?" in message


def test_unknown_callback_with_everything_switched_off_lists_what_is_installed(
    fake_entry_points: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plugins.ENV_ALLOW, "goood")
    plugins.reload()
    with pytest.warns(UserWarning), pytest.raises(UnknownCallbackError) as info:
        create("something")
    assert "Installed but not allowed: not in TRAINER_CALLBACKS_PLUGINS=goood: broken, good, other." in str(info.value)


def test_a_typo_in_the_block_list_warns_and_blocks_the_rest(
    fake_entry_points: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plugins.ENV_BLOCK, "othr, broken")
    plugins.reload()
    with pytest.warns(UserWarning, match=r"TRAINER_CALLBACKS_BLOCK_PLUGINS names 'othr'.*blocks nothing") as caught:
        assert statuses() == {"broken": "blocked", "good": "loaded", "other": "loaded"}
    assert "Did you mean 'other'?" in str(caught[0].message)


def test_valid_switches_warn_about_nothing(fake_entry_points: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    monkeypatch.setenv(plugins.ENV_ALLOW, "good, other")
    monkeypatch.setenv(plugins.ENV_BLOCK, "other")
    plugins.reload()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert statuses() == {"broken": "not allowed", "good": "loaded", "other": "blocked"}
    assert plugins.registry().selection_problems == []


def test_list_shows_a_switch_typo_and_strict_fails_on_it(
    fake_entry_points: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer_callbacks.core.cli import main

    monkeypatch.setenv(plugins.ENV_ALLOW, "good,otter")
    plugins.reload()
    assert main(["list"]) == 0
    captured = capsys.readouterr()
    assert (
        "warning: TRAINER_CALLBACKS_PLUGINS names 'otter'" in captured.err and "Did you mean 'other'?" in captured.err
    )
    assert any(line.startswith("good") and "loaded" in line for line in captured.out.splitlines())
    plugins.reload()
    assert main(["list", "--strict"]) == 1
