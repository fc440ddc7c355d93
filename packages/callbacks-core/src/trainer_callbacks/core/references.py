"""``"package.module:attribute"`` strings: how callables travel through TOML files and checkpoints.

Callback options must be JSON-able to be saved in ``trainer_state.json``, so a function
option (a pruning veto, a grouping rule) is saved as the string that imports it again.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from trainer_callbacks.core.errors import ConfigurationError


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


def callable_option(value: Any, where: str) -> tuple[Callable[..., Any], str]:
    """A callable option and the ``"module:qualname"`` string it is saved as, or a ``ConfigurationError``.

    ``value`` is a callable that importing its ``module:qualname`` gives back (a module-level
    function or class), or such a string. ``where`` names the option in messages, e.g.
    ``"GradNormLogger(group_by=...)"``. A lambda, closure, nested function, bound method or
    callable instance is refused: the callback's options are saved in checkpoints, and it could
    not be rebuilt from them.
    """
    if isinstance(value, str):
        try:
            target = import_reference(value)
        except ValueError:
            raise ConfigurationError(f"{where}: {value!r} is not of the form 'package.module:function'") from None
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"{where}: cannot import {value!r} ({exc})") from None
        if not callable(target):
            raise ConfigurationError(f"{where}: {value!r} names a {type(target).__name__}, which is not callable")
        return target, value
    if not callable(value):
        raise ConfigurationError(f"{where}: expected a callable or 'package.module:function', got {value!r}")
    ref = reference_of(value)
    if ref is None:
        name = getattr(value, "__qualname__", None) or type(value).__name__
        raise ConfigurationError(
            f"{where}: {name} cannot be saved with the callback's options: checkpoints store a callable as "
            "'package.module:function' and import it back, which a lambda, closure, nested function, bound method "
            "or callable instance does not allow; define it at module level (def my_function(...): ...) and pass "
            "it, or its 'package.module:function' name"
        )
    return value, ref
