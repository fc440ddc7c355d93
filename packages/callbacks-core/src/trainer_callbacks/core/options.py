"""Options declared once: a dataclass per callback, and the shared checks of option values.

A callback declares each option once, as a field of a :class:`CallbackOptions` dataclass::

    @dataclasses.dataclass(frozen=True)
    class SpikeOptions(CallbackOptions):
        factor: float = option(2.0, "a loss above factor x the average is a spike", Real(minimum=1, open_min=True))
        stop: bool = option(False, "stop training at the first spike", Flag())

and its constructor keeps an ordinary signature (for people, IDEs and type checkers) that
hands its arguments over in one call::

    class SpikeDetector(PluginCallback):
        declared_options = SpikeOptions

        def __init__(self, factor: float = 2.0, stop: bool = False) -> None:
            options = SpikeOptions.parse(self, locals())   # every check; ConfigurationError
            options.assign(self)                           # self.factor, self.stop
            super().__init__(**options.saved())            # what checkpoints save

From the same fields come ``trainer-callbacks show`` and its ``--markdown`` table (the
README's option table), the ``HfArgumentParser`` help (:mod:`trainer_callbacks.core.hf_args`)
and the saved ``args``: an option cannot be documented, checked and saved in three places
that drift apart. :func:`signature_mismatches` says where a constructor's signature and its
declaration disagree (a test of each first-party callback asserts there is none).

The checks (:class:`Flag`, :class:`Integer`, :class:`Real`, :class:`Choice`, :class:`Text`,
:class:`OrNone`, :class:`PerKey`, :class:`ListOf`, :class:`Either`) are the rules every
first-party option follows: a flag is a real ``bool`` (``"no"`` and ``0`` are refused,
since ``bool("no")`` is ``True``); a number is never a ``bool``; any real number is
accepted (numpy scalars, 0-d numpy arrays and torch tensors) and stored as a plain Python
``int``/``float``. A failed check is a
:class:`~trainer_callbacks.core.errors.ConfigurationError` naming the callback, the
option, the value and the fix.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import operator
import textwrap
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, TypeVar

from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.core.spec import OptionSpec

__all__ = [
    "CallbackOptions",
    "Choice",
    "Either",
    "Flag",
    "Integer",
    "ListOf",
    "OptionProblem",
    "OrNone",
    "PerKey",
    "Real",
    "Text",
    "check_value",
    "option",
    "options_markdown",
    "signature_mismatches",
]

_T = TypeVar("_T", bound="CallbackOptions")


class OptionProblem(ValueError):
    """Raised by a check: what is wrong and the fix, without the callback or the option's name.

    ``at`` locates the offending part inside the value (``"['eval_loss']"`` for a mapping
    entry) and ``value`` is that part.
    """

    def __init__(self, fix: str, *, at: str = "", value: Any = None, has_value: bool = False) -> None:
        super().__init__(fix)
        self.fix = fix
        self.at = at
        self.value = value
        self.has_value = has_value


class Check(Protocol):
    """Checks one option value and returns it as the callback stores it; raises :class:`OptionProblem`."""

    def __call__(self, value: Any) -> Any: ...


def check_value(owner: str, field: str, value: Any, check: Callable[[Any], Any]) -> Any:
    """``check(value)``; an :class:`OptionProblem` becomes a ``ConfigurationError`` naming ``owner(field=value)``.

    With ``owner=""`` the message starts ``field=value:`` (``field`` then names the place, such as
    ``"Metric('eval_f1').patience"``).
    """
    try:
        return check(value)
    except OptionProblem as problem:
        shown = problem.value if problem.has_value else value
        where = f"{field}{problem.at}={shown!r}"
        raise ConfigurationError(f"{owner}({where}): {problem.fix}" if owner else f"{where}: {problem.fix}") from None


def _is_boolean(value: Any) -> bool:
    """A ``bool``, ``numpy.bool_`` or a bool tensor: never a number, never taken as one."""
    return isinstance(value, bool) or "bool" in str(getattr(value, "dtype", ""))


def _scalar_item(value: Any) -> Any:
    """The Python number of a 0-d numpy array or torch tensor, else ``None``."""
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        try:
            item = value.item()
        except Exception:
            return None
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            return item
    return None


@dataclasses.dataclass(frozen=True)
class Flag:
    """A real ``bool``; strings and numbers are refused (``bool("no")`` is ``True``)."""

    kind: ClassVar[str] = "flag"

    def __call__(self, value: Any) -> bool:
        if type(value) is not bool:
            hint = " (a string is not read: bool('no') is True)" if isinstance(value, str) else ""
            raise OptionProblem(f"give True or False{hint}")
        return value

    def example(self) -> bool:
        return True


def _bounds(minimum: Any, maximum: Any, open_min: bool = False, open_max: bool = False) -> str:
    if minimum is not None and maximum is not None:
        return f" in {'(' if open_min else '['}{minimum:g}, {maximum:g}{')' if open_max else ']'}"
    if minimum is not None:
        return f" {'>' if open_min else '>='} {minimum:g}"
    if maximum is not None:
        return f" {'<' if open_max else '<='} {maximum:g}"
    return ""


@dataclasses.dataclass(frozen=True)
class Integer:
    """An integer (``int``, ``numpy.int64``, an integer 0-d tensor...; never a ``bool``), stored as ``int``."""

    minimum: int | None = None
    maximum: int | None = None
    meaning: str = ""
    """Appended to the fix, e.g. ``"a number of evaluations"``."""
    kind: ClassVar[str] = "integer"

    def fix(self) -> str:
        what = f"give an integer{_bounds(self.minimum, self.maximum)}"
        return f"{what} ({self.meaning})" if self.meaning else what

    def __call__(self, value: Any) -> int:
        if _is_boolean(value):
            raise OptionProblem(f"{self.fix()}; a bool is not a number")
        try:
            number = operator.index(value)
        except TypeError:
            raise OptionProblem(self.fix()) from None
        if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
            raise OptionProblem(self.fix())
        return int(number)

    def example(self) -> int:
        return self.minimum + 1 if self.minimum is not None else 1


@dataclasses.dataclass(frozen=True)
class Real:
    """A real number (``int``, ``float``, numpy scalars, 0-d tensors; never a ``bool``), stored as ``float``.

    ``NaN`` is always refused; infinities only with ``finite=False``.
    """

    minimum: float | None = None
    maximum: float | None = None
    open_min: bool = False
    open_max: bool = False
    finite: bool = True
    meaning: str = ""
    """Appended to the fix, e.g. ``"the LR is multiplied by it, e.g. 0.1"``."""
    kind: ClassVar[str] = "real"

    def fix(self) -> str:
        bounds = _bounds(self.minimum, self.maximum, self.open_min, self.open_max)
        what = f"give a {'finite ' if self.finite else ''}number{bounds}"
        return f"{what} ({self.meaning})" if self.meaning else what

    def __call__(self, value: Any) -> float:
        if _is_boolean(value):
            raise OptionProblem(f"{self.fix()}; a bool is not a number")
        if isinstance(value, numbers.Real):
            number = float(value)
        else:
            item = _scalar_item(value)
            if item is None:
                raise OptionProblem(self.fix())
            number = float(item)
        if math.isnan(number) or (self.finite and math.isinf(number)):
            raise OptionProblem(self.fix())
        low, high = self.minimum, self.maximum
        if low is not None and (number < low or (self.open_min and number == low)):
            raise OptionProblem(self.fix())
        if high is not None and (number > high or (self.open_max and number == high)):
            raise OptionProblem(self.fix())
        return number

    def example(self) -> float:
        low = self.minimum if self.minimum is not None else 0.0
        if self.maximum is not None:
            return (low + self.maximum) / 2
        return low + 0.5


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of a few values (compared with ``==``; ``True`` is never taken for ``1``)."""

    values: tuple[Any, ...]
    meaning: str = ""
    kind: ClassVar[str] = "choice"

    def __call__(self, value: Any) -> Any:
        for allowed in self.values:
            if type(value) is type(allowed) and value == allowed:
                return allowed
        listed = ", ".join(repr(v) for v in self.values)
        fix = f"use one of {listed}"
        raise OptionProblem(f"{fix} ({self.meaning})" if self.meaning else fix)

    def example(self) -> Any:
        return self.values[0]


