"""The installed callbacks' options as ``HfArgumentParser`` dataclasses, as in transformers' example scripts.

::

    from transformers import HfArgumentParser, TrainingArguments
    from trainer_callbacks.core.hf_args import callback_dataclasses, create_callbacks

    parser = HfArgumentParser((TrainingArguments, *callback_dataclasses()))
    training_args, *callback_args = parser.parse_args_into_dataclasses()
    trainer = Trainer(..., args=training_args, callbacks=create_callbacks(*callback_args))

    python train.py --output_dir out --eval_strategy steps \\
        --callbacks earlystop,lr --earlystop_patience 3 --lr_factor 0.5

Each installed callback gets one dataclass whose fields are its options named
``<callback>_<option>`` (read from its :class:`~trainer_callbacks.core.spec.CallbackSpec`, so
the help text is the option's docstring). Fields default to ``None``, "not given: the callback's
own default applies" (the help shows that default), so an option you pass always counts, even
when it equals the default; ``bool`` options keep their default so ``--x`` / ``--no_x`` work.
Options of plain types (``int``, ``float``, ``bool``, ``str``, a ``Literal`` or their
``Optional``) are parsed by ``HfArgumentParser`` itself; options
of other types (dicts, lists, unions such as ``str | dict``) are read as JSON
(``'{"eval_loss": "min"}'``), as a comma list (``eval_loss,eval_accuracy``), as ``key=value``
pairs (``eval_loss=min,eval_accuracy=max``) or as a plain string.

``--callbacks`` mirrors ``--report_to``: ``all``, ``none``, or a comma list of callback names.
Left out, it selects the callbacks you gave at least one option for. An option given for a
callback that ``--callbacks`` leaves out is an error, never silently ignored.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Union

from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.core.spec import CallbackSpec, OptionSpec

SIMPLE_TYPES = (bool, int, float, str)
_MISSING = dataclasses.MISSING


@dataclasses.dataclass
class CallbackSelectionArguments:
    """Which trainer-callbacks callbacks to use (the ``--callbacks`` flag)."""

    callbacks: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "The trainer-callbacks callbacks to use, like --report_to: 'all', 'none', or a comma list "
            "(earlystop,gradviz). Default: the callbacks you gave at least one --<callback>_<option> for."
        },
    )


# ---- resolving an option's type ---------------------------------------------------------------
def _namespace() -> dict[str, Any]:
    names: dict[str, Any] = {name: getattr(typing, name) for name in typing.__all__}
    names.update({name: getattr(collections.abc, name) for name in collections.abc.__all__})
    names.update({"list": list, "dict": dict, "tuple": tuple, "set": set, "None": None})
    names.update({t.__name__: t for t in SIMPLE_TYPES})
    return names


def resolve_annotation(option: OptionSpec, factory: Any = None) -> Any:
    """The option's annotation as a type object, or ``None`` when it cannot be resolved."""
    if factory is not None:
        target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
        try:
            hints = typing.get_type_hints(target)
        except Exception:  # names only imported under TYPE_CHECKING...
            hints = {}
        if option.name in hints:
            return hints[option.name]
    try:
        return eval(option.type, _namespace())  # the annotation text of a signature, not user input
    except Exception:
        return None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def plain_field_type(annotation: Any) -> Any | None:
    """The type ``HfArgumentParser`` can parse for this annotation, or ``None`` for a complex one."""
    if annotation in SIMPLE_TYPES or typing.get_origin(annotation) is Literal:
        return annotation
    if _is_union(annotation):
        args = typing.get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(rest) < len(args):
            return plain_field_type(rest[0])
    return None


def accepts_str(annotation: Any) -> bool:
    if annotation is str or annotation is None:
        return annotation is str
    if _is_union(annotation):
        return any(accepts_str(a) for a in typing.get_args(annotation))
    return False


# ---- parsing a complex option ------------------------------------------------------------------
def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_option_value(value: Any) -> Any:
    """A command-line string for a complex option, parsed back.

    JSON first (``3``, ``0.5``, ``true``, ``null``, ``["a", "b"]``, ``{"a": "min"}``); else
    ``a=x,b=y`` becomes ``{"a": "x", "b": "y"}``; else ``a,b`` becomes ``["a", "b"]`` (items
    parsed as JSON scalars when they are); else the string itself. ``none`` is ``None``.
    Values that are not strings (from a JSON or YAML arguments file) are returned as they are.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    if text.lower() == "none":
        return None
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > 1 or "=" in text:
        if all("=" in part for part in parts if part):
            return {k.strip(): _scalar(v.strip()) for k, v in (part.split("=", 1) for part in parts if part)}
        if len(parts) > 1:
            return [_scalar(part) for part in parts if part]
    return text


# ---- the dataclasses ---------------------------------------------------------------------------
def field_name(callback: str, option: str) -> str:
    return f"{callback}_{option}"


def _class_name(callback: str) -> str:
    return "".join(part.capitalize() for part in callback.split("_")) + "Arguments"


_cache: dict[tuple[Any, ...], type] = {}


def options_dataclass(spec: CallbackSpec) -> type:
    """The ``HfArgumentParser`` dataclass of one callback's options (the same class for the same spec)."""
    options = spec.option_specs()
    key = (spec.name, spec.factory if isinstance(spec.factory, str) else id(spec.factory), options)
    if key in _cache:
        return _cache[key]
    factory = None
    if spec.options is None:
        try:
            factory = spec.load_factory()
        except Exception:
            factory = None
    fields: list[tuple[str, Any, Any]] = []
    kinds: dict[str, tuple[OptionSpec, Any, bool]] = {}
    for option in options:
        annotation = resolve_annotation(option, factory)
        plain = plain_field_type(annotation)
        name = field_name(spec.name, option.name)
        shown = json.dumps(option.default) if _jsonable(option.default) else repr(option.default)
        default_text = "required" if option.required else f"callback default: {shown}"
        if plain is bool and not option.required and isinstance(option.default, bool):
            # --flag / --no_flag work only with a bool default: it counts as given when it differs
            fields.append((name, bool, dataclasses.field(default=option.default, metadata=_help(option.doc))))
        elif plain is not None:
            help_text = f"{option.doc} ({default_text})".strip()
            fields.append((name, plain | None, dataclasses.field(default=None, metadata=_help(help_text))))
        else:
            help_text = f"{option.doc} [{option.type}: JSON, a comma list or key=value pairs; {default_text}]".strip()
            fields.append((name, str | None, dataclasses.field(default=None, metadata=_help(help_text))))
        kinds[option.name] = (option, annotation, plain is not None)
    cls = dataclasses.make_dataclass(_class_name(spec.name), fields)
    cls.__doc__ = f"Options of the {spec.name!r} callback ({spec.summary})."
    cls.__module__ = __name__
    cls.__callback_name__ = spec.name  # type: ignore[attr-defined]
    cls.__callback_options__ = kinds  # type: ignore[attr-defined]
    _cache[key] = cls
    return cls


