"""Deprecated: the test kit moved to its own distribution, ``trainer-callbacks-testing``.

``pip install trainer-callbacks-testing`` and import ``trainer_callbacks.testing`` (same names,
same submodules). Until 0.4 this old name keeps working: importing it warns once with a
``DeprecationWarning``, and ``trainer_callbacks.core.testing`` and every
``trainer_callbacks.core.testing.<module>`` are the new modules themselves (not copies), so classes,
``isinstance`` checks and module state are shared whichever name a test imports. Without the new
distribution installed the import fails with an ``ImportError`` that says what to install.

Why a finder rather than one stub file per submodule: a user's ``from
trainer_callbacks.core.testing.simulator import Simulation`` must reach the one ``simulator`` module
(a second copy would hold its own classes), and the list of submodules should not be written twice.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

OLD = __name__
NEW = "trainer_callbacks.testing"
REMOVED_IN = "0.4"

try:
    _kit = importlib.import_module(NEW)
except ModuleNotFoundError as error:
    if error.name != NEW:
        raise  # the kit is installed but one of its own imports is missing: that error says which
    raise ImportError(
        f"{OLD} moved to {NEW}, in its own distribution: pip install trainer-callbacks-testing "
        f"(then import {NEW}; the old name is removed in trainer-callbacks-core {REMOVED_IN})",
        name=OLD,
    ) from error


# stacklevel 2 is the importing line: warnings skips importlib's own frames when it counts.
warnings.warn(
    f"{OLD} is deprecated: import {NEW} (pip install trainer-callbacks-testing); "
    f"the old name is removed in trainer-callbacks-core {REMOVED_IN}",
    DeprecationWarning,
    stacklevel=2,
)


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``trainer_callbacks.core.testing.X`` to the already importable ``trainer_callbacks.testing.X``."""

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if not fullname.startswith(OLD + "."):
            return None
        if importlib.util.find_spec(NEW + fullname[len(OLD) :]) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def __init__(self) -> None:
        self._specs: dict[str, Any] = {}

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(NEW + spec.name[len(OLD) :])
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Between create and exec the import system stamps the alias's spec on the real module: give its own back.
        module.__spec__ = self._specs.pop(module.__name__)


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())

__all__ = list(_kit.__all__)
__doc__ = (__doc__ or "") + "\n" + (_kit.__doc__ or "")


def __getattr__(name: str) -> Any:
    return getattr(_kit, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(dir(_kit)))