@dataclasses.dataclass(frozen=True)
class Text:
    """A non-empty string (surrounding spaces are refused too: they are never part of a metric's name)."""

    meaning: str = ""
    kind: ClassVar[str] = "text"

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip() or value != value.strip():
            fix = "give a non-empty string without surrounding spaces"
            raise OptionProblem(f"{fix} ({self.meaning})" if self.meaning else fix)
        return value

    def example(self) -> str:
        return "eval_loss"


@dataclasses.dataclass(frozen=True)
class ListOf:
    """A non-empty list (or tuple) of values that each pass ``check``; stored as a ``list``."""

    check: Callable[[Any], Any]
    meaning: str = ""

    @property
    def kind(self) -> str:
        return "list"

    def __call__(self, value: Any) -> list[Any]:
        if not isinstance(value, (list, tuple)) or not value:
            fix = "give a non-empty list"
            raise OptionProblem(f"{fix} ({self.meaning})" if self.meaning else fix)
        out = []
        for i, item in enumerate(value):
            try:
                out.append(self.check(item))
            except OptionProblem as problem:
                raise OptionProblem(problem.fix, at=f"[{i}]{problem.at}", value=item, has_value=True) from None
        return out

    def example(self) -> list[Any]:
        return [self.check.example()]  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class Either:
    """A value that passes the first check that accepts its shape: ``Either(Real(), ListOf(Real()))``.

    A list or tuple goes to a :class:`ListOf` check, a mapping to a :class:`PerKey` one, anything else
    to the first other check.
    """

    checks: tuple[Callable[[Any], Any], ...]

    @property
    def kind(self) -> str:
        return str(getattr(self.checks[0], "kind", "custom"))

    def __call__(self, value: Any) -> Any:
        for check in self.checks:
            if isinstance(check, ListOf) and isinstance(value, (list, tuple)):
                return check(value)
        for check in self.checks:
            if not isinstance(check, ListOf):
                return check(value)
        return self.checks[0](value)

    def example(self) -> Any:
        return self.checks[0].example()  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class OrNone:
    """``None``, or a value that passes ``check``."""

    check: Callable[[Any], Any]

    @property
    def kind(self) -> str:
        return str(getattr(self.check, "kind", "custom"))

    def __call__(self, value: Any) -> Any:
        if value is None:
            return None
        try:
            return self.check(value)
        except OptionProblem as problem:
            fix = f"give None or {problem.fix[5:]}" if problem.fix.startswith("give ") else f"None, or: {problem.fix}"
            raise OptionProblem(fix, at=problem.at, value=problem.value, has_value=problem.has_value) from None

    def example(self) -> Any:
        return self.check.example()  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class PerKey:
    """A value that passes ``check``, or a mapping of names to such values (``None`` entries allowed).

    A mapping comes back as a plain ``dict`` with ``str`` keys.
    """

    check: Callable[[Any], Any]

    @property
    def kind(self) -> str:
        return str(getattr(self.check, "kind", "custom"))

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return self.check(value)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise OptionProblem(
                    "the keys of the mapping are metric names (str)", at=f"[{key!r}]", value=item, has_value=True
                )
            try:
                out[key] = None if item is None else self.check(item)
            except OptionProblem as problem:
                raise OptionProblem(problem.fix, at=f"[{key!r}]{problem.at}", value=item, has_value=True) from None
        return out

    def example(self) -> Any:
        return self.check.example()  # type: ignore[attr-defined]


