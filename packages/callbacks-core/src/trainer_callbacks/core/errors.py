"""Exceptions raised by trainer-callbacks. Every one says what is wrong and how to fix it."""

from __future__ import annotations


class TrainerCallbacksError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigurationError(TrainerCallbacksError, ValueError):
    """A callback, its options or the ``TrainingArguments`` cannot work together."""


class UnknownCallbackError(ConfigurationError, LookupError):
    """``create`` was asked for a callback name that no installed plugin provides."""


class UnknownOptionError(ConfigurationError, TypeError):
    """An option that the callback does not accept."""


class SavedStateError(TrainerCallbacksError, ValueError):
    """A checkpoint's saved state for a callback (``stateful_callbacks`` in ``trainer_state.json``)
    is damaged or unreadable; the message names the callback, the file and the field."""


class PluginLoadError(TrainerCallbacksError, ImportError):
    """A plugin's entry point could not be imported or registered.

    Carries the entry point, the distribution and the original exception so the
    message names the package to fix or uninstall.
    """

    def __init__(self, plugin: str, entry_point: str, distribution: str, original: BaseException):
        self.plugin = plugin
        self.entry_point = entry_point
        self.distribution = distribution
        self.original = original
        super().__init__(
            f"plugin {plugin!r} (entry point {entry_point!r} of distribution {distribution}) failed to load: "
            f"{type(original).__name__}: {original}. Reinstall or upgrade {distribution}, or skip it with "
            f"TRAINER_CALLBACKS_BLOCK_PLUGINS={plugin}."
        )
