"""trainer-callbacks-checkpoint: checkpoint pruning that never loses the checkpoint you need.

``CheckpointPruner`` is loaded on first access (it imports transformers); the policy names
(``CheckpointInfo``, ``RetentionPolicy``, ``decide``) are light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer_callbacks.checkpoint.policy import CheckpointInfo, Decision, RetentionPolicy, decide

if TYPE_CHECKING:
    from trainer_callbacks.checkpoint.callback import CheckpointPruner

__all__ = ["CheckpointInfo", "CheckpointPruner", "Decision", "RetentionPolicy", "decide"]


def __getattr__(name: str) -> Any:
    if name == "CheckpointPruner":
        from trainer_callbacks.checkpoint.callback import CheckpointPruner

        return CheckpointPruner
    raise AttributeError(f"module 'trainer_callbacks.checkpoint' has no attribute {name!r}")