def option(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    check: Callable[[Any], Any] | None = None,
    *,
    save: Callable[[Any, Any], Any] | None = None,
    attribute: str | None = "",
) -> Any:
    """A field of a :class:`CallbackOptions` dataclass.

    ``doc``: one paragraph, shown by ``trainer-callbacks show``, ``--help`` and the README table.
    ``check``: returns the value the callback stores, or raises :class:`OptionProblem`.
    ``save``: ``save(stored, given)`` is the JSON-able form saved in checkpoints (default: the
    stored value; it must be accepted back by the constructor). ``attribute``: the attribute
    :meth:`CallbackOptions.assign` sets (default: the option's name; ``None``: none).
    """
    metadata = {"doc": doc, "check": check, "save": save, "attribute": attribute}
    if isinstance(default, (list, dict, set)):
        raise TypeError("an option's default must be immutable (use None or a tuple)")
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class CallbackOptions:
    """Base of a callback's options dataclass (declare it ``@dataclasses.dataclass(frozen=True)``)."""

    @classmethod
    def option_specs(cls) -> tuple[OptionSpec, ...]:
        """What ``trainer-callbacks show``, ``create`` and ``hf_args`` read."""
        specs = []
        for f in dataclasses.fields(cls):
            required = f.default is dataclasses.MISSING
            specs.append(
                OptionSpec(
                    name=f.name,
                    type=f.type if isinstance(f.type, str) else inspect.formatannotation(f.type),
                    default=None if required else f.default,
                    doc=str(f.metadata.get("doc", "")),
                    required=required,
                )
            )
        return tuple(specs)

    @classmethod
    def args_section(cls, indent: str = "    ") -> str:
        """The options as the ``Args:`` section of a Google-style docstring (``help(Callback)`` shows it).

        ``PluginCallback`` appends it to the docstring of a subclass that declares options.
        """
        lines = [f"{indent}Args:"]
        for spec in cls.option_specs():
            text = f"{spec.name} ({spec.type}): {spec.doc}"
            wrapped = textwrap.wrap(text, 100, break_long_words=False, break_on_hyphens=False)
            lines.append(f"{indent}    {wrapped[0]}")
            lines.extend(f"{indent}        {line}" for line in wrapped[1:])
        return "\n".join(lines)

    @classmethod
    def checks(cls) -> dict[str, Callable[[Any], Any] | None]:
        """Each option's check (``None``: no field-level check)."""
        return {f.name: f.metadata.get("check") for f in dataclasses.fields(cls)}

    @classmethod
    def parse(cls: type[_T], owner: Any, arguments: Mapping[str, Any]) -> _T:
        """Check every option in ``arguments`` (a constructor's ``locals()``) and build the options.

        ``owner`` is the callback (or its name) that errors name. Raises ``ConfigurationError``.
        """
        name = owner if isinstance(owner, str) else type(owner).__name__
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in arguments]
        if missing:
            raise TypeError(f"{name}: the constructor does not pass option(s) {', '.join(missing)} to {cls.__name__}")
        undeclared = [n for n in arguments if n not in names and n not in ("self", "__class__")]
        if undeclared:
            raise TypeError(
                f"{name}: constructor argument(s) {', '.join(undeclared)} are not declared in {cls.__name__} "
                "(declare each option there, or call parse() first thing in __init__, before other locals)"
            )
        stored: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = arguments[f.name]
            check = f.metadata.get("check")
            stored[f.name] = check_value(name, f.name, value, check) if check is not None else value
        instance = cls(**stored)
        saved = {}
        for f in dataclasses.fields(cls):
            save = f.metadata.get("save")
            saved[f.name] = save(stored[f.name], arguments[f.name]) if save is not None else stored[f.name]
        object.__setattr__(instance, "_saved", saved)
        return instance

    def as_dict(self) -> dict[str, Any]:
        """The checked options by name (a shallow copy: values are not converted)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def saved(self) -> dict[str, Any]:
        """The JSON-able options a checkpoint saves (``PluginCallback(**saved)``); the constructor accepts them."""
        saved = getattr(self, "_saved", None)
        if saved is None:
            saved = self.as_dict()
        return dict(saved)

    def assign(self, target: Any) -> None:
        """Set each option as an attribute of ``target`` (named by the field's ``attribute``)."""
        for f in dataclasses.fields(self):
            attribute = f.metadata.get("attribute", "")
            if attribute is None:
                continue
            setattr(target, attribute or f.name, getattr(self, f.name))


def declared_options(factory: Any) -> type[CallbackOptions] | None:
    """The :class:`CallbackOptions` a class declares for its own ``__init__`` (not one it inherits
    under a constructor of its own), else ``None``."""
    if not inspect.isclass(factory):
        return None
    for klass in factory.__mro__:
        if "__init__" in vars(klass):
            declared = vars(klass).get("declared_options")
            if isinstance(declared, type) and issubclass(declared, CallbackOptions):
                return declared
            return None
    return None


def signature_mismatches(factory: type) -> list[str]:
    """Where ``factory.__init__``'s signature differs from its declared options (names, order, defaults, types)."""
    declared = declared_options(factory)
    if declared is None:
        return [f"{factory.__name__} declares no options (declared_options next to its __init__)"]
    params = [p for p in inspect.signature(factory.__init__).parameters.values() if p.name != "self"]  # type: ignore[misc]
    fields = dataclasses.fields(declared)
    problems = []
    if [p.name for p in params] != [f.name for f in fields]:
        problems.append(f"names/order: signature {[p.name for p in params]} vs options {[f.name for f in fields]}")
    for p, f in zip(params, fields):
        if p.name != f.name:
            continue
        default = p.default if p.default is not inspect.Parameter.empty else dataclasses.MISSING
        if default != f.default or type(default) is not type(f.default):
            problems.append(f"{p.name}: default {default!r} in the signature, {f.default!r} declared")
        annotation = p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)
        declared_type = f.type if isinstance(f.type, str) else inspect.formatannotation(f.type)
        if annotation != declared_type:
            problems.append(f"{p.name}: type {annotation} in the signature, {declared_type} declared")
    return problems


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def options_markdown(options: tuple[OptionSpec, ...] | list[OptionSpec]) -> str:
    """The options as a Markdown table (option, type, default, meaning): ``trainer-callbacks show NAME --markdown``."""
    lines = ["| option | type | default | meaning |", "|---|---|---|---|"]
    for opt in options:
        default = "required" if opt.required else f"`{_cell(repr(opt.default))}`"
        lines.append(f"| `{opt.name}` | `{_cell(opt.type)}` | {default} | {_cell(opt.doc)} |")
    return "\n".join(lines)
