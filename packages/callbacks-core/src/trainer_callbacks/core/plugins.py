"""Finding, loading and switching off plugins.

Plugins are modules named by entry points in the ``trainer_callbacks`` group. Loading
follows pytest's and llm's conventions:

* ``TRAINER_CALLBACKS_DISABLE_AUTOLOAD=1``: load no entry point except those named in
  ``TRAINER_CALLBACKS_PLUGINS``; plugins registered in code still load.
* ``TRAINER_CALLBACKS_PLUGINS=a,b``: the allow list; only these entry points load.
* ``TRAINER_CALLBACKS_BLOCK_PLUGINS=a,b``: the block list; these never load.

A plugin whose import fails is recorded with its entry point, distribution and the
original exception; the others still load, and creating one of its callbacks raises
that error. A name in either list that no installed plugin has (a typo) is a warning that
names it, suggests the closest installed plugin and lists them all.

Core does not know which plugins exist: what the demo and the summary need from a plugin
(example options, its place in the summary) comes from its :class:`CallbackSpec`.
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from trainer_callbacks.core import hookspecs
from trainer_callbacks.core.errors import PluginLoadError
from trainer_callbacks.core.markers import PROJECT_NAME
from trainer_callbacks.core.spec import CallbackSpec

ENTRY_POINT_GROUP = PROJECT_NAME
ENV_DISABLE_AUTOLOAD = "TRAINER_CALLBACKS_DISABLE_AUTOLOAD"
ENV_ALLOW = "TRAINER_CALLBACKS_PLUGINS"
ENV_BLOCK = "TRAINER_CALLBACKS_BLOCK_PLUGINS"
DEFAULT_ORDER = 100
"""The summary/plot rank of a plugin that registers no callback (see ``CallbackSpec.summary_order``)."""

logger = logging.getLogger(__name__)


@dataclass
class PluginInfo:
    """An installed plugin, as ``trainer-callbacks list`` shows it."""

    name: str
    distribution: str
    version: str
    summary: str
    entry_point: str
    status: str = "not loaded"
    """``loaded``, ``failed``, ``blocked``, ``not allowed`` (autoload off or allow list), or ``not loaded``."""
    error: str | None = None


def _env_list(name: str) -> set[str]:
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


def _autoload_disabled() -> bool:
    return os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip().lower() not in ("", "0", "false", "no")


def _selection_status(name: str) -> str | None:
    """Why an entry point is not loaded, or ``None`` when it is selected."""
    if name in _env_list(ENV_BLOCK):
        return "blocked"
    allow = _env_list(ENV_ALLOW)
    if allow and name not in allow:
        return "not allowed"
    if _autoload_disabled() and name not in allow:
        return "not allowed"
    return None


def selection_reason(name: str) -> str | None:
    """Which switch keeps the installed plugin ``name`` from loading, in words; ``None`` if none does."""
    if name in _env_list(ENV_BLOCK):
        return f"blocked by {ENV_BLOCK}={os.environ.get(ENV_BLOCK, '')}"
    allow = _env_list(ENV_ALLOW)
    if allow and name not in allow:
        return f"not allowed: not in {ENV_ALLOW}={os.environ.get(ENV_ALLOW, '')}"
    if _autoload_disabled() and name not in allow:
        return f"not allowed: {ENV_DISABLE_AUTOLOAD} is set and it is not in {ENV_ALLOW}"
    return None


def did_you_mean(name: str, choices: list[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def selection_problems(installed: list[str] | None = None) -> list[str]:
    """A line for each name in ``TRAINER_CALLBACKS_PLUGINS`` / ``_BLOCK_PLUGINS`` that no installed plugin has."""
    if installed is None:
        installed = [ep.name for ep in _entry_points()]
    problems = []
    for variable, effect in ((ENV_ALLOW, "selects nothing"), (ENV_BLOCK, "blocks nothing")):
        for name in sorted(_env_list(variable) - set(installed)):
            problems.append(
                f"{variable} names {name!r}, which is not an installed plugin, so it {effect}."
                f"{did_you_mean(name, installed)} Installed plugins: {', '.join(installed) or '(none)'}."
            )
    return problems


def _entry_points() -> list[metadata.EntryPoint]:
    seen: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        seen.setdefault(ep.name, ep)  # first on sys.path wins, as importlib does
    return sorted(seen.values(), key=lambda ep: ep.name)


def _describe(ep: metadata.EntryPoint) -> PluginInfo:
    dist = ep.dist
    if dist is not None:
        meta = dist.metadata
        dist_name, version, summary = meta["Name"], dist.version, meta.get("Summary", "") or ""  # type: ignore[attr-defined]
    else:
        dist_name, version, summary = "?", "?", ""
    return PluginInfo(name=ep.name, distribution=dist_name, version=version, summary=summary, entry_point=ep.value)


def discover() -> list[PluginInfo]:
    """The installed plugins, read from package metadata alone: nothing is imported.

    ``status`` says whether the environment switches select each one; call
    :func:`load_status` for the result of actually loading them.
    """
    infos = []
    for ep in _entry_points():
        info = _describe(ep)
        info.status = _selection_status(ep.name) or "not loaded"
        infos.append(info)
    return infos


class _Registry:
    """The pluggy manager, the registered specs and the load failures of this process."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.failures: dict[str, PluginLoadError] = {}
        self.selection_problems: list[str] = []
        """Names in the allow or block list that no installed plugin has (typos): warned once per load."""
        self._specs: dict[str, CallbackSpec] | None = None

    def load_entry_points(self) -> None:
        eps = _entry_points()
        self.selection_problems = selection_problems([ep.name for ep in eps])
        for problem in self.selection_problems:
            warnings.warn(problem, UserWarning, stacklevel=4)
        for ep in eps:
            info = _describe(ep)
            self.infos[ep.name] = info
            reason = _selection_status(ep.name)
            if reason is not None:
                info.status = reason
                continue
            if self.pm.has_plugin(ep.name):
                info.status = "loaded"
                continue
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the others down
                error = PluginLoadError(ep.name, ep.value, info.distribution, exc)
                self.failures[ep.name] = error
                info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
            else:
                info.status = "loaded"

    def register(self, plugin: ModuleType | object, name: str | None = None) -> str:
        registered = self.pm.register(plugin, name=name)
        if registered is None:
            raise ValueError(f"plugin {name or plugin!r} is already registered or blocked")
        self._specs = None
        return registered

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._specs = None

    def specs(self) -> dict[str, CallbackSpec]:
        if self._specs is None:
            specs: dict[str, CallbackSpec] = {}
            for impl in self.pm.hook.register_callbacks.get_hookimpls():
                plugin_name = self.pm.get_name(impl.plugin) or "?"

                def register(spec: CallbackSpec, _plugin: str = plugin_name) -> None:
                    if not isinstance(spec, CallbackSpec):
                        raise TypeError(f"plugin {_plugin!r} registered {spec!r}; pass a CallbackSpec")
                    if spec.name in specs and specs[spec.name].plugin != _plugin:
                        raise ValueError(
                            f"callback name {spec.name!r} is registered by both plugin "
                            f"{specs[spec.name].plugin!r} and {_plugin!r}; uninstall or block one"
                        )
                    specs[spec.name] = replace(spec, plugin=_plugin)

                impl.function(register=register)
            self._specs = specs
        return self._specs


