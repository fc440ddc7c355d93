"""What a plugin registers: a :class:`CallbackSpec` per callback it provides.

A spec names a factory as an import string (``"package.module:Class"``) so that listing
plugins never imports torch or transformers. The options are read, when first needed, from
the factory's declared options (a :class:`~trainer_callbacks.core.options.CallbackOptions`
dataclass named by ``declared_options`` next to its ``__init__``); a factory without them
has its options read from its signature and the ``Args:`` section of its docstring. A
plugin may instead pass ``options`` explicitly.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainer_callbacks.core.references import import_reference

_REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class OptionSpec:
    """One constructor option of a callback."""

    name: str
    type: str = "Any"
    """The annotation as written in the signature, for people and for ``HfArgumentParser``."""
    default: Any = None
    doc: str = ""
    required: bool = False


@dataclass(frozen=True)
class CallbackSpec:
    """A callback that a plugin offers to ``create``."""

    name: str
    """The name users pass to ``create`` and use as the table name in a TOML config."""
    summary: str
    """One line: what the callback does."""
    factory: str | Callable[..., Any]
    """``"module:attribute"`` (imported lazily) or a callable returning a ``TrainerCallback``."""
    options: Sequence[OptionSpec] | None = None
    """``None``: read from the factory's signature and docstring."""
    plugin: str = field(default="", compare=False)
    """The plugin (entry point) that registered it; filled in by the plugin manager."""
    demo_options: Mapping[str, Any] | None = field(default=None, compare=False)
    """Options for ``trainer-callbacks demo``, which trains a text classifier that evaluates
    ``eval_loss`` and ``eval_accuracy`` every few steps and saves a checkpoint at each evaluation.
    ``None``: the callback's defaults (a callback with a required option is then left out)."""
    summary_order: int = field(default=100, compare=False)
    """Where the plugin's lines go in the demo summary and its figures in ``trainer-callbacks plot``:
    lower first, ties by plugin name (first-party: earlystop 10, lr 20, checkpoint 30, gradviz 40)."""

    def __post_init__(self) -> None:
        if self.demo_options is not None and (
            not isinstance(self.demo_options, Mapping) or not all(isinstance(k, str) for k in self.demo_options)
        ):
            raise ValueError(
                f"CallbackSpec({self.name!r}).demo_options={self.demo_options!r}: pass None or a dict of "
                "option names to values"
            )
        if isinstance(self.summary_order, bool) or not isinstance(self.summary_order, int):
            raise ValueError(f"CallbackSpec({self.name!r}).summary_order={self.summary_order!r}: pass an int")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(
                f"CallbackSpec.name={self.name!r}: use lower case letters, digits and '_' "
                "(it becomes a TOML table and a command-line prefix)"
            )
        if isinstance(self.factory, str) and ":" not in self.factory:
            raise ValueError(f"CallbackSpec.factory={self.factory!r}: write it as 'package.module:Attribute'")

    def load_factory(self) -> Callable[..., Any]:
        """Import and return the factory."""
        if callable(self.factory):
            return self.factory
        return import_reference(self.factory)  # type: ignore[no-any-return]

    def option_specs(self) -> tuple[OptionSpec, ...]:
        """The options, explicit or read from the factory."""
        if self.options is not None:
            return tuple(self.options)
        return options_from_callable(self.load_factory())


def options_from_callable(factory: Callable[..., Any]) -> tuple[OptionSpec, ...]:
    """The options a class declares (``declared_options``), else those of its ``__init__`` (or a
    function's) signature and Google-style docstring."""
    from trainer_callbacks.core.options import declared_options

    declared = declared_options(factory)
    if declared is not None:
        return declared.option_specs()
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    signature = inspect.signature(target)
    docs = parse_arg_docs(inspect.getdoc(factory) or "")
    if inspect.isclass(factory) and not docs:
        docs = parse_arg_docs(inspect.getdoc(target) or "")
    options = []
    for param in signature.parameters.values():
        if param.name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = param.annotation
        if annotation is _REQUIRED:
            type_name = "Any"
        elif isinstance(annotation, str):
            type_name = annotation
        else:
            type_name = inspect.formatannotation(annotation)
        options.append(
            OptionSpec(
                name=param.name,
                type=type_name,
                default=None if param.default is _REQUIRED else param.default,
                doc=docs.get(param.name, ""),
                required=param.default is _REQUIRED,
            )
        )
    return tuple(options)


_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def parse_arg_docs(docstring: str) -> dict[str, str]:
    """Map each argument of a Google-style ``Args:`` section to its (joined) description."""
    docs: dict[str, str] = {}
    lines = docstring.splitlines()
    in_args = False
    arg_indent: int | None = None
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        if not in_args:
            if stripped in ("Args:", "Arguments:", "Parameters:"):
                in_args = True
            continue
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if arg_indent is None:
            arg_indent = indent
        if indent < arg_indent:
            break
        match = _ARG_LINE.match(stripped) if indent == arg_indent else None
        if match:
            current = match.group(1).lstrip("*")
            docs[current] = match.group(3).strip()
        elif current is not None and indent > arg_indent:
            docs[current] = f"{docs[current]} {stripped}".strip()
        else:
            break
    return docs
