"""Running the ``validate_training_args`` hook and raising every problem at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainer_callbacks.core.errors import ConfigurationError


def validate_training_args(args: Any, callbacks: Sequence[Any]) -> None:
    """Raise :class:`ConfigurationError` listing every problem the plugins find with ``args``.

    Each :class:`~trainer_callbacks.core.callback.PluginCallback` among ``callbacks`` is
    asked directly (``check_training_args``), and so is every plugin's hook.
    """
    from trainer_callbacks.core.callback import PluginCallback
    from trainer_callbacks.core.plugins import hook

    problems: list[str] = []
    for cb in callbacks:
        if isinstance(cb, PluginCallback):
            problems.extend(f"{type(cb).__name__}: {p}" for p in cb.check_training_args(args))
    for result in hook().validate_training_args(args=args, callbacks=list(callbacks)):
        problems.extend(result or [])
    if problems:
        listed = "\n".join(f"  - {p}" for p in dict.fromkeys(problems))
        raise ConfigurationError(
            f"trainer-callbacks cannot run with these TrainingArguments ({len(problems)} problem(s)):\n{listed}"
        )