_lock = threading.Lock()
_registry: _Registry | None = None


def registry() -> _Registry:
    """The process-wide registry, loading entry points on first use."""
    global _registry
    with _lock:
        if _registry is None:
            reg = _Registry()
            reg.load_entry_points()
            _registry = reg
        return _registry


def reload() -> None:
    """Forget loaded plugins, so the next call re-reads entry points and environment switches."""
    global _registry
    with _lock:
        _registry = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The pluggy ``PluginManager`` (to call hooks: ``get_plugin_manager().hook.summarize_run(...)``)."""
    return registry().pm


def register_plugin(plugin: ModuleType | object, name: str | None = None) -> str:
    """Register a plugin object or module in code (works with autoload off). Returns its name."""
    return registry().register(plugin, name)


def unregister_plugin(name: str) -> None:
    registry().unregister(name)


def load_status() -> list[PluginInfo]:
    """Every installed plugin after loading: ``loaded``, ``failed`` (with the error), ``blocked``..."""
    reg = registry()
    listed = dict(reg.infos)
    for name, plugin in reg.pm.list_name_plugin():
        if name not in listed:
            module = getattr(plugin, "__name__", type(plugin).__name__)
            listed[name] = PluginInfo(name, "(registered in code)", "", "", module, status="loaded")
    return [listed[name] for name in sorted(listed)]


def callback_specs() -> dict[str, CallbackSpec]:
    """Every callback the loaded plugins provide, by name."""
    return dict(registry().specs())


def hook() -> Any:
    return registry().pm.hook


def plugin_order() -> dict[str, int]:
    """Each plugin's rank in the demo summary and in ``plot``: the lowest ``summary_order`` of its callbacks."""
    order: dict[str, int] = {}
    for spec in registry().specs().values():
        order[spec.plugin] = min(order.get(spec.plugin, spec.summary_order), spec.summary_order)
    return order


def call_each(hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call hook ``hook_name`` of every plugin separately, in summary order (then by name).

    Returns ``(plugin, result)`` pairs; a plugin whose hook raises is logged and its result is
    the exception, so one broken plugin never hides the others' summary lines or figures.
    """
    reg = registry()
    order = plugin_order()
    impls = getattr(reg.pm.hook, hook_name).get_hookimpls()
    named: list[tuple[str, Callable[..., Any], tuple[str, ...]]] = [
        (reg.pm.get_name(impl.plugin) or "?", impl.function, tuple(impl.argnames)) for impl in impls
    ]
    named.sort(key=lambda item: (order.get(item[0], DEFAULT_ORDER), item[0]))
    results: list[tuple[str, Any]] = []
    for name, caller, argnames in named:
        try:  # like pluggy, pass an implementation only the arguments it declares
            results.append((name, caller(**{key: value for key, value in kwargs.items() if key in argnames})))
        except Exception as exc:  # a plugin's report must not take the others down
            logger.warning("plugin %s: %s failed", name, hook_name, exc_info=True)
            results.append((name, exc))
    return results
