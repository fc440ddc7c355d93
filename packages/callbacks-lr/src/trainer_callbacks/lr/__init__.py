"""trainer-callbacks-lr: ReduceLROnPlateau that composes with any Trainer schedule.

``from trainer_callbacks.lr import ReduceLROnPlateau``. Importing this package does not
import torch or transformers (the plugin module is loaded by ``trainer-callbacks list``);
the callback is loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer_callbacks.lr.callback import ReduceLROnPlateau

__all__ = ["ReduceLROnPlateau"]


def __getattr__(name: str) -> Any:
    if name == "ReduceLROnPlateau":
        from trainer_callbacks.lr.callback import ReduceLROnPlateau

        return ReduceLROnPlateau
    raise AttributeError(f"module 'trainer_callbacks.lr' has no attribute {name!r}")
