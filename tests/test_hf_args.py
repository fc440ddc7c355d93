"""``trainer_callbacks.core.hf_args``: callback options as ``HfArgumentParser`` dataclasses, parsed back.

A probe callback registered in code covers every kind of option type; the installed plugins
are then checked to parse next to ``TrainingArguments`` without a name clash.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import HfArgumentParser, TrainingArguments

from trainer_callbacks.core import CallbackSpec, hookimpl, plugins
from trainer_callbacks.core.errors import ConfigurationError, UnknownCallbackError
from trainer_callbacks.core.hf_args import (
    CallbackSelectionArguments,
    callback_dataclasses,
    create_callbacks,
    options_dataclass,
    parse_option_value,
    to_config,
)


class Probe:
    """A callback with one option of each kind.

    Args:
        needed (int): a required option.
        count (int): how many.
        rate (float): a rate.
        name (str): a name.
        flag (bool): off by default.
        enabled (bool): on by default.
        mode (Literal["min", "max"]): direction.
        limit (int | None): an optional limit.
        monitor (str | dict[str, str]): one metric or metrics with modes.
        levels (list[float] | None): a list.
    """

    def __init__(
        self,
        needed: int,
        count: int = 3,
        rate: float = 0.1,
        name: str = "x",
        flag: bool = False,
        enabled: bool = True,
        mode: Literal["min", "max"] = "min",
        limit: int | None = None,
        monitor: str | dict[str, str] = "eval_loss",
        levels: list[float] | None = None,
    ) -> None:
        self.options = {k: v for k, v in locals().items() if k != "self"}


class Other:
    """Another callback.

    Args:
        size (int): a size.
    """

    def __init__(self, size: int = 1) -> None:
        self.size = size


PROBE = CallbackSpec("probe", "a probe", Probe)


class FakePlugin:
    @hookimpl
    def register_callbacks(self, register: Any) -> None:
        register(PROBE)
        register(CallbackSpec("other", "another", Other))


@pytest.fixture
def probe_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only the fake plugin is loaded."""
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    monkeypatch.delenv(plugins.ENV_ALLOW, raising=False)
    plugins.reload()
    plugins.register_plugin(FakePlugin(), name="fake")
    yield
    plugins.reload()


def parse(argv: list[str], *classes: type) -> tuple[Any, ...]:
    parser = HfArgumentParser(classes)  # type: ignore[arg-type]
    return tuple(parser.parse_args_into_dataclasses(args=argv))


def test_fields_are_named_per_callback_and_typed_for_hf_argument_parser() -> None:
    fields = {f.name: f for f in dataclasses.fields(options_dataclass(PROBE))}
    assert list(fields) == [
        f"probe_{n}"
        for n in ("needed", "count", "rate", "name", "flag", "enabled", "mode", "limit", "monitor", "levels")
    ]
    assert fields["probe_count"].type == int | None and fields["probe_count"].default is None
    assert fields["probe_flag"].type is bool and fields["probe_flag"].default is False
    assert fields["probe_enabled"].default is True
    assert fields["probe_monitor"].type == str | None  # complex: read as text, parsed back
    assert "callback default: 3" in fields["probe_count"].metadata["help"]
    assert "required" in fields["probe_needed"].metadata["help"]
    assert options_dataclass(PROBE) is options_dataclass(PROBE)


def test_every_kind_of_option_parses_back() -> None:
    probe_args = options_dataclass(PROBE)
    (values,) = parse(
        [
            "--probe_needed",
            "2",
            "--probe_count",
            "3",
            "--probe_rate",
            "0.5",
            "--probe_flag",
            "--no_probe_enabled",
            "--probe_mode",
            "max",
            "--probe_limit",
            "7",
            "--probe_monitor",
            "eval_loss=min,eval_accuracy=max",
            "--probe_levels",
            "0.1,0.01",
        ],
        probe_args,
    )
    options = to_config(values)["probe"]
    # count=3 equals the default but was given, so it counts (fields default to None = "not given")
    assert options == {
        "needed": 2,
        "count": 3,
        "rate": 0.5,
        "flag": True,
        "enabled": False,
        "mode": "max",
        "limit": 7,
        "monitor": {"eval_loss": "min", "eval_accuracy": "max"},
        "levels": [0.1, 0.01],
    }
    assert Probe(**options).options == {**options, "name": "x"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"eval_loss": "min"}', {"eval_loss": "min"}),  # JSON
        ('["eval_loss", "eval_f1"]', ["eval_loss", "eval_f1"]),
        ("eval_loss,eval_f1", ["eval_loss", "eval_f1"]),  # comma list
        ("eval_loss", "eval_loss"),  # plain string
        ("3", "3"),  # the option accepts str: text that looks like a number stays text
    ],
)
def test_complex_option_forms(text: str, expected: Any) -> None:
    (values,) = parse(["--probe_needed", "1", "--probe_monitor", text], options_dataclass(PROBE))
    assert to_config(values)["probe"]["monitor"] == expected


