"""trainer-callbacks-checkpoint: checkpoint pruning that never loses the checkpoint you need.

Every name is loaded on first access: ``CheckpointPruner`` imports transformers, the policy names
(``CheckpointInfo``, ``RetentionPolicy``, ``decide``) import the core package. The deleting child
process (:mod:`.deleter_process`) imports this package too and needs neither, so it starts in tens
of milliseconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer_callbacks.checkpoint.callback import CheckpointPruner
    from trainer_callbacks.checkpoint.policy import CheckpointInfo, Decision, RetentionPolicy, decide

__all__ = ["CheckpointInfo", "CheckpointPruner", "Decision", "RetentionPolicy", "decide"]

_HOMES = {
    "CheckpointPruner": "callback",
    "CheckpointInfo": "policy",
    "Decision": "policy",
    "RetentionPolicy": "policy",
    "decide": "policy",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'trainer_callbacks.checkpoint' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
