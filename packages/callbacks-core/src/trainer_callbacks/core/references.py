"""``"package.module:attribute"`` strings: how callables travel through TOML files and checkpoints.

Callback options must be JSON-able to be saved in ``trainer_state.json``, so a function
option (a pruning veto, a grouping rule) is saved as the string that imports it again.
"""

from __future__ import annotations

import importlib
from typing import Any


def import_reference(ref: str) -> Any:
    """The object ``"package.module:attribute.path"`` names.

    Raises ``ValueError`` for a string not of that form and ``ImportError`` (or
    ``AttributeError``) when the module or the attribute does not exist.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{ref!r} is not of the form 'package.module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def reference_of(obj: Any) -> str | None:
    """``"module:qualname"`` when importing that string gives back ``obj`` itself, else ``None``
    (a lambda, a closure, a bound method, an object defined in ``__main__`` of another process...)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    try:
        return f"{module}:{qualname}" if import_reference(f"{module}:{qualname}") is obj else None
    except (ValueError, ImportError, AttributeError):
        return None
