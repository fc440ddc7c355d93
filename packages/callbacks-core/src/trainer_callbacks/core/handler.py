"""Finding the Trainer's ``CallbackHandler`` from inside a callback event.

Callbacks are not handed the list of their siblings, but core needs it twice: to run
the ``validate_training_args`` hook over all of them, and to reach the reporting
integrations (TensorBoard, MLflow) that the Trainer created from ``report_to``. Every
event reaches a callback through ``CallbackHandler.call_event``, so the handler is the
``self`` of a calling frame.
"""

from __future__ import annotations

import sys
from typing import Any


def find_callback_handler(max_depth: int = 8) -> Any | None:
    """The ``CallbackHandler`` that is dispatching the current event, or ``None``."""
    try:
        from transformers.trainer_callback import CallbackHandler
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, CallbackHandler):
            return candidate
        frame = frame.f_back  # type: ignore[assignment]
    return None