def test_a_bad_choice_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--probe_mode", "average"], options_dataclass(PROBE))
    err = capsys.readouterr().err
    assert "invalid choice" in err or "choose from" in err


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(json_values)
def test_json_text_always_parses_to_its_value(value: Any) -> None:
    assert parse_option_value(json.dumps(value)) == value


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(
    lambda w: w not in ("true", "false", "null", "none")
)


@given(st.lists(words, min_size=2, max_size=5))
def test_comma_lists_and_pairs(items: list[str]) -> None:
    assert parse_option_value(",".join(items)) == items
    pairs = {w: f"v{i}" for i, w in enumerate(items)}
    assert parse_option_value(",".join(f"{k}={v}" for k, v in pairs.items())) == pairs


def _parse_all(argv: list[str]) -> tuple[Any, ...]:
    return parse(argv, *callback_dataclasses())


@pytest.mark.usefixtures("probe_only")
def test_selection_defaults_to_the_callbacks_given_options() -> None:
    assert to_config(*_parse_all(["--probe_needed", "1"])) == {"probe": {"needed": 1}}
    assert to_config(*_parse_all([])) == {}
    assert to_config(*_parse_all(["--callbacks", "all", "--probe_needed", "1"])) == {
        "other": {},
        "probe": {"needed": 1},
    }
    assert to_config(*_parse_all(["--callbacks", "other", "--other_size", "4"])) == {"other": {"size": 4}}
    assert to_config(*_parse_all(["--callbacks", "none"])) == {}


@pytest.mark.usefixtures("probe_only")
def test_options_for_a_callback_left_out_are_an_error() -> None:
    with pytest.raises(ConfigurationError, match=r"--probe_count given, but --callbacks other leaves out probe"):
        to_config(*_parse_all(["--callbacks", "other", "--probe_count", "2"]))
    with pytest.raises(ConfigurationError, match=r"--callbacks none leaves out probe"):
        to_config(*_parse_all(["--callbacks", "none", "--probe_count", "2"]))
    with pytest.raises(UnknownCallbackError, match="Available: other, probe"):
        to_config(*_parse_all(["--callbacks", "probe,nosuch", "--probe_needed", "1"]))
    with pytest.raises(ConfigurationError, match="cannot be combined"):
        to_config(CallbackSelectionArguments(callbacks="all,probe"))


@pytest.mark.usefixtures("probe_only")
def test_create_callbacks_builds_them_with_the_options() -> None:
    callbacks = create_callbacks(*_parse_all(["--callbacks", "probe,other", "--probe_needed", "5"]))
    assert [type(cb) for cb in callbacks] == [Probe, Other]
    assert callbacks[0].options["needed"] == 5
    with pytest.raises(ConfigurationError, match="needs option"):
        create_callbacks(*_parse_all(["--callbacks", "probe"]))


def test_installed_plugins_parse_next_to_training_arguments(require_plugins: Any) -> None:
    require_plugins("earlystop", "lr")
    plugins.reload()
    classes = callback_dataclasses()
    train_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    clashes = {f.name for cls in classes for f in dataclasses.fields(cls)} & train_fields
    assert not clashes
    training_args, *callback_args = parse(
        ["--output_dir", "unused", "--report_to", "none", "--earlystop_patience", "3", "--lr_factor", "0.5"],
        TrainingArguments,
        *classes,
    )
    assert training_args.output_dir == "unused"
    assert to_config(*callback_args) == {"earlystop": {"patience": 3}, "lr": {"factor": 0.5}}
    early, lr = create_callbacks(*callback_args)
    assert early.state()["args"]["patience"] == 3 and lr.state()["args"]["factor"] == 0.5


# ---- --help -------------------------------------------------------------------------------------
class Percent:
    """A callback whose documentation uses argparse's formatting characters.

    Args:
        share (float): about 3.5% of a step; %(default)s and %d are text here, not placeholders.
        flag (bool): 100% on.
        levels (list[float] | None): each 10% lower.
    """

    def __init__(self, share: float = 0.5, flag: bool = False, levels: list[float] | None = None) -> None:
        pass


def _help_text(capsys: pytest.CaptureFixture[str], *classes: type) -> str:
    parser = HfArgumentParser(classes)  # type: ignore[arg-type]
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_help_shows_percent_signs_in_option_docs_literally(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help_text(capsys, options_dataclass(CallbackSpec("percent", "percent signs", Percent)))
    assert "about 3.5% of a step; %(default)s and %d are text here" in text
    assert "100% on." in text and "each 10% lower." in text


def test_help_works_with_every_installed_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    """``examples/run_classification.py --help`` builds this parser (it crashed on gradviz's "3.5%")."""
    plugins.reload()
    from trainer_callbacks.core import callback_specs

    specs = callback_specs()
    assert specs, "the repository's environment installs the first-party plugins"
    text = _help_text(capsys, TrainingArguments, *callback_dataclasses())
    for spec in specs.values():
        for opt in spec.option_specs():
            assert f"--{spec.name}_{opt.name}" in text
            # every doc reaches the help unchanged (compared without whitespace: argparse wraps lines, also
            # after a hyphen, as in "module-level")
            assert "".join(opt.doc.split()) in "".join(text.split())