def _help(text: str) -> dict[str, str]:
    """``HfArgumentParser`` metadata; argparse %-formats help strings, so a literal ``%`` is doubled."""
    return {"help": text.replace("%", "%%")}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def callback_dataclasses(names: Iterable[str] | None = None) -> tuple[type, ...]:
    """``(CallbackSelectionArguments, <one dataclass per installed callback>...)`` for ``HfArgumentParser``.

    ``names`` limits the dataclasses to those callbacks (default: every installed one, by name).
    """
    from trainer_callbacks.core.factory import get_spec
    from trainer_callbacks.core.plugins import callback_specs

    specs = [get_spec(n) for n in names] if names is not None else [s for _, s in sorted(callback_specs().items())]
    return (CallbackSelectionArguments, *(options_dataclass(spec) for spec in specs))


# ---- from parsed dataclasses to create_all config ----------------------------------------------
def _given_options(instance: Any) -> dict[str, Any]:
    """The options of one parsed dataclass that differ from the callback's defaults, parsed back."""
    kinds: dict[str, tuple[OptionSpec, Any, bool]] = type(instance).__callback_options__
    name: str = type(instance).__callback_name__
    given: dict[str, Any] = {}
    for option_name, (option, annotation, plain) in kinds.items():
        value = getattr(instance, field_name(name, option_name))
        if plain and isinstance(option.default, bool) and not option.required:
            if value != option.default:
                given[option_name] = value
        elif plain:
            if value is not None:
                given[option_name] = value
        elif value is not None:
            parsed = parse_option_value(value)
            if isinstance(value, str) and accepts_str(annotation) and isinstance(parsed, (int, float, bool)):
                parsed = value.strip()  # a str option that happens to look like a number stays text
            given[option_name] = parsed
    return given


def selection(value: str | list[str] | None) -> list[str] | str | None:
    """``--callbacks`` parsed: ``None`` (not given), ``"all"``, or a list of names (``[]`` for ``none``)."""
    if value is None:
        return None
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v and v.strip()]
    if items in (["all"], ["none"]):
        return "all" if items == ["all"] else []
    if "all" in items or "none" in items:
        raise ConfigurationError(f"--callbacks {value!r}: 'all' and 'none' cannot be combined with names")
    return items


def to_config(*parsed: Any) -> dict[str, dict[str, Any]]:
    """The ``create_all`` config for the dataclass instances ``HfArgumentParser`` returned.

    Pass every instance (others, such as ``TrainingArguments``, are ignored). Raises
    :class:`ConfigurationError` for options given to a callback that ``--callbacks`` leaves out.
    """
    chosen: list[str] | str | None = None
    per_callback: dict[str, dict[str, Any]] = {}
    for instance in parsed:
        if isinstance(instance, CallbackSelectionArguments):
            chosen = selection(instance.callbacks)
        elif hasattr(type(instance), "__callback_name__"):
            per_callback[type(instance).__callback_name__] = _given_options(instance)
    if chosen is None:
        names = [name for name, options in per_callback.items() if options]
    elif chosen == "all":
        names = list(per_callback)
    else:
        names = list(chosen)
        from trainer_callbacks.core.factory import get_spec

        for name in names:
            get_spec(name)  # unknown names: the error lists what is installed and what to pip install
    left_out = {name: options for name, options in per_callback.items() if options and name not in names}
    if left_out:
        flags = ", ".join(f"--{field_name(n, o)}" for n, opts in left_out.items() for o in opts)
        raise ConfigurationError(
            f"{flags} given, but --callbacks {','.join(names) or 'none'} leaves out "
            f"{', '.join(left_out)}; add {'them' if len(left_out) > 1 else 'it'} to --callbacks or drop the option(s)"
        )
    return {name: dict(per_callback.get(name, {})) for name in names}


def create_callbacks(*parsed: Any) -> list[Any]:
    """``create_all(to_config(*parsed))``: the callbacks to pass as ``Trainer(callbacks=...)``."""
    from trainer_callbacks.core.factory import create_all

    return create_all(to_config(*parsed))


def config_from_mapping(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """:func:`to_config` for a flat ``{"callbacks": ..., "<callback>_<option>": ...}`` mapping (a JSON args file)."""
    instances: list[Any] = []
    for cls in callback_dataclasses():
        names = {f.name for f in dataclasses.fields(cls)}
        instances.append(cls(**{k: v for k, v in values.items() if k in names}))
    return to_config(*instances)
