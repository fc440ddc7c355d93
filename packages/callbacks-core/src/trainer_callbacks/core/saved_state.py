"""Typed reads of a callback's saved progress, for ``load_state_dict``.

A ``trainer_state.json`` can be damaged (hand-edited, half-written by a full disk, written by
another version): its ``stateful_callbacks`` entry may not be a table, or hold a string where a
number belongs, or miss a key. ``load_state_dict`` reads the progress through a
:class:`StateReader`, whose every read checks the type and raises :class:`StateFieldError`
naming the field (``progress.eval_loss.best``) and what was found. ``PluginCallback._restore``
adds the callback and the checkpoint folder, and either raises a :class:`SavedStateError` or,
for a callback whose progress is bookkeeping only (``fresh_start_is_safe``), warns and starts
that callback fresh.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from trainer_callbacks.core.errors import SavedStateError

T = TypeVar("T")


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Missing()
"""Default of a read that has no default: a missing key is an error."""


class StateFieldError(SavedStateError):
    """One field of a saved progress table is missing or of the wrong type.

    ``field`` is the dotted path inside the progress table (``""`` for the table itself),
    ``problem`` what is wrong with it.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field or 'the progress table'}: {problem}")


def describe(value: Any) -> str:
    """``value`` for an error message: its repr (shortened) and its type."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_NONFINITE = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "nan": math.nan, "infinity": math.inf}


class StateReader:
    """Reads fields of one saved table (a ``Mapping``), each checked; see the module docstring.

    ``path`` is where this table sits in the progress (``""`` for the progress itself).
    """

    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise StateFieldError(path, f"expected a table (a JSON object), got {describe(data)}")
        self.data = data
        self.path = path

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data

    def names(self) -> list[str]:
        """The keys, each checked to be a string."""
        for key in self.data:
            if not isinstance(key, str):
                raise StateFieldError(self.path, f"key {describe(key)} is not a string")
        return list(self.data)

    def _get(self, key: str, default: Any) -> tuple[bool, Any]:
        """(present, value); raises for a missing key without a default."""
        if key in self.data:
            return True, self.data[key]
        if default is REQUIRED:
            raise StateFieldError(self.field(key), "missing (the entry was written partly, or by another version)")
        return False, default

    def _typed(self, key: str, default: Any, check: Callable[[Any], T | None], expected: str, none: bool) -> Any:
        present, value = self._get(key, default)
        if not present:
            return value
        if value is None and none:
            return None
        converted = check(value)
        if converted is None:
            raise StateFieldError(self.field(key), f"expected {expected}, got {describe(value)}")
        return converted

    # ---- scalars ------------------------------------------------------------------------------
    def integer(self, key: str, default: Any = REQUIRED, *, minimum: int | None = None, none: bool = False) -> Any:
        """An ``int`` (a float with an integral value is accepted); ``none`` allows ``null``."""
        value = self._typed(key, default, _as_int, "an integer", none)
        if value is not None and value is not default and minimum is not None and value < minimum:
            raise StateFieldError(self.field(key), f"expected an integer >= {minimum}, got {value}")
        return value

    def number(self, key: str, default: Any = REQUIRED, *, none: bool = False) -> Any:
        """A ``float`` (JSON's ``Infinity``/``NaN``, or the strings ``"inf"``, ``"-inf"``, ``"nan"``)."""
        return self._typed(key, default, _as_float, "a number", none)

    def boolean(self, key: str, default: Any = REQUIRED) -> Any:
        return self._typed(key, default, lambda v: v if isinstance(v, bool) else None, "true or false", False)

    def text(
        self, key: str, default: Any = REQUIRED, *, choices: tuple[str, ...] | None = None, none: bool = False
    ) -> Any:
        value = self._typed(key, default, lambda v: v if isinstance(v, str) else None, "a string", none)
        if choices is not None and isinstance(value, str) and value not in choices and value is not default:
            raise StateFieldError(self.field(key), f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value

    # ---- containers ---------------------------------------------------------------------------
    def table(self, key: str, default: Any = REQUIRED, *, none: bool = False) -> Any:
        """A nested table as a :class:`StateReader` (``default``/``None`` returned as they are)."""
        present, value = self._get(key, default)
        if not present or (value is None and none):
            return value if present else default
        return StateReader(value, self.field(key))

    def items(self, key: str, default: Any = REQUIRED) -> Any:
        """A list, as is (each element still to be checked by the caller, e.g. with :meth:`element`)."""
        return self._typed(key, default, lambda v: list(v) if isinstance(v, list) else None, "a list", False)

    def numbers(self, key: str, default: Any = REQUIRED) -> Any:
        """A list of numbers, as floats."""
        present, value = self._get(key, default)
        if not present:
            return value
        if not isinstance(value, list):
            raise StateFieldError(self.field(key), f"expected a list of numbers, got {describe(value)}")
        out = []
        for i, item in enumerate(value):
            number = _as_float(item)
            if number is None:
                raise StateFieldError(f"{self.field(key)}[{i}]", f"expected a number, got {describe(item)}")
            out.append(number)
        return out

    def strings(self, key: str, default: Any = REQUIRED) -> Any:
        present, value = self._get(key, default)
        if not present:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise StateFieldError(self.field(key), f"expected a list of strings, got {describe(value)}")
        return list(value)

    def number_table(self, key: str, default: Any = REQUIRED, *, integers: bool = False) -> Any:
        """A table of name -> number (``integers``: name -> int)."""
        present, value = self._get(key, default)
        if not present:
            return value
        inner = StateReader(value, self.field(key))
        read = inner.integer if integers else inner.number
        return {name: read(name) for name in inner.names()}

    def element(self, key: str, index: int, value: Any) -> StateReader:
        """Element ``index`` of the list at ``key``, as a table."""
        return StateReader(value, f"{self.field(key)}[{index}]")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in _NONFINITE:
        return _NONFINITE[value.strip().lower()]
    return None
