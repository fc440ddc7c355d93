"""``create`` and ``create_all``: from names and options to ready callbacks."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainer_callbacks.core.errors import ConfigurationError, UnknownCallbackError, UnknownOptionError
from trainer_callbacks.core.plugins import FIRST_PARTY, registry
from trainer_callbacks.core.spec import CallbackSpec


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def get_spec(name: str) -> CallbackSpec:
    """The spec of an installed callback, or an error that says what to install."""
    reg = registry()
    specs = reg.specs()
    if name in specs:
        return specs[name]
    if name in reg.failures:
        raise reg.failures[name]
    installed = sorted(specs)
    message = f"no installed plugin provides a callback named {name!r}."
    if installed:
        message += f" Installed: {', '.join(installed)}."
    else:
        message += " No trainer-callbacks plugin is installed."
    info = reg.infos.get(name)
    if info is not None and info.status in ("blocked", "not allowed"):
        message += (
            f" Plugin {name!r} is installed but {info.status} by TRAINER_CALLBACKS_BLOCK_PLUGINS, "
            "TRAINER_CALLBACKS_PLUGINS or TRAINER_CALLBACKS_DISABLE_AUTOLOAD."
        )
    elif name in FIRST_PARTY:
        message += f" Install it with: pip install trainer-callbacks-{name}"
    else:
        message += _did_you_mean(name, installed)
    raise UnknownCallbackError(message)


def check_options(spec: CallbackSpec, options: Mapping[str, Any]) -> None:
    """Raise :class:`UnknownOptionError` for an option the callback does not take, or a missing one."""
    known = spec.option_specs()
    names = [opt.name for opt in known]
    for key in options:
        if key not in names:
            raise UnknownOptionError(
                f"callback {spec.name!r} has no option {key!r}.{_did_you_mean(key, names)} "
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


def load_config(config: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """A ``{callback: {option: value}}`` mapping from a mapping or a TOML file (one table per callback)."""
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        try:
            with path.open("rb") as handle:
                data: Mapping[str, Any] = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigurationError(f"callbacks config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"callbacks config file {str(path)!r} is not valid TOML: {exc}") from None
    else:
        data = config
    result: dict[str, dict[str, Any]] = {}
    for name, options in data.items():
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise ConfigurationError(
                f"callbacks config: {name!r} must map to a table of options, e.g. [{name}] in TOML "
                f"or {{{name!r}: {{}}}} in Python; got {type(options).__name__}"
            )
        result[str(name)] = dict(options)
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
