"""trainer-callbacks-gradviz: per-layer gradient norms for the Hugging Face Trainer.

``from trainer_callbacks.gradviz import GradNormLogger``. Importing this package does not
import torch or transformers; :class:`GradNormLogger` is loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer_callbacks.gradviz.callback import GradNormLogger

__all__ = ["GradNormLogger"]


def __getattr__(name: str) -> Any:
    if name == "GradNormLogger":
        from trainer_callbacks.gradviz.callback import GradNormLogger

        return GradNormLogger
    raise AttributeError(f"module 'trainer_callbacks.gradviz' has no attribute {name!r}")
