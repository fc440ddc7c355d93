"""``create`` and ``create_all``: from names and options to ready callbacks."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainer_callbacks.core.errors import ConfigurationError, UnknownCallbackError, UnknownOptionError
from trainer_callbacks.core.plugins import did_you_mean, registry, selection_reason
from trainer_callbacks.core.spec import CallbackSpec

_CONFIG_SHAPE = (
    "a mapping of callback names to option tables, e.g. {'earlystop': {'patience': 3}}, "
    "or the path of a TOML file with one [table] per callback"
)


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise ConfigurationError(
            f"callback name {name!r} ({type(name).__name__}): pass the name as a string, e.g. create('earlystop'); "
            "trainer-callbacks list shows the installed ones"
        )
    return name


def get_spec(name: str) -> CallbackSpec:
    """The spec of an installed callback, or an error that says why it is missing and what to do."""
    _check_name(name)
    reg = registry()
    specs = reg.specs()
    if name in specs:
        return specs[name]
    if name in reg.failures:
        raise reg.failures[name]
    available = sorted(specs)
    message = f"no loaded plugin provides a callback named {name!r}."
    if available:
        message += f" Available: {', '.join(available)}."
    off = {n: selection_reason(n) or "" for n, info in reg.infos.items() if info.status in ("blocked", "not allowed")}
    if name in off:
        message += f" Plugin {name!r} is installed but {off[name]}."
    else:
        by_reason: dict[str, list[str]] = {}
        for plugin, why in sorted(off.items()):
            by_reason.setdefault(why, []).append(plugin)
        for why, plugins in by_reason.items():
            message += f" Installed but {why}: {', '.join(plugins)}."
        if not reg.infos and not available:
            message += " No trainer-callbacks plugin is installed."
        message += did_you_mean(name, available) or (
            " If a plugin you have not installed provides it, install that plugin "
            f"(this project's are published as trainer-callbacks-NAME: pip install trainer-callbacks-{name})."
        )
    for problem in reg.selection_problems:
        message += f" {problem}"
    raise UnknownCallbackError(message)


def check_options(spec: CallbackSpec, options: Mapping[str, Any]) -> None:
    """Raise :class:`UnknownOptionError` for an option the callback does not take, or a missing one."""
    known = spec.option_specs()
    names = [opt.name for opt in known]
    for key in options:
        if key not in names:
            raise UnknownOptionError(
                f"callback {spec.name!r} has no option {key!r}.{did_you_mean(key, names)} "
                f"Valid options: {', '.join(names) or '(none)'}. See: trainer-callbacks show {spec.name}"
            )
    missing = [opt.name for opt in known if opt.required and opt.name not in options]
    if missing:
        raise ConfigurationError(
            f"callback {spec.name!r} needs option(s) {', '.join(missing)}. See: trainer-callbacks show {spec.name}"
        )


def create(name: str, **options: Any) -> Any:
    """A ready callback: ``create("earlystop", monitor="eval_loss", patience=3)``."""
    spec = get_spec(name)
    check_options(spec, options)
    return spec.load_factory()(**options)


def _read_toml(path: Path) -> Mapping[str, Any]:
    where = f"callbacks config file {str(path)!r}"
    if path.is_dir():
        raise ConfigurationError(f"{where} is a folder; pass a TOML file (one [table] per callback) inside it")
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        hint = (
            f" (to build one callback, pass {{{str(path)!r}: {{}}}})"
            if "/" not in str(path) and "." not in str(path)
            else ""
        )
        raise ConfigurationError(f"{where} does not exist{hint}; pass {_CONFIG_SHAPE}") from None
    except OSError as exc:
        raise ConfigurationError(f"{where} cannot be read: {exc.strerror or exc}") from None
    try:
        decoded = text.decode("utf-8-sig")  # a byte-order mark (some Windows editors write one) is not TOML
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{where} is not UTF-8 text (byte {exc.start}: {text[exc.start : exc.start + 1]!r}); TOML files are "
            "UTF-8: save it with that encoding"
        ) from None
    try:
        return tomllib.loads(decoded)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{where} is not valid TOML: {exc}") from None


def load_config(config: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """A ``{callback: {option: value}}`` mapping from a mapping or a TOML file (one table per callback).

    Anything else (``None``, a list, a number, a folder, a file that is not UTF-8 TOML, a name
    or an option key that is not a string, a table that is not a mapping) is a
    :class:`ConfigurationError` that says what was expected.
    """
    if isinstance(config, (str, os.PathLike)):
        data: Mapping[str, Any] = _read_toml(Path(config))
    elif isinstance(config, Mapping):
        data = config
    else:
        raise ConfigurationError(f"callbacks config {config!r} ({type(config).__name__}): pass {_CONFIG_SHAPE}")
    result: dict[str, dict[str, Any]] = {}
    for name, options in data.items():
        if not isinstance(name, str):
            raise ConfigurationError(
                f"callbacks config: key {name!r} ({type(name).__name__}) must be a callback name (a string), "
                "e.g. 'earlystop'"
            )
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise ConfigurationError(
                f"callbacks config: {name!r} must map to a table of options, e.g. [{name}] in TOML "
                f"or {{{name!r}: {{}}}} in Python; got {type(options).__name__} {options!r}"
            )
        bad_keys = [key for key in options if not isinstance(key, str)]
        if bad_keys:
            raise ConfigurationError(
                f"callbacks config: option {bad_keys[0]!r} ({type(bad_keys[0]).__name__}) of {name!r} must be an "
                f"option name (a string); see: trainer-callbacks show {name}"
            )
        result[name] = dict(options)
    return result


def create_all(config: Mapping[str, Any] | str | os.PathLike[str]) -> list[Any]:
    """Every callback named in ``config``, in its order: pass the list as ``Trainer(callbacks=...)``.

    ``config`` is ``{"earlystop": {"monitor": "eval_loss"}, "gradviz": {}}`` or the path of a
    TOML file with one table per callback. All names and options are checked before any
    callback is built.
    """
    tables = load_config(config)
    specs = [(get_spec(name), options) for name, options in tables.items()]
    for spec, options in specs:
        check_options(spec, options)
    return [spec.load_factory()(**options) for spec, options in specs]
