"""trainer-callbacks core: the plugin contract, discovery, ``create``/``create_all`` and reporting.

Importing this package does not import torch or transformers; the names that need them
(:class:`PluginCallback`, :func:`report_scalars`) are loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer_callbacks.core.commands import CommandRegistrar
from trainer_callbacks.core.errors import (
    ConfigurationError,
    PluginLoadError,
    SavedStateError,
    TrainerCallbacksError,
    UnknownCallbackError,
    UnknownOptionError,
)
from trainer_callbacks.core.factory import create, create_all, get_spec, load_config
from trainer_callbacks.core.markers import hookimpl, hookspec
from trainer_callbacks.core.metrics import (
    EvaluationRound,
    MetricName,
    Round,
    eval_key,
    evaluates,
    infer_mode,
    metric_value,
    missing_metrics_message,
    mode_problem,
    monitor_keys,
    strategy,
)
from trainer_callbacks.core.options import (
    CallbackOptions,
    Choice,
    Either,
    Flag,
    Integer,
    ListOf,
    OptionProblem,
    OrNone,
    PerKey,
    Real,
    Text,
    check_value,
    option,
)
from trainer_callbacks.core.plotting import PlotEvent, PlotPanel, step_ticks
from trainer_callbacks.core.plugins import (
    PluginInfo,
    call_each,
    callback_specs,
    discover,
    get_plugin_manager,
    load_status,
    register_plugin,
    unregister_plugin,
)
from trainer_callbacks.core.references import callable_option, import_reference, reference_of
from trainer_callbacks.core.saved_state import StateFieldError, StateReader
from trainer_callbacks.core.spec import CallbackSpec, OptionSpec

if TYPE_CHECKING:
    from trainer_callbacks.core import compat
    from trainer_callbacks.core.callback import PluginCallback
    from trainer_callbacks.core.reporting import report_histogram, report_scalars

__all__ = [
    "CallbackOptions",
    "CallbackSpec",
    "Choice",
    "ConfigurationError",
    "Either",
    "Flag",
    "Integer",
    "ListOf",
    "OptionProblem",
    "OptionSpec",
    "OrNone",
    "PerKey",
    "PluginCallback",
    "PluginInfo",
    "PluginLoadError",
    "Real",
    "SavedStateError",
    "StateFieldError",
    "StateReader",
    "Text",
    "TrainerCallbacksError",
    "UnknownCallbackError",
    "UnknownOptionError",
    "call_each",
    "callback_specs",
    "check_value",
    "create",
    "create_all",
    "discover",
    "get_plugin_manager",
    "get_spec",
    "hookimpl",
    "hookspec",
    "load_config",
    "load_status",
    "option",
    "register_plugin",
    "report_scalars",
    "unregister_plugin",
]

__all__ += [  # the metric conventions (core/metrics.py)
    "EvaluationRound",
    "MetricName",
    "Round",
    "eval_key",
    "evaluates",
    "infer_mode",
    "metric_value",
    "missing_metrics_message",
    "mode_problem",
    "monitor_keys",
    "strategy",
]

__all__ += ["PlotEvent", "PlotPanel", "step_ticks"]  # for the plot hooks (core/plotting.py)

__all__ += ["CommandRegistrar"]  # for the register_commands hook (core/commands.py)

__all__ += ["callable_option", "import_reference", "reference_of"]  # "module:function" options (core/references.py)

__all__ += ["compat", "report_histogram"]  # the named reaches into other libraries' internals; histograms

_LAZY = {
    "PluginCallback": "trainer_callbacks.core.callback",
    "report_scalars": "trainer_callbacks.core.reporting",
    "report_histogram": "trainer_callbacks.core.reporting",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "compat":  # a module; it imports neither torch nor transformers
        return importlib.import_module("trainer_callbacks.core.compat")
    raise AttributeError(f"module 'trainer_callbacks.core' has no attribute {name!r}")
