"""Moved to :mod:`trainer_callbacks.core.compat` (kept while in-flight code still imports these names)."""

from __future__ import annotations

from trainer_callbacks.core.compat import callback_handler as find_callback_handler
from trainer_callbacks.core.compat import dispatching_trainer as find_trainer

__all__ = ["find_callback_handler", "find_trainer"]
