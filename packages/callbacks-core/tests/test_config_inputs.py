"""``create`` / ``create_all`` given what they cannot use: one ``ConfigurationError`` that says what was expected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trainer_callbacks.core import CallbackSpec, ConfigurationError, create, create_all, hookimpl, plugins


class Probe:
    """A callback stand-in.

    Args:
        monitor (str): what to watch.
    """

    def __init__(self, monitor: str = "eval_loss") -> None:
        self.monitor = monitor


@pytest.fixture(autouse=True)
def probe_plugin(fresh_plugin_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reload()
    module = types.ModuleType("probe_plugin")

    @hookimpl
    def register_callbacks(register):  # type: ignore[no-untyped-def]
        register(CallbackSpec(name="probe", summary="probe", factory=Probe))

    module.register_callbacks = register_callbacks  # type: ignore[attr-defined]
    plugins.register_plugin(module, name="probe")


def _file(content: bytes, name: str = "callbacks.toml") -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        return path

    return make


SHAPE = r"a mapping of callback names to option tables.*or the path of a TOML file"

BAD_CONFIGS: list[tuple[str, Callable[[Path], Any], str]] = [
    ("None", lambda _: None, rf"None \(NoneType\): pass {SHAPE}"),
    ("a list", lambda _: ["probe"], rf"\['probe'\] \(list\): pass {SHAPE}"),
    ("a number", lambda _: 3, rf"3 \(int\): pass {SHAPE}"),
    ("a float", lambda _: 0.5, rf"0.5 \(float\): pass {SHAPE}"),
    ("bytes", lambda _: b"callbacks.toml", r"\(bytes\): pass a mapping"),
    ("a folder", lambda tmp: tmp, r"is a folder; pass a TOML file"),
    ("a missing file", lambda tmp: tmp / "nope.toml", r"nope.toml' does not exist; pass a mapping"),
    ("a bare name", lambda _: "probe", r"'probe' does not exist \(to build one callback, pass \{'probe': \{\}\}\)"),
    ("latin-1 TOML", _file("[probe]\nmonitor = 'précision'\n".encode("latin-1")), r"is not UTF-8 text .*save it"),
    ("UTF-16 TOML", _file("[probe]\n".encode("utf-16")), r"is not UTF-8 text"),
    ("invalid TOML", _file(b"[probe\n"), r"is not valid TOML"),
    ("a top-level option", _file(b'monitor = "eval_loss"\n'), r"'monitor' must map to a table of options.*got str"),
    ("a name that is not a string", lambda _: {1: {}}, r"key 1 \(int\) must be a callback name \(a string\)"),
    ("an option key that is not a string", lambda _: {"probe": {1: "x"}}, r"option 1 \(int\) of 'probe' must be"),
    ("a table that is a number", lambda _: {"probe": 3}, r"'probe' must map to a table of options.*got int 3"),
    ("a table that is a list", lambda _: {"probe": ["eval_loss"]}, r"must map to a table of options.*got list"),
    ("a table that is a string", lambda _: {"probe": "eval_loss"}, r"must map to a table of options.*got str"),
]


@pytest.mark.parametrize(
    ("config", "expected"), [(c, e) for _, c, e in BAD_CONFIGS], ids=[i for i, _, _ in BAD_CONFIGS]
)
def test_create_all_refuses_what_is_not_a_config(config: Callable[[Path], Any], expected: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        create_all(config(tmp_path))


@pytest.mark.parametrize("name", [None, ["probe"], 3, b"probe"], ids=["None", "list", "number", "bytes"])
def test_create_refuses_a_name_that_is_not_a_string(name: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"pass the name as a string, e.g. create\('earlystop'\)"):
        create(name)


def test_what_is_accepted_still_builds(tmp_path: Path) -> None:
    """The same inputs done right: a UTF-8 TOML file (with a non-ASCII value), a PathLike, an empty table."""
    path = tmp_path / "callbacks.toml"
    path.write_text("[probe]\nmonitor = 'précision'\n", encoding="utf-8")
    assert [cb.monitor for cb in create_all(path)] == ["précision"]
    assert [cb.monitor for cb in create_all(str(path))] == ["précision"]
    assert [cb.monitor for cb in create_all({"probe": None})] == ["eval_loss"]
    assert create_all({}) == []
    path.write_bytes(b"\xef\xbb\xbf[probe]\nmonitor = 'bom'\n")  # UTF-8 with a byte-order mark (Windows editors)
    assert [cb.monitor for cb in create_all(path)] == ["bom"]
