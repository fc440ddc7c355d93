"""Every option of every first-party callback: declared once, checked alike, documented where users read.

* the public constructors keep their signatures (pinned below, as they were before the options
  were declared in dataclasses) and each signature equals its declaration;
* every flag refuses what ``bool()`` would have misread, every number refuses ``bool`` and
  accepts numpy scalars and 0-d tensors, stored as plain Python numbers (parametrised over the
  declarations, so an option added later is covered without a new test);
* each package README's option table is what ``trainer-callbacks show NAME --markdown`` prints.

``python tests/test_options.py`` rewrites the README tables from the declarations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from trainer_callbacks.core import ConfigurationError, OrNone, PerKey
from trainer_callbacks.core.cli import main as cli_main
from trainer_callbacks.core.options import declared_options, signature_mismatches

REPO = Path(__file__).resolve().parents[1]

CALLBACKS = {
    "earlystop": ("trainer_callbacks.earlystop", "EarlyStopping"),
    "lr": ("trainer_callbacks.lr", "ReduceLROnPlateau"),
    "gradviz": ("trainer_callbacks.gradviz", "GradNormLogger"),
    "checkpoint": ("trainer_callbacks.checkpoint", "CheckpointPruner"),
}

# The signatures before this change (public API: names, order, defaults, annotations). The
# checkpoint pruner's ``strict`` was added by issue 14 ("a misspelt pruner monitor").
SIGNATURES = {
    "EarlyStopping": [
        "monitor: 'str | Mapping[str, str] | list[Any]' = 'eval_loss'",
        "patience: 'int | Mapping[str, int]' = 3",
        "threshold: 'float | Mapping[str, float]' = 0.0",
        "threshold_mode: 'str | Mapping[str, str]' = 'abs'",
        "combine: 'str' = 'all'",
        "baseline: 'float | Mapping[str, float] | None' = None",
        "stopping_threshold: 'float | Mapping[str, float] | None' = None",
        "divergence_threshold: 'float | Mapping[str, float] | None' = None",
        "check_finite: 'bool' = True",
        "min_steps: 'int' = 0",
        "strict: 'bool' = True",
    ],
    "ReduceLROnPlateau": [
        "monitor: 'str' = 'eval_loss'",
        "mode: 'str | None' = None",
        "factor: 'float' = 0.1",
        "patience: 'int' = 10",
        "threshold: 'float' = 0.0001",
        "threshold_mode: 'str' = 'rel'",
        "cooldown: 'int' = 0",
        "min_lr: 'float | list[float]' = 0.0",
        "eps: 'float' = 1e-08",
        "strict: 'bool' = True",
        "min_steps: 'int' = 0",
    ],
    "GradNormLogger": [
        "every_n_steps: 'int | None' = None",
        "group_by: 'str | Callable[[str], str]' = 'layer'",
        "norm_type: 'float' = 2.0",
        "include: 'list[str] | None' = None",
        "exclude: 'list[str] | None' = None",
        "log_param_norm: 'bool' = False",
        "log_update_ratio: 'bool' = False",
        "histogram: 'bool' = False",
        "on_nonfinite: 'str' = 'warn'",
    ],
    "CheckpointPruner": [
        "keep_last: 'int' = 2",
        "keep_best: 'int' = 1",
        "monitor: 'str | dict[str, str] | None' = None",
        "keep_pareto: 'bool' = False",
        "keep_every_n_steps: 'int | None' = None",
        "keep: 'Callable[[CheckpointInfo], bool] | str | None' = None",
        "background: 'bool' = True",
        "dry_run: 'bool' = False",
        "strict: 'bool' = True",
    ],
}


def _installed() -> dict[str, type]:
    import importlib

    found = {}
    for name, (module, attribute) in CALLBACKS.items():
        with contextlib.suppress(ImportError):
            found[name] = getattr(importlib.import_module(module), attribute)
    return found


INSTALLED = _installed()


def _options() -> list[tuple[type, dataclasses.Field[Any]]]:
    out: list[tuple[type, dataclasses.Field[Any]]] = []
    for cls in INSTALLED.values():
        declared = declared_options(cls)
        assert declared is not None, cls
        out.extend((cls, f) for f in dataclasses.fields(declared))
    return out


def _kind(field: dataclasses.Field[Any]) -> str:
    return str(getattr(field.metadata.get("check"), "kind", "custom"))


FLAGS = [pytest.param(cls, f.name, id=f"{cls.__name__}.{f.name}") for cls, f in _options() if _kind(f) == "flag"]
NUMBERS = [
    pytest.param(cls, f.name, f.metadata["check"], id=f"{cls.__name__}.{f.name}")
    for cls, f in _options()
    if _kind(f) in ("integer", "real")
]


def test_every_first_party_callback_is_covered() -> None:
    assert set(INSTALLED) == set(CALLBACKS), "the four plugins are installed in this repository's environment"
    kinds = {(cls.__name__, f.name): _kind(f) for cls, f in _options()}
    # the five misreadings of issue 14 are in the parametrised sets
    for name in [
        ("CheckpointPruner", "dry_run"),
        ("CheckpointPruner", "background"),
        ("CheckpointPruner", "keep_pareto"),
        ("GradNormLogger", "log_param_norm"),
        ("GradNormLogger", "histogram"),
    ]:
        assert kinds[name] == "flag"
    assert kinds[("GradNormLogger", "norm_type")] == "real"
    assert kinds[("ReduceLROnPlateau", "factor")] == "real"


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_public_signatures_are_unchanged_and_equal_their_declarations(name: str) -> None:
    cls = next((c for c in INSTALLED.values() if c.__name__ == name), None)
    if cls is None:
        pytest.skip(f"{name} is not installed")
    assert str(inspect.signature(cls)) == f"({', '.join(SIGNATURES[name])}) -> 'None'"
    assert signature_mismatches(cls) == []


@pytest.mark.parametrize("name", sorted(CALLBACKS))
def test_help_shows_the_declared_options(name: str) -> None:
    """``help(Callback)`` lists every option with the text of ``show`` (an ``Args:`` section from the declaration)."""
    from trainer_callbacks.core.spec import parse_arg_docs

    if name not in INSTALLED:
        pytest.skip(f"{name} is not installed")
    cls = INSTALLED[name]
    declared = declared_options(cls)
    assert declared is not None
    expected = {spec.name: spec.doc for spec in declared.option_specs()}
    assert parse_arg_docs(inspect.getdoc(cls) or "") == expected


@pytest.mark.parametrize(("cls", "name"), FLAGS)
@pytest.mark.parametrize("value", ["no", "false", "True", "", 0, 1, None, 1.0])
def test_flags_refuse_anything_but_a_bool(cls: type, name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        cls(**{name: value})
    message = str(info.value)
    assert f"{cls.__name__}({name}={value!r})" in message
    assert "True or False" in message


@pytest.mark.parametrize(("cls", "name"), FLAGS)
def test_flags_take_a_bool(cls: type, name: str) -> None:
    for value in (True, False):
        options: dict[str, Any] = {name: value}
        if name == "keep_pareto" and value:
            options["monitor"] = {"eval_loss": "min", "eval_accuracy": "max"}
        assert cls(**options).state()["args"][name] is value


def _scalars(check: Any, example: Any) -> list[Any]:
    import numpy as np
    import torch

    values: list[Any] = []
    if _kind_of(check) == "integer":
        values += [np.int64(example), np.int32(example), np.uint8(example), np.array(example), torch.tensor(example)]
    else:
        values += [np.float32(example), np.float64(example), np.array(example), torch.tensor(example)]
        values += [np.int64(round(example))] if float(round(example)) == example else []
    return values


def _kind_of(check: Any) -> str:
    return str(getattr(check, "kind", "custom"))


@pytest.mark.parametrize(("cls", "name", "check"), NUMBERS)
def test_numbers_accept_numpy_and_torch_scalars_and_store_python_numbers(cls: type, name: str, check: Any) -> None:
    example = check.example()
    expected_type = int if _kind_of(check) == "integer" else float
    for value in _scalars(check, example):
        callback = cls(**{name: value})
        saved = callback.state()["args"][name]
        assert type(saved) is expected_type, (value, saved)
        assert saved == expected_type(value.item() if hasattr(value, "item") else value)
        json.dumps(callback.state())  # what the Trainer writes into trainer_state.json
        assert type(callback)(**callback.state()["args"]).state()["args"] == callback.state()["args"]


@pytest.mark.parametrize(("cls", "name", "check"), NUMBERS)
@pytest.mark.parametrize("value", [True, False, "1", "0.5"])
def test_numbers_refuse_bools_and_text(cls: type, name: str, check: Any, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        cls(**{name: value})
    message = str(info.value)
    assert f"{cls.__name__}({name}={value!r})" in message
    assert "give " in message  # the fix
    if isinstance(value, bool):
        assert "a bool is not a number" in message


def _unwrapped(check: Any) -> Any:
    return check.check if isinstance(check, OrNone) else check


PER_METRIC = [
    pytest.param(cls, f.name, f.metadata["check"], id=f"{cls.__name__}.{f.name}")
    for cls, f in _options()
    if _kind(f) in ("integer", "real") and isinstance(_unwrapped(f.metadata.get("check")), PerKey)
]


@pytest.mark.parametrize(("cls", "name", "check"), PER_METRIC)
def test_per_metric_mappings_store_python_numbers_too(cls: type, name: str, check: Any) -> None:
    import numpy as np

    integer = _kind_of(check) == "integer"
    value = np.int64(check.example()) if integer else np.float32(check.example())
    callback = cls(**{name: {"eval_loss": value}})
    saved = callback.state()["args"][name]
    assert saved == {"eval_loss": (int if integer else float)(value)}
    assert type(saved["eval_loss"]) is (int if integer else float)
    with pytest.raises(ConfigurationError, match=re.escape(f"{cls.__name__}({name}['eval_loss']=True)")):
        cls(**{name: {"eval_loss": True}})


# ---- README tables ------------------------------------------------------------------------------
_TABLE = re.compile(r"(<!-- options: (?P<name>\w+) [^>]*-->\n\n)(?P<table>.*?)(\n\n<!-- /options -->)", re.S)


def _show_markdown(name: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["show", name, "--markdown"]) == 0
    return out.getvalue().rstrip("\n")


def _readme(name: str) -> Path:
    return REPO / "packages" / f"callbacks-{name}" / "README.md"


@pytest.mark.parametrize("name", sorted(CALLBACKS))
def test_each_readme_option_table_is_what_show_prints(name: str) -> None:
    if name not in INSTALLED:
        pytest.skip(f"{name} is not installed")
    text = _readme(name).read_text(encoding="utf-8")
    tables = [m for m in _TABLE.finditer(text) if m.group("name") == name]
    assert len(tables) == 1, f"{_readme(name)} needs one '<!-- options: {name} ... -->' ... '<!-- /options -->' block"
    assert tables[0].group("table") == _show_markdown(name), (
        f"the option table of {_readme(name)} is out of date: run `python tests/test_options.py` "
        f"(it writes `trainer-callbacks show {name} --markdown` there)"
    )


def _write_tables() -> None:
    for name in CALLBACKS:
        path = _readme(name)
        text = path.read_text(encoding="utf-8")
        table = _show_markdown(name)

        def replace(m: re.Match[str], table: str = table, name: str = name) -> str:
            return m.group(1) + table + m.group(4) if m.group("name") == name else m.group(0)

        new = _TABLE.sub(replace, text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"updated {path.relative_to(REPO)}")


if __name__ == "__main__":
    _write_tables()
    sys.exit(0)
