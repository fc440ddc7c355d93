"""trainer-callbacks-earlystop: multi-metric early stopping for the Hugging Face Trainer.

``from trainer_callbacks.earlystop import EarlyStopping, Metric``. Importing this package
does not import torch or transformers; :class:`EarlyStopping` is loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer_callbacks.earlystop.metric import Metric
from trainer_callbacks.earlystop.rule import Best, EarlyStoppingRule, MetricRule, StopReason

if TYPE_CHECKING:
    from trainer_callbacks.earlystop.callback import EarlyStopping

__all__ = ["Best", "EarlyStopping", "EarlyStoppingRule", "Metric", "MetricRule", "StopReason"]


def __getattr__(name: str) -> Any:
    if name == "EarlyStopping":
        from trainer_callbacks.earlystop.callback import EarlyStopping

        return EarlyStopping
    raise AttributeError(f"module 'trainer_callbacks.earlystop' has no attribute {name!r}")
